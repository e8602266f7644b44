//! Test-only signing keys and token minting, shared with other modules' tests.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey as Ed25519SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p384::ecdsa::SigningKey as P384SigningKey;
use rand::RngCore as _;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::jwks::Jwks;

pub(crate) const ISSUER: &str = "https://idp.example.com";
pub(crate) const CLIENT_ID: &str = "gate-client";
pub(crate) const NONCE: &str = "n-0S6_WzA2Mj";

/// Keygen is slow, so one key per test binary.
pub(crate) fn rsa_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
}

pub(crate) fn ec_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::random(&mut rand::thread_rng()))
}

pub(crate) fn p384_key() -> &'static P384SigningKey {
    static KEY: OnceLock<P384SigningKey> = OnceLock::new();
    KEY.get_or_init(|| P384SigningKey::random(&mut rand::thread_rng()))
}

pub(crate) fn ed25519_key() -> &'static Ed25519SigningKey {
    static KEY: OnceLock<Ed25519SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        Ed25519SigningKey::from_bytes(&seed)
    })
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn with_kid_alg(mut jwk: Value, kid: Option<&str>, alg: Option<&str>) -> Value {
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

pub(crate) fn rsa_jwk(kid: Option<&str>, alg: Option<&str>) -> Value {
    let key = rsa_key();
    let jwk = json!({
        "kty": "RSA",
        "use": "sig",
        "n": b64(&key.n().to_bytes_be()),
        "e": b64(&key.e().to_bytes_be()),
    });
    with_kid_alg(jwk, kid, alg)
}

pub(crate) fn ec_jwk(kid: Option<&str>, alg: Option<&str>) -> Value {
    let point = ec_key().verifying_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "x": b64(point.x().unwrap()),
        "y": b64(point.y().unwrap()),
    });
    with_kid_alg(jwk, kid, alg)
}

pub(crate) fn p384_jwk(kid: Option<&str>, alg: Option<&str>) -> Value {
    let point = p384_key().verifying_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-384",
        "use": "sig",
        "x": b64(point.x().unwrap()),
        "y": b64(point.y().unwrap()),
    });
    with_kid_alg(jwk, kid, alg)
}

pub(crate) fn ed25519_jwk(kid: Option<&str>, alg: Option<&str>) -> Value {
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "use": "sig",
        "x": b64(ed25519_key().verifying_key().as_bytes()),
    });
    with_kid_alg(jwk, kid, alg)
}

pub(crate) fn jwks_json_for(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// RSA key "rsa1" (no alg pin, so RS* and PS* both work) and P-256 key "ec1" (ES256).
pub(crate) fn jwks_json() -> String {
    jwks_json_for(&[
        rsa_jwk(Some("rsa1"), None),
        ec_jwk(Some("ec1"), Some("ES256")),
    ])
}

pub(crate) fn jwks() -> Jwks {
    Jwks::parse(jwks_json().as_bytes()).unwrap()
}

/// [`jwks_json`] plus P-384 key "ec384" and Ed25519 key "ed1", neither pinned to an alg,
/// so only the key-type allow-list stands between them and a mismatched header.
pub(crate) fn jwks_all() -> Jwks {
    let body = jwks_json_for(&[
        rsa_jwk(Some("rsa1"), None),
        ec_jwk(Some("ec1"), Some("ES256")),
        p384_jwk(Some("ec384"), None),
        ed25519_jwk(Some("ed1"), None),
    ]);
    Jwks::parse(body.as_bytes()).unwrap()
}

/// Signs with the key family implied by `header.alg`; the header is used verbatim, so
/// tests can add `crit`, odd `kid`s, etc.
pub(crate) fn sign(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let msg = input.as_bytes();
    let mut rng = rand::thread_rng();
    let key = rsa_key();
    let sig = match header["alg"].as_str().unwrap() {
        "RS256" => key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg)),
        "RS384" => key.sign(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg)),
        "RS512" => key.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg)),
        "PS256" => key.sign_with_rng(&mut rng, Pss::new::<Sha256>(), &Sha256::digest(msg)),
        "PS384" => key.sign_with_rng(&mut rng, Pss::new::<Sha384>(), &Sha384::digest(msg)),
        "PS512" => key.sign_with_rng(&mut rng, Pss::new::<Sha512>(), &Sha512::digest(msg)),
        "ES256" => {
            let sig: Signature = ec_key().sign(msg);
            Ok(sig.to_bytes().to_vec())
        }
        "ES384" => {
            let sig: p384::ecdsa::Signature = p384_key().sign(msg);
            Ok(sig.to_bytes().to_vec())
        }
        "EdDSA" => Ok(ed25519_key().sign(msg).to_bytes().to_vec()),
        other => panic!("testkeys cannot sign {other}"),
    }
    .unwrap();
    format!("{input}.{}", b64(&sig))
}

fn header(alg: &str, kid: Option<&str>) -> Value {
    with_kid_alg(json!({"typ": "JWT"}), kid, Some(alg))
}

pub(crate) fn sign_rs256(kid: Option<&str>, claims: &Value) -> String {
    sign(&header("RS256", kid), claims)
}

pub(crate) fn sign_ps256(kid: Option<&str>, claims: &Value) -> String {
    sign(&header("PS256", kid), claims)
}

pub(crate) fn sign_es256(kid: Option<&str>, claims: &Value) -> String {
    sign(&header("ES256", kid), claims)
}

pub(crate) fn sign_es384(kid: Option<&str>, claims: &Value) -> String {
    sign(&header("ES384", kid), claims)
}

pub(crate) fn sign_eddsa(kid: Option<&str>, claims: &Value) -> String {
    sign(&header("EdDSA", kid), claims)
}

/// Claims of a valid ID token for [`ISSUER`] / [`CLIENT_ID`] / [`NONCE`] issued at `now`.
pub(crate) fn id_claims(now: u64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "user-123",
        "nonce": NONCE,
        "iat": now,
        "exp": now + 300,
        "email": "alice@example.com",
        "email_verified": true,
        "preferred_username": "alice",
        "name": "Alice Example",
        "groups": ["admins", "devs"],
    })
}
