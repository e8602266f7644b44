//! JWS compact-serialization verification (RFC 7515) with a fixed asymmetric allow-list.
//!
//! The algorithm is always checked against the type of the key actually used, so a token
//! cannot choose `none`, an HMAC keyed with public-key bytes, or a key/alg mismatch.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::digest::DynDigest;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::error::JwtError;
/// Re-exported: where `Alg` was first defined; it lives with the keys it fits.
pub use super::jwks::Alg;
use super::jwks::{Jwk, Jwks, PublicKey};

/// ID tokens are a few KiB even with many groups; a cap bounds parsing and hashing work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

// DigestInfo prefixes (RFC 8017 9.2 note 1). Hard-coded because the `oid` feature of sha2
// that would let rsa derive them is not enabled in the wasm build.
pub(crate) const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// Verifies `token` against `jwks` and returns its claims. Claims are NOT validated
/// here (see `id_token`); this only establishes who signed the bytes.
pub fn verify(token: &str, jwks: &Jwks) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
    if payload_b64.contains('.') {
        return Err(JwtError::Malformed);
    }

    let header = decode_object(header_b64)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let alg = Alg::from_name(alg_name).ok_or(JwtError::AlgNotAllowed)?;
    if header.contains_key("crit") {
        return Err(JwtError::CritHeader);
    }
    // jku / x5u / jwk / x5c are ignored on purpose: keys only ever come from the
    // configured JWKS, never from the token itself.
    let kid = match header.get("kid") {
        None => None,
        Some(v) => Some(v.as_str().ok_or(JwtError::Malformed)?),
    };

    let signature = decode(sig_b64)?;
    let candidates = select_keys(jwks, kid, alg)?;
    let input = signing_input.as_bytes();
    if !candidates
        .iter()
        .any(|k| signature_valid(alg, &k.key, input, &signature))
    {
        return Err(JwtError::BadSignature);
    }
    decode_object(payload_b64)
}

/// The `iss` a token claims, read WITHOUT verifying anything: only to pick which issuer's
/// keys to verify it with. Nothing else may be decided from it.
pub fn unverified_issuer(token: &str) -> Result<String, JwtError> {
    unverified_claim(token, "iss")?
        .as_str()
        .map(str::to_owned)
        .ok_or(JwtError::MissingClaim("iss"))
}

/// The `exp` a JWT-shaped access token carries, read WITHOUT verifying it: only ever to end
/// the token's use sooner than the IdP's `expires_in` says, never later. `None` for an
/// opaque token.
pub fn unverified_exp(token: &str) -> Option<u64> {
    unverified_claim(token, "exp").ok()?.as_u64()
}

fn unverified_claim(token: &str, name: &'static str) -> Result<Value, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    decode_object(payload)?
        .remove(name)
        .ok_or(JwtError::MissingClaim(name))
}

fn select_keys<'a>(jwks: &'a Jwks, kid: Option<&str>, alg: Alg) -> Result<Vec<&'a Jwk>, JwtError> {
    let allows = |k: &&Jwk| alg.fits(&k.key) && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => {
            let named: Vec<&Jwk> = jwks
                .keys()
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if named.is_empty() {
                return Err(JwtError::UnknownKid);
            }
            let usable: Vec<&Jwk> = named.into_iter().filter(allows).collect();
            if usable.is_empty() {
                return Err(JwtError::AlgNotAllowed);
            }
            Ok(usable)
        }
        None => {
            let usable: Vec<&Jwk> = jwks.keys().iter().filter(allows).collect();
            if usable.is_empty() {
                return Err(JwtError::NoMatchingKey);
            }
            Ok(usable)
        }
    }
}

fn signature_valid(alg: Alg, key: &PublicKey, input: &[u8], sig: &[u8]) -> bool {
    match (alg, key) {
        (Alg::ES256, PublicKey::P256(key)) => {
            // JOSE uses fixed-width r||s (RFC 7518 3.4), not DER; from_slice insists on 64 bytes.
            p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
        }
        (Alg::ES384, PublicKey::P384(key)) => {
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
        }
        (Alg::EdDSA, PublicKey::Ed25519(key)) => {
            // Strict: also refuses a small-order R, which lets one signature verify for
            // more than one message (the lax check only enforces canonical S).
            ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| key.verify_strict(input, &s).is_ok())
        }
        (Alg::RS256, PublicKey::Rsa(key)) => pkcs1::<Sha256>(key, SHA256_PREFIX, input, sig),
        (Alg::RS384, PublicKey::Rsa(key)) => pkcs1::<Sha384>(key, SHA384_PREFIX, input, sig),
        (Alg::RS512, PublicKey::Rsa(key)) => pkcs1::<Sha512>(key, SHA512_PREFIX, input, sig),
        (Alg::PS256, PublicKey::Rsa(key)) => pss::<Sha256>(key, input, sig),
        (Alg::PS384, PublicKey::Rsa(key)) => pss::<Sha384>(key, input, sig),
        (Alg::PS512, PublicKey::Rsa(key)) => pss::<Sha512>(key, input, sig),
        _ => false,
    }
}

fn pkcs1<D: Digest>(key: &RsaPublicKey, prefix: &[u8], input: &[u8], sig: &[u8]) -> bool {
    if sig.len() != key.size() {
        return false;
    }
    let scheme = Pkcs1v15Sign {
        hash_len: Some(<D as Digest>::output_size()),
        prefix: prefix.into(),
    };
    key.verify(scheme, &D::digest(input), sig).is_ok()
}

fn pss<D>(key: &RsaPublicKey, input: &[u8], sig: &[u8]) -> bool
where
    D: 'static + Digest + DynDigest + Send + Sync,
{
    if sig.len() != key.size() {
        return false;
    }
    // Pss::new fixes the salt length to the hash length, as RFC 7518 3.5 requires.
    key.verify(Pss::new::<D>(), &<D as Digest>::digest(input), sig)
        .is_ok()
}

/// Strict base64url: no padding, no whitespace, no non-canonical trailing bits, so each
/// token has exactly one accepted encoding.
fn decode(segment: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::BadEncoding)
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = decode(segment)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testkeys::{self, b64};
    use hmac::{Hmac, Mac};
    use rsa::traits::PublicKeyParts;
    use serde_json::json;

    fn claims() -> Value {
        json!({"sub": "alice", "iss": "https://idp.example.com"})
    }

    fn jwks() -> Jwks {
        testkeys::jwks()
    }

    #[test]
    fn accepts_rs256_ps256_es256() {
        for token in [
            testkeys::sign_rs256(Some("rsa1"), &claims()),
            testkeys::sign_ps256(Some("rsa1"), &claims()),
            testkeys::sign_es256(Some("ec1"), &claims()),
        ] {
            let got = verify(&token, &jwks()).unwrap();
            assert_eq!(got.get("sub"), Some(&json!("alice")));
        }
    }

    #[test]
    fn accepts_rs384_rs512_ps384_ps512() {
        for alg in ["RS384", "RS512", "PS384", "PS512"] {
            let token = testkeys::sign(&json!({"alg": alg, "kid": "rsa1"}), &claims());
            assert!(verify(&token, &jwks()).is_ok(), "{alg}");
        }
    }

    #[test]
    fn kid_absent_tries_compatible_keys() {
        let token = testkeys::sign_rs256(None, &claims());
        assert!(verify(&token, &jwks()).is_ok());
        let token = testkeys::sign_es256(None, &claims());
        assert!(verify(&token, &jwks()).is_ok());
    }

    #[test]
    fn kid_absent_single_key() {
        let only_rsa = testkeys::jwks_json_for(&[testkeys::rsa_jwk(None, None)]);
        let jwks = Jwks::parse(only_rsa.as_bytes()).unwrap();
        assert!(verify(&testkeys::sign_rs256(None, &claims()), &jwks).is_ok());
        assert_eq!(
            verify(&testkeys::sign_es256(None, &claims()), &jwks),
            Err(JwtError::NoMatchingKey)
        );
    }

    #[test]
    fn rejects_bad_signature() {
        for token in [
            testkeys::sign_rs256(Some("rsa1"), &claims()),
            testkeys::sign_ps256(Some("rsa1"), &claims()),
            testkeys::sign_es256(Some("ec1"), &claims()),
        ] {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            raw[5] ^= 1;
            let forged = format!("{input}.{}", b64(&raw));
            assert_eq!(verify(&forged, &jwks()), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn rejects_tampered_payload() {
        let token = testkeys::sign_rs256(Some("rsa1"), &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = b64(json!({"sub": "mallory"}).to_string().as_bytes());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &jwks()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn rejects_alg_none() {
        let header = b64(br#"{"alg":"none"}"#);
        let payload = b64(claims().to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let err = verify(&token, &jwks()).unwrap_err();
            assert!(
                matches!(err, JwtError::AlgNotAllowed | JwtError::Malformed),
                "{err:?}"
            );
        }
        assert_eq!(
            verify(&format!("{header}.{payload}."), &jwks()),
            Err(JwtError::AlgNotAllowed)
        );
        let header = b64(br#"{"alg":"None"}"#);
        assert_eq!(
            verify(&format!("{header}.{payload}.AAAA"), &jwks()),
            Err(JwtError::AlgNotAllowed)
        );
    }

    #[test]
    fn rejects_hs256_keyed_with_public_key() {
        let pubkey = testkeys::rsa_key().to_public_key();
        let n = pubkey.n().to_bytes_be();
        let jwk_json = testkeys::jwks_json();
        for (kid, secret) in [(Some("rsa1"), n.as_slice()), (None, jwk_json.as_bytes())] {
            let mut header = json!({"alg": "HS256"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            Mac::update(&mut mac, input.as_bytes());
            let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
            assert_eq!(verify(&token, &jwks()), Err(JwtError::AlgNotAllowed));
        }
    }

    #[test]
    fn rejects_alg_key_type_confusion() {
        // ES256 header pointing at the RSA key, and vice versa.
        let token = testkeys::sign(&json!({"alg": "ES256", "kid": "rsa1"}), &claims());
        assert_eq!(verify(&token, &jwks()), Err(JwtError::AlgNotAllowed));
        let token = testkeys::sign(&json!({"alg": "RS256", "kid": "ec1"}), &claims());
        assert_eq!(verify(&token, &jwks()), Err(JwtError::AlgNotAllowed));
    }

    #[test]
    fn respects_jwk_alg_pin() {
        let pinned = testkeys::jwks_json_for(&[testkeys::rsa_jwk(Some("rsa1"), Some("RS256"))]);
        let jwks = Jwks::parse(pinned.as_bytes()).unwrap();
        assert!(verify(&testkeys::sign_rs256(Some("rsa1"), &claims()), &jwks).is_ok());
        assert_eq!(
            verify(&testkeys::sign_ps256(Some("rsa1"), &claims()), &jwks),
            Err(JwtError::AlgNotAllowed)
        );
        assert_eq!(
            verify(&testkeys::sign_ps256(None, &claims()), &jwks),
            Err(JwtError::NoMatchingKey)
        );
    }

    #[test]
    fn unknown_kid() {
        let token = testkeys::sign_rs256(Some("rotated"), &claims());
        assert_eq!(verify(&token, &jwks()), Err(JwtError::UnknownKid));
    }

    #[test]
    fn unverified_issuer_is_only_read() {
        let token = testkeys::sign_rs256(Some("rsa1"), &claims());
        assert_eq!(
            unverified_issuer(&token).unwrap(),
            "https://idp.example.com"
        );
        let no_iss = testkeys::sign_rs256(Some("rsa1"), &json!({"sub": "a"}));
        assert_eq!(
            unverified_issuer(&no_iss),
            Err(JwtError::MissingClaim("iss"))
        );
        for bad in ["", "a.b", "a.b.c.d", "x.!!!.y", "x.W10.y"] {
            assert!(unverified_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_crit() {
        let token = testkeys::sign(
            &json!({"alg": "RS256", "kid": "rsa1", "crit": ["exp"], "exp": 1}),
            &claims(),
        );
        assert_eq!(verify(&token, &jwks()), Err(JwtError::CritHeader));
    }

    #[test]
    fn rejects_oversized() {
        let big = json!({"sub": "a", "pad": "x".repeat(MAX_TOKEN_BYTES)});
        let token = testkeys::sign_rs256(Some("rsa1"), &big);
        assert_eq!(verify(&token, &jwks()), Err(JwtError::TooLarge));
    }

    #[test]
    fn rejects_malformed_base64() {
        let token = testkeys::sign_rs256(Some("rsa1"), &claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        // Padding, standard-alphabet characters and whitespace are all non-canonical.
        for bad_sig in [
            format!("{sig}=="),
            sig.replace('-', "+").replace('_', "/") + "+",
            format!("{sig} "),
        ] {
            assert_eq!(
                verify(&format!("{input}.{bad_sig}"), &jwks()),
                Err(JwtError::BadEncoding)
            );
        }
        let (h, rest) = token.split_once('.').unwrap();
        assert_eq!(
            verify(&format!("{h}=.{rest}"), &jwks()),
            Err(JwtError::BadEncoding)
        );
        assert_eq!(
            verify(&format!("!!!.{rest}"), &jwks()),
            Err(JwtError::BadEncoding)
        );
        // The payload is only decoded once the signature over its raw text has verified.
        assert_eq!(
            verify(&format!("{h}.!!!.{sig}"), &jwks()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn rejects_malformed_structure() {
        let token = testkeys::sign_rs256(Some("rsa1"), &claims());
        assert_eq!(verify("", &jwks()), Err(JwtError::Malformed));
        assert_eq!(verify("a.b", &jwks()), Err(JwtError::Malformed));
        assert_eq!(
            verify(&format!("{token}.x"), &jwks()),
            Err(JwtError::Malformed)
        );
        let not_object = format!("{}.e30.AA", b64(b"[1]"));
        assert_eq!(verify(&not_object, &jwks()), Err(JwtError::Malformed));
        let kid_number = testkeys::sign(&json!({"alg": "RS256", "kid": 7}), &claims());
        assert_eq!(verify(&kid_number, &jwks()), Err(JwtError::Malformed));
        let payload_array = testkeys::sign(&json!({"alg": "RS256", "kid": "rsa1"}), &json!([1]));
        assert_eq!(verify(&payload_array, &jwks()), Err(JwtError::Malformed));
    }

    #[test]
    fn es256_rejects_der_signature_length() {
        let token = testkeys::sign_es256(Some("ec1"), &claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw.push(0);
        let token = format!("{input}.{}", b64(&raw));
        assert_eq!(verify(&token, &jwks()), Err(JwtError::BadSignature));
    }

    #[test]
    fn pkcs1_prefixes_match_rsa_crate() {
        assert_eq!(&*Pkcs1v15Sign::new::<Sha256>().prefix, SHA256_PREFIX);
        assert_eq!(&*Pkcs1v15Sign::new::<Sha384>().prefix, SHA384_PREFIX);
        assert_eq!(&*Pkcs1v15Sign::new::<Sha512>().prefix, SHA512_PREFIX);
    }

    #[test]
    fn alg_names_roundtrip() {
        for alg in [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
            Alg::ES256,
            Alg::ES384,
            Alg::EdDSA,
        ] {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{}\"", alg.name()));
        }
        for bad in [
            "none", "HS256", "HS384", "HS512", "ES512", "ES256K", "Ed448", "Ed25519", "EDDSA",
            "eddsa", "es384", "rs256", "",
        ] {
            assert_eq!(Alg::from_name(bad), None);
        }
    }

    #[test]
    fn accepts_es384_and_eddsa() {
        let all = testkeys::jwks_all();
        for token in [
            testkeys::sign_es384(Some("ec384"), &claims()),
            testkeys::sign_es384(None, &claims()),
            testkeys::sign_eddsa(Some("ed1"), &claims()),
            testkeys::sign_eddsa(None, &claims()),
        ] {
            let got = verify(&token, &all).unwrap();
            assert_eq!(got.get("sub"), Some(&json!("alice")));
        }
        // The older algorithms still verify next to the new key types.
        for token in [
            testkeys::sign_rs256(None, &claims()),
            testkeys::sign_ps256(Some("rsa1"), &claims()),
            testkeys::sign_es256(None, &claims()),
        ] {
            assert!(verify(&token, &all).is_ok());
        }
        // A JWKS without such keys has nothing an ES384 or EdDSA token may use.
        for token in [
            testkeys::sign_es384(None, &claims()),
            testkeys::sign_eddsa(None, &claims()),
        ] {
            assert_eq!(verify(&token, &jwks()), Err(JwtError::NoMatchingKey));
        }
    }

    #[test]
    fn es384_and_eddsa_reject_tampering() {
        let all = testkeys::jwks_all();
        for token in [
            testkeys::sign_es384(Some("ec384"), &claims()),
            testkeys::sign_eddsa(Some("ed1"), &claims()),
        ] {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            for i in [0, raw.len() / 2, raw.len() - 1] {
                let mut bad = raw.clone();
                bad[i] ^= 1;
                let forged = format!("{input}.{}", b64(&bad));
                assert_eq!(verify(&forged, &all), Err(JwtError::BadSignature));
            }
            // Fixed-width JOSE signatures only: no trailing byte, no truncation, no DER.
            let mut longer = raw.clone();
            longer.push(0);
            let short = &raw[..raw.len() - 1];
            for bad in [longer.as_slice(), short, &[]] {
                let forged = format!("{input}.{}", b64(bad));
                assert_eq!(verify(&forged, &all), Err(JwtError::BadSignature));
            }
            let (header, _) = input.split_once('.').unwrap();
            let evil = b64(json!({"sub": "mallory"}).to_string().as_bytes());
            assert_eq!(
                verify(&format!("{header}.{evil}.{sig}"), &all),
                Err(JwtError::BadSignature)
            );
        }
    }

    #[test]
    fn eddsa_rejects_non_canonical_s() {
        // S + L verifies under a lax check (same value mod L); RFC 8032 5.1.7 says reject.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let token = testkeys::sign_eddsa(Some("ed1"), &claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let mut carry = 0u16;
        for (s, l) in raw[32..].iter_mut().zip(L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "S + L fits in 256 bits since S < L < 2^253");
        let forged = format!("{input}.{}", b64(&raw));
        assert_eq!(
            verify(&forged, &testkeys::jwks_all()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn rejects_cross_key_type_algs() {
        let all = testkeys::jwks_all();
        for (alg, kid) in [
            ("ES384", "ec1"),
            ("ES256", "ec384"),
            ("ES384", "rsa1"),
            ("EdDSA", "rsa1"),
            ("EdDSA", "ec1"),
            ("EdDSA", "ec384"),
            ("ES256", "ed1"),
            ("ES384", "ed1"),
            ("RS256", "ed1"),
            ("PS384", "ec384"),
        ] {
            let token = testkeys::sign(&json!({"alg": alg, "kid": kid}), &claims());
            assert_eq!(
                verify(&token, &all),
                Err(JwtError::AlgNotAllowed),
                "{alg} on {kid}"
            );
        }
        // Algorithms we never verify, whatever key they name.
        let payload = b64(claims().to_string().as_bytes());
        for header in [
            json!({"alg": "Ed448", "kid": "ed1"}),
            json!({"alg": "Ed25519", "kid": "ed1"}),
            json!({"alg": "ES512", "kid": "ec384"}),
            json!({"alg": "HS384", "kid": "ec384"}),
            json!({"alg": "HS256", "kid": "ed1"}),
            json!({"alg": "none", "kid": "ed1"}),
        ] {
            let token = format!("{}.{payload}.AAAA", b64(header.to_string().as_bytes()));
            assert_eq!(
                verify(&token, &all),
                Err(JwtError::AlgNotAllowed),
                "{header}"
            );
        }
        for header in [json!({"kid": "ed1"}), json!({"alg": null, "kid": "ec384"})] {
            let token = format!("{}.{payload}.AAAA", b64(header.to_string().as_bytes()));
            assert_eq!(verify(&token, &all), Err(JwtError::Malformed), "{header}");
        }
    }

    #[test]
    fn cross_alg_needs_a_key_of_the_right_type_even_without_kid() {
        // The ES384 verifier must never be handed the P-256 key (nor EdDSA an RSA key):
        // with only the wrong type of key on offer there is no candidate at all.
        let mixed =
            testkeys::jwks_json_for(&[testkeys::rsa_jwk(None, None), testkeys::ec_jwk(None, None)]);
        let jwks = Jwks::parse(mixed.as_bytes()).unwrap();
        for token in [
            testkeys::sign_es384(None, &claims()),
            testkeys::sign_eddsa(None, &claims()),
        ] {
            assert_eq!(verify(&token, &jwks), Err(JwtError::NoMatchingKey));
        }
    }

    #[test]
    fn alg_fits_exactly_one_family() {
        let all = testkeys::jwks_all();
        let key = |kid: &str| {
            &all.keys()
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .unwrap()
                .key
        };
        let rsa = [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ];
        for alg in rsa {
            assert!(alg.fits(key("rsa1")));
            assert!(!alg.fits(key("ec1")) && !alg.fits(key("ec384")) && !alg.fits(key("ed1")));
        }
        for (alg, kid) in [
            (Alg::ES256, "ec1"),
            (Alg::ES384, "ec384"),
            (Alg::EdDSA, "ed1"),
        ] {
            for other in ["rsa1", "ec1", "ec384", "ed1"] {
                assert_eq!(alg.fits(key(other)), other == kid, "{alg:?} on {other}");
            }
        }
    }
}
