//! Authenticated encryption of cookie payloads (AES-256-GCM).
//!
//! The cookie name and a purpose label are bound in as associated data, so a value sealed
//! for one cookie (say the CSRF cookie) can never be opened as another (the session).
//! Also the crate's one constant-time comparison of secrets.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const VERSION: u8 = 1;

/// Seals `plaintext` with a caller-supplied random nonce (the core takes randomness from
/// its environment, so tests can pin it). Output is URL-safe base64 of
/// `version || nonce || ciphertext+tag`, safe as a cookie value as is.
pub fn seal(
    key: &[u8; 32],
    aad: &[u8],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Option<String> {
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .ok()?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Some(URL_SAFE_NO_PAD.encode(out))
}

/// Opens a value made by [`seal`]; `None` for anything tampered, truncated or foreign.
pub fn open(key: &[u8; 32], aad: &[u8], value: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
    let (version, rest) = raw.split_first()?;
    if *version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// Equality whose timing does not reveal where two secrets (`state`, `nonce`) first differ:
/// the one comparison of secrets in the crate. Only a difference in length returns early,
/// and lengths are not secret here.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn round_trip() {
        let v = seal(&KEY, b"a", [1; 12], b"hello").unwrap();
        assert_eq!(open(&KEY, b"a", &v).unwrap(), b"hello");
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let v = seal(&KEY, b"a", [1; 12], b"hello world").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                assert!(open(&KEY, b"a", &URL_SAFE_NO_PAD.encode(&t)).is_none());
            }
        }
    }

    #[test]
    fn truncation_wrong_key_wrong_aad_and_junk_are_rejected() {
        let v = seal(&KEY, b"a", [1; 12], b"hello").unwrap();
        for n in 0..v.len() {
            assert!(open(&KEY, b"a", &v[..n]).is_none());
        }
        assert!(open(&[8; 32], b"a", &v).is_none());
        assert!(open(&KEY, b"b", &v).is_none());
        assert!(open(&KEY, b"a", "!!!not base64").is_none());
        assert!(open(&KEY, b"a", "").is_none());
    }

    #[test]
    fn nonce_changes_ciphertext() {
        let a = seal(&KEY, b"a", [1; 12], b"x").unwrap();
        let b = seal(&KEY, b"a", [2; 12], b"x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_behaves() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
