//! The one bounded cache every per-VM cache uses (opened sessions, verified bearer tokens):
//! keyed by the exact credential, honouring expiry, bounded in entries and in bytes, with
//! first-in-first-out eviction whose bookkeeping cannot drift from the map.
//!
//! An attacker controls how many distinct credentials arrive and in what order (sign-out,
//! replay, rotation), so the bounds must hold after any sequence of `insert`, `get` and
//! `remove`. Each entry sits in exactly two places, the map and the eviction order, and every
//! operation updates both or neither.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// What the cache holds: something that ends at a known time and knows its own size.
pub trait Cached {
    /// Unix seconds after which the entry must not be served.
    fn expires_at(&self) -> u64;
    /// Heap bytes held by the value, roughly; counted against the byte bound.
    fn weight(&self) -> usize;
}

/// Per entry, beyond key and value: the map slot, the order entry and the `Rc` headers.
const ENTRY_OVERHEAD: usize = 128;

/// Hashes a key by its length and its last 16 bytes only. Keys are credentials the IdP or
/// we produced (AES-GCM ciphertexts, JWT signatures), whose tails are unpredictable, and
/// only verified credentials are ever inserted, so nobody can steer keys into one bucket;
/// a lookup of a forged value costs one probe and one comparison. Equality is still checked
/// on the whole key. SipHash over a whole chunked session (18 KB) cost more than everything
/// else on the hot path.
#[derive(Default, Clone, Copy)]
pub struct TailHasher(u64);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        // FNV-1a over the length and the tail.
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let tail = bytes.get(bytes.len().saturating_sub(16)..).unwrap_or(bytes);
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(tail) {
            h = (h ^ u64::from(*b)).wrapping_mul(PRIME);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Slot<V> {
    value: Rc<V>,
    seq: u64,
    cost: usize,
}

pub struct Cache<V: Cached> {
    entries: HashMap<Rc<str>, Slot<V>, BuildHasherDefault<TailHasher>>,
    /// Insertion sequence number -> key, oldest first.
    order: BTreeMap<u64, Rc<str>>,
    next_seq: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    evictions: u64,
}

impl<V: Cached> Cache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Cache {
            entries: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            evictions: 0,
        }
    }

    /// The value cached under exactly `key`, unless it has expired (then it is dropped).
    pub fn get(&mut self, key: &str, now: u64) -> Option<Rc<V>> {
        let slot = self.entries.get(key)?;
        if slot.value.expires_at() > now {
            return Some(Rc::clone(&slot.value));
        }
        self.remove(key);
        None
    }

    /// Caches `value` under `key`, replacing any previous value, evicting the oldest entries
    /// until both bounds hold. A value too big for the byte bound on its own is not cached.
    pub fn insert(&mut self, key: &str, value: Rc<V>) {
        self.remove(key);
        let cost = key.len() + value.weight() + ENTRY_OVERHEAD;
        if cost > self.max_bytes {
            return;
        }
        while self.entries.len() >= self.max_entries || self.bytes + cost > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&oldest) {
                self.bytes -= slot.cost;
                self.evictions += 1;
            }
        }
        let key: Rc<str> = Rc::from(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, Rc::clone(&key));
        self.bytes += cost;
        self.entries.insert(key, Slot { value, seq, cost });
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(slot) = self.entries.remove(key) {
            self.order.remove(&slot.seq);
            self.bytes -= slot.cost;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes counted against the bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries dropped to make room, since the cache was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.entries.len(), self.order.len());
        let sum: usize = self.entries.values().map(|s| s.cost).sum();
        assert_eq!(sum, self.bytes);
        assert!(self.bytes <= self.max_bytes);
        assert!(self.entries.len() <= self.max_entries);
        for (seq, key) in &self.order {
            assert_eq!(self.entries.get(key).map(|s| s.seq), Some(*seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug)]
    struct V {
        until: u64,
        size: usize,
    }

    impl Cached for V {
        fn expires_at(&self) -> u64 {
            self.until
        }
        fn weight(&self) -> usize {
            self.size
        }
    }

    fn v(until: u64) -> Rc<V> {
        Rc::new(V { until, size: 10 })
    }

    #[test]
    fn honours_expiry_and_the_entry_bound() {
        let mut c = Cache::new(2, 1 << 20);
        c.insert("a", v(200));
        assert!(c.get("a", 150).is_some());
        assert!(c.get("a", 200).is_none());
        assert!(c.is_empty());
        c.insert("a", v(200));
        c.insert("b", v(200));
        c.insert("c", v(200));
        assert_eq!(c.len(), 2);
        assert!(c.get("a", 150).is_none());
        assert!(c.get("c", 150).is_some());
        assert!(c.get("c ", 150).is_none());
        assert_eq!(c.evictions(), 1);
        c.check_invariants();
    }

    #[test]
    fn byte_bound_evicts_oldest_and_refuses_giants() {
        let big = |n| Rc::new(V { until: 9, size: n });
        let mut c = Cache::new(100, 1000);
        c.insert("a", big(300));
        c.insert("b", big(300));
        c.insert("c", big(300));
        assert!(c.get("a", 0).is_none(), "oldest evicted for bytes");
        assert!(c.get("b", 0).is_some() && c.get("c", 0).is_some());
        c.insert("giant", big(2000));
        assert!(c.get("giant", 0).is_none());
        assert_eq!(c.len(), 2);
        c.check_invariants();
    }

    /// The leak found in the first cache: "use the session, sign out" repeated kept one more
    /// copy of the key in the eviction queue every round.
    #[test]
    fn use_then_sign_out_repeated_holds_nothing_extra() {
        let mut c = Cache::new(1024, 1 << 20);
        let key = "x".repeat(2000);
        for _ in 0..100_000 {
            if c.get(&key, 0).is_none() {
                c.insert(&key, v(10));
            }
            c.remove(&key);
        }
        assert_eq!((c.len(), c.order.len(), c.bytes()), (0, 0, 0));
    }

    #[test]
    fn reinserting_a_key_replaces_it() {
        let mut c = Cache::new(4, 1 << 20);
        for i in 0..1000 {
            c.insert("k", v(i + 1));
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("k", 999).map(|x| x.until), Some(1000));
        c.check_invariants();
    }

    #[test]
    fn hits_only_the_exact_key_even_when_the_tails_match() {
        let tail = "0123456789abcdef0123";
        let mut c = Cache::new(8, 1 << 20);
        c.insert(&format!("first-{tail}"), v(200));
        assert!(c.get(&format!("other-{tail}"), 150).is_none());
        assert!(c.get(&format!("firsT-{tail}"), 150).is_none());
        assert!(c.get(&format!("first-{tail}"), 150).is_some());
        c.insert(&format!("other-{tail}"), v(200));
        assert_eq!(c.len(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16, u64),
        Get(u8, u64),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), 0u16..600, 0u64..50).prop_map(|(k, s, t)| Op::Insert(k, s, t)),
            (any::<u8>(), 0u64..50).prop_map(|(k, t)| Op::Get(k, t)),
            any::<u8>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn bounds_hold_after_any_sequence(ops in proptest::collection::vec(op(), 1..400)) {
            let mut c = Cache::new(16, 4000);
            for op in ops {
                match op {
                    Op::Insert(k, size, until) => {
                        let key = format!("key-{k}");
                        c.insert(&key, Rc::new(V { until, size: size.into() }));
                    }
                    Op::Get(k, now) => {
                        if let Some(hit) = c.get(&format!("key-{k}"), now) {
                            prop_assert!(hit.until > now);
                        }
                    }
                    Op::Remove(k) => c.remove(&format!("key-{k}")),
                }
                c.check_invariants();
            }
        }
    }
}
