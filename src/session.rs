//! The login session: what we remember about a user, sealed into the session cookie, and a
//! small per-VM cache so a cookie already opened is not decrypted again on every request.

use crate::seal;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "e", default)]
    pub email: String,
    #[serde(rename = "p", default)]
    pub preferred_username: String,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    #[serde(rename = "a", default)]
    pub access_token: String,
    #[serde(rename = "i", default)]
    pub id_token: String,
    #[serde(rename = "r", default)]
    pub refresh_token: String,
    #[serde(rename = "c")]
    pub created_at: u64,
    #[serde(rename = "x")]
    pub expires_at: u64,
}

fn aad(cookie_name: &str) -> Vec<u8> {
    format!("session:{cookie_name}").into_bytes()
}

pub fn seal(
    key: &[u8; 32],
    cookie_name: &str,
    session: &Session,
    nonce: [u8; 12],
) -> Option<String> {
    let json = serde_json::to_vec(session).ok()?;
    seal::seal(key, &aad(cookie_name), nonce, &json)
}

/// `None` for a tampered, foreign or expired cookie: all of them mean "not logged in".
pub fn open(key: &[u8; 32], cookie_name: &str, value: &str, now: u64) -> Option<Session> {
    let json = seal::open(key, &aad(cookie_name), value)?;
    let session: Session = serde_json::from_slice(&json).ok()?;
    (session.expires_at > now).then_some(session)
}

/// What the cache holds: a session, or something built from one, that ends when it does.
pub trait Expiring {
    fn expires_at(&self) -> u64;
}

impl Expiring for Session {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Hashes a cookie value by its length and its last 16 bytes only. Those bytes encode the
/// AES-GCM tag, unique per sealing, so distinct sessions land in distinct buckets; equality
/// is still checked on the whole value, so a hit always means the exact same cookie. The
/// inserted values are ciphertexts we made, which nobody can steer into one bucket, and a
/// lookup of a forged value costs one probe and one comparison. SipHash over the whole value
/// (18 KB for a chunked session) cost more than everything else on the hot path.
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

/// Sessions already opened, keyed by the exact cookie value, so AES-GCM and JSON parsing
/// stay off the per-request path. The key is the full sealed value: a cookie differing in
/// any byte is a miss and gets fully authenticated.
pub struct SessionCache<V: Expiring = Session> {
    entries: HashMap<String, Rc<V>, BuildHasherDefault<TailHasher>>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<V: Expiring> SessionCache<V> {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            entries: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&mut self, value: &str, now: u64) -> Option<Rc<V>> {
        let hit = self.entries.get(value)?;
        if hit.expires_at() > now {
            return Some(Rc::clone(hit));
        }
        self.entries.remove(value);
        None
    }

    pub fn insert(&mut self, value: String, session: Rc<V>) {
        if self.entries.contains_key(&value) {
            return;
        }
        // FIFO eviction keeps memory bounded; `order` may hold keys already dropped as
        // expired, which is harmless.
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => self.entries.clear(),
            }
        }
        self.order.push_back(value.clone());
        self.entries.insert(value, session);
    }

    pub fn remove(&mut self, value: &str) {
        self.entries.remove(value);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            user: "john".into(),
            email: "john@example.com".into(),
            preferred_username: "john".into(),
            groups: vec!["developers".into()],
            access_token: "at".into(),
            id_token: "it".into(),
            refresh_token: String::new(),
            created_at: 100,
            expires_at: 200,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert_eq!(open(&[1; 32], "_oauth2_proxy", &v, 150).unwrap(), sample());
    }

    #[test]
    fn expired_tampered_and_renamed_cookies_are_no_session() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert!(open(&[1; 32], "_oauth2_proxy", &v, 200).is_none());
        assert!(open(&[1; 32], "other", &v, 150).is_none());
        assert!(open(&[2; 32], "_oauth2_proxy", &v, 150).is_none());
        let mut t = v.clone().into_bytes();
        let mid = t.len() / 2;
        t[mid] = if t[mid] == b'A' { b'B' } else { b'A' };
        assert!(open(
            &[1; 32],
            "_oauth2_proxy",
            std::str::from_utf8(&t).unwrap(),
            150
        )
        .is_none());
        assert!(open(&[1; 32], "_oauth2_proxy", &v[..v.len() - 4], 150).is_none());
    }

    #[test]
    fn cache_honours_expiry_and_bound() {
        let mut c = SessionCache::new(2);
        c.insert("a".into(), Rc::new(sample()));
        assert!(c.get("a", 150).is_some());
        assert!(c.get("a", 200).is_none());
        assert!(c.is_empty());
        c.insert("a".into(), Rc::new(sample()));
        c.insert("b".into(), Rc::new(sample()));
        c.insert("c".into(), Rc::new(sample()));
        assert_eq!(c.len(), 2);
        assert!(c.get("a", 150).is_none());
        assert!(c.get("c", 150).is_some());
        assert!(c.get("c ", 150).is_none());
    }

    #[test]
    fn cache_hits_only_the_exact_value_even_when_the_tails_match() {
        let tail = "0123456789abcdef0123";
        let mut c = SessionCache::new(8);
        c.insert(format!("first-{tail}"), Rc::new(sample()));
        assert!(c.get(&format!("other-{tail}"), 150).is_none());
        assert!(c.get(&format!("firsT-{tail}"), 150).is_none());
        assert!(c.get(&format!("first-{tail}"), 150).is_some());
        c.insert(format!("other-{tail}"), Rc::new(sample()));
        assert_eq!(c.len(), 2);
    }
}
