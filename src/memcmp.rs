//! Byte-string comparison eight bytes at a time, for the Wasm build's `memcmp` (see
//! `filter/memcmp.rs`). wasi-libc's compares one byte per loop turn, and every `==` on strings
//! and byte slices ends up there: the session cache compares the whole cookie it is keyed by
//! (18 KB for a chunked session), which under V8 took about 7 µs a request, more than anything
//! else the filter does. Not constant-time; secrets are compared elsewhere.

/// C's `memcmp` on two slices of the same length (only the shorter one's length is read): negative, zero or positive as `a` sorts
/// before, equal to or after `b` (as unsigned bytes).
pub fn memcmp(a: &[u8], b: &[u8]) -> i32 {
    let (mut a, mut b) = (a, b);
    // Equal words are skipped, compared as integers (comparing them as slices would call
    // `memcmp` again); the first unequal one is left to the byte loop, which says which
    // sorts first.
    while let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            break;
        }
        (a, b) = (rest_a, rest_b);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return i32::from(*x) - i32::from(*y);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn sign(o: Ordering) -> i32 {
        o as i32
    }

    proptest! {
        #[test]
        fn orders_as_slices_do(
            common in prop::collection::vec(any::<u8>(), 0..40),
            a in prop::collection::vec(0u8..4, 0..20),
            b in prop::collection::vec(0u8..4, 0..20),
        ) {
            let n = a.len().min(b.len());
            let (x, y) = ([&common[..], &a[..n]].concat(), [&common[..], &b[..n]].concat());
            prop_assert_eq!(memcmp(&x, &y).signum(), sign(x.cmp(&y)));
            prop_assert_eq!(memcmp(&x, &x), 0);
        }
    }
}
