//! JWT crafting for the misbehaving OP: RS256 with fixed test keys, `alg: none`, and HS256
//! keyed with the RSA public key (the classic algorithm-confusion attack).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Fixed test-only RSA-2048 keys (generated with openssl for this suite; never used elsewhere).
pub const K1_PEM: &str = include_str!("keys/k1.pem");
pub const K2_PEM: &str = include_str!("keys/k2.pem");
pub const K9_PEM: &str = include_str!("keys/k9.pem");

#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub private: RsaPrivateKey,
}

impl Key {
    pub fn load(kid: &str, pem: &str) -> Key {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).expect("parse test key");
        Key {
            kid: kid.to_string(),
            private,
        }
    }
    pub fn public(&self) -> RsaPublicKey {
        self.private.to_public_key()
    }
    pub fn jwk(&self) -> Value {
        let p = self.public();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": B64URL.encode(p.n().to_bytes_be()),
            "e": B64URL.encode(p.e().to_bytes_be()),
        })
    }
    /// SubjectPublicKeyInfo PEM of the public key.
    pub fn public_pem(&self) -> String {
        self.public()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .expect("pem")
    }
    pub fn public_der(&self) -> Vec<u8> {
        self.public()
            .to_public_key_der()
            .expect("der")
            .as_bytes()
            .to_vec()
    }
}

pub fn b64(v: &[u8]) -> String {
    B64URL.encode(v)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(serde_json::to_string(header).expect("json").as_bytes()),
        b64(serde_json::to_string(claims).expect("json").as_bytes())
    )
}

/// RS256 with `key`, header kid = `kid` (may differ from key.kid to lie about it).
pub fn sign_rs256(key: &Key, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let input = signing_input(&header, claims);
    let sk = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.private.clone());
    let sig = sk.sign(input.as_bytes()).to_vec();
    format!("{input}.{}", b64(&sig))
}

/// `alg: none`, empty signature.
pub fn sign_none(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!("{}.", signing_input(&header, claims))
}

/// HS256 with an arbitrary key (e.g. the RSA public key's PEM or DER bytes).
pub fn sign_hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let input = signing_input(&header, claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac key");
    mac.update(input.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!("{input}.{}", b64(&sig))
}

/// Change one byte in the middle of the signature.
pub fn corrupt_signature(jwt: &str) -> String {
    let mut parts: Vec<String> = jwt.split('.').map(|s| s.to_string()).collect();
    let mut sig = B64URL.decode(&parts[2]).expect("sig b64");
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    parts[2] = b64(&sig);
    parts.join(".")
}

/// Decode a JWT's payload (no verification).
pub fn payload(jwt: &str) -> Option<Value> {
    let p = jwt.split('.').nth(1)?;
    let bytes = B64URL.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn header(jwt: &str) -> Option<Value> {
    let p = jwt.split('.').next()?;
    let bytes = B64URL.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// base64url(sha256(verifier)), the S256 code_challenge.
pub fn s256(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}
