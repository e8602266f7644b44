//! JSON Web Key Sets (RFC 7517): only the signature-verification keys we can use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey as Ed25519Key;
use p256::ecdsa::VerifyingKey as P256Key;
use p384::ecdsa::VerifyingKey as P384Key;
use rsa::{BigUint, RsaPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{OidcError, MAX_DOCUMENT_BYTES};

/// Below this, RSA signatures are forgeable with realistic effort (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// Bounds the work a kid-less token can cause (each candidate key costs one verification).
const MAX_KEYS: usize = 32;

/// The only JWS algorithms we accept. Anything else (none, HS*, ES512, Ed448...) is refused.
#[allow(clippy::upper_case_acronyms)] // names mirror the JOSE registry spelling
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    /// Ed25519 only (RFC 8037): the sole OKP curve [`Jwks`] keeps.
    EdDSA,
}

impl Alg {
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Each key type lists what it may verify, so a new `Alg` fits no key until added here.
    pub(crate) fn fits(self, key: &PublicKey) -> bool {
        match key {
            PublicKey::Rsa(_) => matches!(
                self,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            PublicKey::P256(_) => self == Alg::ES256,
            PublicKey::P384(_) => self == Alg::ES384,
            PublicKey::Ed25519(_) => self == Alg::EdDSA,
        }
    }
}

/// Verifying key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Rsa(RsaPublicKey),
    P256(P256Key),
    P384(P384Key),
    Ed25519(Ed25519Key),
}

/// One usable verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// When set, the only algorithm this key may verify (RFC 7517 4.4).
    pub alg: Option<Alg>,
    pub(crate) key: PublicKey,
}

/// The usable keys of a provider's JWKS. Keep the raw body if it must be cached across
/// workers; re-parsing is cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS, silently skipping keys we cannot or must not use (encryption keys,
    /// unsupported types/curves, weak RSA), so one exotic key does not break login.
    pub fn parse(body: &[u8]) -> Result<Jwks, OidcError> {
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(OidcError::Malformed);
        }
        let doc: Value = serde_json::from_slice(body).map_err(|_| OidcError::Malformed)?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(OidcError::MissingField("keys"))?;
        let keys: Vec<Jwk> = entries
            .iter()
            .filter_map(Value::as_object)
            .filter_map(parse_key)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(OidcError::NoUsableKeys);
        }
        Ok(Jwks { keys })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

fn parse_key(obj: &Map<String, Value>) -> Option<Jwk> {
    if !usable_for_verification(obj) {
        return None;
    }
    // A present-but-non-string kid/alg is a broken key; skip rather than guess.
    let kid = match obj.get("kid") {
        None => None,
        Some(v) => Some(v.as_str()?.to_owned()),
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(v) => Some(Alg::from_name(v.as_str()?)?),
    };
    let key = match obj.get("kty")?.as_str()? {
        "RSA" => rsa_key(obj)?,
        "EC" => ec_key(obj)?,
        "OKP" => okp_key(obj)?,
        _ => return None,
    };
    if let Some(alg) = alg {
        if !alg.fits(&key) {
            return None;
        }
    }
    Some(Jwk { kid, alg, key })
}

fn usable_for_verification(obj: &Map<String, Value>) -> bool {
    let use_ok = match obj.get("use") {
        None => true,
        Some(v) => v.as_str() == Some("sig"),
    };
    let ops_ok = match obj.get("key_ops") {
        None => true,
        Some(v) => v
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify"))),
    };
    use_ok && ops_ok
}

fn rsa_key(obj: &Map<String, Value>) -> Option<PublicKey> {
    let n = BigUint::from_bytes_be(&b64_field(obj, "n")?);
    let e = BigUint::from_bytes_be(&b64_field(obj, "e")?);
    if n.bits() < MIN_RSA_BITS {
        return None;
    }
    // `new` also enforces the 4096-bit ceiling and sane exponents.
    RsaPublicKey::new(n, e).ok().map(PublicKey::Rsa)
}

fn ec_key(obj: &Map<String, Value>) -> Option<PublicKey> {
    let x = b64_field(obj, "x")?;
    let y = b64_field(obj, "y")?;
    // Both checks reject points not on the curve, which would otherwise enable
    // invalid-curve tricks.
    match obj.get("crv")?.as_str()? {
        "P-256" => P256Key::from_sec1_bytes(&uncompressed_point(&x, &y, 32)?)
            .ok()
            .map(PublicKey::P256),
        "P-384" => P384Key::from_sec1_bytes(&uncompressed_point(&x, &y, 48)?)
            .ok()
            .map(PublicKey::P384),
        _ => None,
    }
}

/// RFC 7518 6.2.1.2 fixes the coordinate width to the field size, so shorter or longer
/// members are malformed rather than something to pad or trim.
fn uncompressed_point(x: &[u8], y: &[u8], width: usize) -> Option<Vec<u8>> {
    if x.len() != width || y.len() != width {
        return None;
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * width);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    Some(sec1)
}

/// RFC 8037 octet key pairs; only Ed25519 signs (X25519/X448 are key agreement, Ed448 we
/// do not implement).
fn okp_key(obj: &Map<String, Value>) -> Option<PublicKey> {
    if obj.get("crv")?.as_str()? != "Ed25519" {
        return None;
    }
    let x: [u8; 32] = b64_field(obj, "x")?.try_into().ok()?;
    let key = Ed25519Key::from_bytes(&x).ok()?;
    // A small-order key admits signatures that verify for many messages.
    if key.is_weak() {
        return None;
    }
    Some(PublicKey::Ed25519(key))
}

/// Some providers pad JWK members despite RFC 7518; padding is harmless here because
/// key material is not signed over, unlike JWS segments.
fn b64_field(obj: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    let s = obj.get(name)?.as_str()?;
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testkeys;
    use rsa::traits::PublicKeyParts;
    use rsa::RsaPrivateKey;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(key: &RsaPublicKey, kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
    }

    #[test]
    fn parses_test_jwks() {
        let jwks = Jwks::parse(testkeys::jwks_json().as_bytes()).unwrap();
        assert_eq!(jwks.len(), 2);
        assert!(jwks.has_kid("rsa1"));
        assert!(jwks.has_kid("ec1"));
        assert!(!jwks.has_kid("nope"));
    }

    #[test]
    fn rejects_small_rsa_keys() {
        let small = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let body = json!({"keys": [rsa_jwk(&small.to_public_key(), "small")]}).to_string();
        assert_eq!(Jwks::parse(body.as_bytes()), Err(OidcError::NoUsableKeys));

        let big = testkeys::rsa_key().to_public_key();
        let body =
            json!({"keys": [rsa_jwk(&small.to_public_key(), "small"), rsa_jwk(&big, "big")]});
        let jwks = Jwks::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(jwks.len(), 1);
        assert!(jwks.has_kid("big") && !jwks.has_kid("small"));
    }

    #[test]
    fn skips_unusable_keys() {
        let pubkey = testkeys::rsa_key().to_public_key();
        let mut enc = rsa_jwk(&pubkey, "enc");
        enc["use"] = json!("enc");
        let mut wrap = rsa_jwk(&pubkey, "wrap");
        wrap["key_ops"] = json!(["wrapKey"]);
        let mut mismatched = rsa_jwk(&pubkey, "es");
        mismatched["alg"] = json!("ES256");
        let mut hs = rsa_jwk(&pubkey, "hs");
        hs["alg"] = json!("HS256");
        let body = json!({"keys": [
            enc, wrap, mismatched, hs,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
            {"kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32]), "kid": "offcurve"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
            "not an object",
            rsa_jwk(&pubkey, "good"),
        ]});
        let jwks = Jwks::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(jwks.len(), 1);
        assert!(jwks.has_kid("good"));
    }

    #[test]
    fn accepts_padded_members_and_alg() {
        let pubkey = testkeys::rsa_key().to_public_key();
        let n = base64::engine::general_purpose::URL_SAFE.encode(pubkey.n().to_bytes_be());
        let body =
            json!({"keys": [{"kty": "RSA", "n": n, "e": "AQAB", "alg": "PS256", "use": "sig"}]});
        let jwks = Jwks::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(jwks.keys().first().and_then(|k| k.alg), Some(Alg::PS256));
        assert_eq!(jwks.keys().first().and_then(|k| k.kid.clone()), None);
    }

    #[test]
    fn parses_p384_and_ed25519_keys() {
        let body = testkeys::jwks_json_for(&[
            testkeys::p384_jwk(Some("ec384"), Some("ES384")),
            testkeys::ed25519_jwk(Some("ed1"), Some("EdDSA")),
            testkeys::p384_jwk(None, None),
            testkeys::ed25519_jwk(None, None),
        ]);
        let jwks = Jwks::parse(body.as_bytes()).unwrap();
        assert_eq!(jwks.len(), 4);
        let algs: Vec<Option<Alg>> = jwks.keys().iter().map(|k| k.alg).collect();
        assert_eq!(algs, [Some(Alg::ES384), Some(Alg::EdDSA), None, None]);
        assert!(matches!(jwks.keys()[0].key, PublicKey::P384(_)));
        assert!(matches!(jwks.keys()[1].key, PublicKey::Ed25519(_)));
    }

    #[test]
    fn skips_p384_and_okp_keys_that_do_not_fit() {
        let p384 = testkeys::p384_jwk(None, None);
        let ed = testkeys::ed25519_jwk(None, None);
        let (x384, y384) = (p384["x"].clone(), p384["y"].clone());
        let x_ed = ed["x"].clone();
        let p256 = testkeys::ec_jwk(None, None);
        let with = |mut jwk: Value, member: &str, v: Value| {
            jwk[member] = v;
            jwk
        };
        // Small-order points: the identity (y = 1) and the point of order 2 (y = -1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        // A y for which no x exists, so the encoding names no curve point at all.
        let not_a_point = (2u8..=255)
            .map(|b| {
                let mut y = [0u8; 32];
                y[0] = b;
                y
            })
            .find(|y| Ed25519Key::from_bytes(y).is_err())
            .unwrap();
        // Only the weak-key check, not decoding, keeps the small-order points out.
        for weak in [identity, minus_one] {
            assert!(Ed25519Key::from_bytes(&weak).is_ok_and(|k| k.is_weak()));
        }
        let body = json!({"keys": [
            // A P-384 key may only verify ES384, an Ed25519 key only EdDSA.
            with(p384.clone(), "alg", json!("ES256")),
            with(p384.clone(), "alg", json!("EdDSA")),
            with(ed.clone(), "alg", json!("ES384")),
            with(ed.clone(), "alg", json!("Ed25519")),
            with(p256.clone(), "alg", json!("ES384")),
            with(testkeys::rsa_jwk(None, None), "alg", json!("EdDSA")),
            // Curve names that do not match the coordinates, or that we do not verify.
            with(p256.clone(), "crv", json!("P-384")),
            with(p384.clone(), "crv", json!("P-256")),
            with(p384.clone(), "crv", json!("P-521")),
            with(p384.clone(), "crv", json!("secp256k1")),
            with(ed.clone(), "crv", json!("Ed448")),
            with(ed.clone(), "crv", json!("X25519")),
            with(ed.clone(), "kty", json!("EC")),
            with(p384.clone(), "kty", json!("OKP")),
            // Wrong sizes, off-curve, missing members.
            with(p384.clone(), "x", json!(b64(&[7; 47]))),
            with(p384.clone(), "y", json!(b64(&[7; 49]))),
            with(p384.clone(), "y", x384.clone()),
            with(with(p384.clone(), "x", json!(b64(&[1; 48]))), "y", json!(b64(&[2; 48]))),
            json!({"kty": "EC", "crv": "P-384", "x": x384}),
            json!({"kty": "EC", "crv": "P-384", "y": y384}),
            with(ed.clone(), "x", json!(b64(&[9; 31]))),
            with(ed.clone(), "x", json!(b64(&[9; 33]))),
            with(ed.clone(), "x", json!(b64(&identity))),
            with(ed.clone(), "x", json!(b64(&minus_one))),
            with(ed.clone(), "x", json!(b64(&not_a_point))),
            with(ed.clone(), "x", json!(7)),
            json!({"kty": "OKP", "crv": "Ed25519"}),
            json!({"kty": "OKP", "x": x_ed}),
            with(ed.clone(), "use", json!("enc")),
            with(p384.clone(), "key_ops", json!(["deriveKey"])),
            with(testkeys::rsa_jwk(None, None), "kid", json!("good")),
        ]});
        let jwks = Jwks::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(jwks.len(), 1);
        assert!(jwks.has_kid("good"));
    }

    #[test]
    fn key_count_is_bounded() {
        let keys: Vec<Value> = (0..MAX_KEYS + 8)
            .map(|i| testkeys::ed25519_jwk(Some(&format!("ed{i}")), None))
            .collect();
        let jwks = Jwks::parse(testkeys::jwks_json_for(&keys).as_bytes()).unwrap();
        assert_eq!(jwks.len(), MAX_KEYS);
        assert!(jwks.has_kid(&format!("ed{}", MAX_KEYS - 1)));
        assert!(!jwks.has_kid(&format!("ed{MAX_KEYS}")));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Jwks::parse(b"{"), Err(OidcError::Malformed));
        assert_eq!(Jwks::parse(b"{}"), Err(OidcError::MissingField("keys")));
        assert_eq!(Jwks::parse(br#"{"keys":[]}"#), Err(OidcError::NoUsableKeys));
    }
}
