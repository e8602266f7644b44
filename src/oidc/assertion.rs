//! `private_key_jwt` client authentication (RFC 7523 2.2, OpenID Connect Core 9): the client
//! proves who it is with a short-lived JWT signed by a key the provider has registered,
//! so no shared secret crosses the wire.
//!
//! Signing is deterministic (PKCS#1 v1.5, RFC 6979 ECDSA) and takes the time and `jti` from
//! the caller, so this stays sans-IO and needs no randomness.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::ObjectIdentifier;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::PrivateKeyInfo;
use rsa::traits::PublicKeyParts as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::jwks::{Alg, MIN_RSA_BITS};
use super::jwt::SHA256_PREFIX;

/// Signing cost grows with the cube of the modulus and runs on the request path inside
/// the proxy; 4096 is also the largest key [`super::Jwks`] will verify with.
const MAX_RSA_BITS: usize = 4096;

/// Long enough for clock skew between proxy and provider, short enough that a leaked
/// assertion is soon useless; providers that track `jti` also only need to remember it
/// this long.
const LIFETIME_SECS: u64 = 60;

/// A key file is a few KiB even with a certificate chain alongside; this bounds the
/// parsing (and bignum validation) that a mistaken path or file can cause.
const MAX_PEM_BYTES: usize = 64 * 1024;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

const SUPPORTED: &str =
    "expected `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`";

/// The client's private key for `private_key_jwt`: RSA (signs RS256) or P-256 (ES256).
#[derive(Clone)]
pub struct ClientKey {
    key: SigningKey,
    kid: Option<String>,
}

#[derive(Clone)]
enum SigningKey {
    // Boxed so the enum is not sized by the larger RSA key.
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

// Manual Debug: derived output would print the private key.
impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

impl ClientKey {
    /// Reads an unencrypted PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, RSA or P-256),
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`). Other PEM blocks
    /// around it (certificates, `EC PARAMETERS`) are ignored. RSA keys must have 2048 to
    /// 4096 bits. Errors describe the problem without quoting the key.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<ClientKey, String> {
        if pem.len() > MAX_PEM_BYTES {
            return Err(format!(
                "PEM text is larger than {} KiB; expected a single private key",
                MAX_PEM_BYTES / 1024
            ));
        }
        let (label, der) = private_key_block(pem)?;
        let key = match label {
            PemLabel::Pkcs8 => pkcs8_key(&der)?,
            PemLabel::Pkcs1 => {
                let key = RsaPrivateKey::from_pkcs1_der(&der).map_err(|_| {
                    "`BEGIN RSA PRIVATE KEY` block is not a valid PKCS#1 RSA private key".to_owned()
                })?;
                rsa_key(key)?
            }
            PemLabel::Sec1 => sec1_key(&der)?,
        };
        Ok(ClientKey { key, kid })
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self.key {
            SigningKey::Rsa(_) => Alg::RS256,
            SigningKey::P256(_) => Alg::ES256,
        }
    }

    /// A client assertion for the endpoint `audience`, valid for 60 seconds from `now`
    /// (Unix seconds). `jti` must be unique per assertion: providers may refuse a replay,
    /// so mint a fresh one for every request. `None` only if signing fails.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
        jti: &str,
    ) -> Option<String> {
        let header = Header {
            alg: self.alg().name(),
            typ: "JWT",
            kid: self.kid.as_deref(),
        };
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            iat: now,
            exp: now.saturating_add(LIFETIME_SECS),
            jti,
        };
        let header = serde_json::to_vec(&header).ok()?;
        let claims = serde_json::to_vec(&claims).ok()?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.sign(input.as_bytes())?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    fn sign(&self, input: &[u8]) -> Option<Vec<u8>> {
        match &self.key {
            SigningKey::Rsa(key) => {
                // The same DigestInfo constant the verifier uses, rather than enabling
                // sha2's `oid` feature just to derive it.
                let scheme = Pkcs1v15Sign {
                    hash_len: Some(<Sha256 as sha2::Digest>::output_size()),
                    prefix: SHA256_PREFIX.into(),
                };
                key.sign(scheme, &Sha256::digest(input)).ok()
            }
            SigningKey::P256(key) => {
                // JOSE wants fixed-width r||s (RFC 7518 3.4), which `to_bytes` gives.
                let signature: p256::ecdsa::Signature = key.try_sign(input).ok()?;
                Some(signature.to_bytes().to_vec())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemLabel {
    Pkcs8,
    Pkcs1,
    Sec1,
}

/// Finds the one private-key block in `pem` and decodes it. Hand-rolled (rather than the
/// crates' `pem` features) to tolerate the extra blocks key files often carry and to say
/// precisely what was found instead.
fn private_key_block(pem: &str) -> Result<(PemLabel, Zeroizing<Vec<u8>>), String> {
    let mut found: Vec<String> = Vec::new();
    let mut key: Option<(PemLabel, Zeroizing<String>)> = None;
    let mut open: Option<(&str, Option<PemLabel>, bool)> = None;
    // Sized up front so growing never reallocates, which would leave an unwiped copy.
    let mut body = Zeroizing::new(String::with_capacity(pem.len()));

    for line in pem.lines().map(str::trim) {
        match open {
            None => {
                let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                else {
                    continue;
                };
                let kind = match label {
                    "PRIVATE KEY" => Some(PemLabel::Pkcs8),
                    "RSA PRIVATE KEY" => Some(PemLabel::Pkcs1),
                    "EC PRIVATE KEY" => Some(PemLabel::Sec1),
                    _ => None,
                };
                open = Some((label, kind, false));
                body.clear();
            }
            Some((label, kind, has_headers)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(format!(
                            "malformed PEM: {} closed by END {}",
                            shown(label),
                            shown(end)
                        ));
                    }
                    found.push(shown(label));
                    if let Some(kind) = kind {
                        if has_headers {
                            return Err(format!(
                                "{} is encrypted (it has Proc-Type/DEK-Info headers); \
                                 decrypt it first, e.g. with `openssl pkey`",
                                shown(label)
                            ));
                        }
                        if key.is_some() {
                            return Err(
                                "PEM holds more than one private key; give exactly one".to_owned()
                            );
                        }
                        let fresh = Zeroizing::new(String::with_capacity(pem.len()));
                        key = Some((kind, std::mem::replace(&mut body, fresh)));
                    }
                    open = None;
                } else if line.starts_with("-----") {
                    return Err(format!("malformed PEM: {} has no END line", shown(label)));
                } else if line.contains(':') {
                    // RFC 1421 headers, only ever used for legacy PEM encryption.
                    open = Some((label, kind, true));
                } else if kind.is_some() {
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, _, _)) = open {
        return Err(format!("malformed PEM: {} has no END line", shown(label)));
    }

    let Some((kind, body)) = key else {
        return Err(no_key_message(&found));
    };
    let der = STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| format!("{} is not valid base64", label_name(kind)))?;
    Ok((kind, der))
}

fn no_key_message(found: &[String]) -> String {
    if found.is_empty() {
        return format!("no PEM block found; {SUPPORTED}");
    }
    let hint = if found.iter().any(|l| l == "`ENCRYPTED PRIVATE KEY`") {
        "; encrypted keys are not supported, decrypt it first, e.g. with `openssl pkey`"
    } else if found.iter().any(|l| l == "`OPENSSH PRIVATE KEY`") {
        "; convert the OpenSSH key to PKCS#8 with `ssh-keygen -p -m PKCS8`"
    } else {
        ""
    };
    format!(
        "no usable private key in PEM (found {}){hint}; {SUPPORTED}",
        found.join(", ")
    )
}

fn label_name(kind: PemLabel) -> &'static str {
    match kind {
        PemLabel::Pkcs8 => "`BEGIN PRIVATE KEY` block",
        PemLabel::Pkcs1 => "`BEGIN RSA PRIVATE KEY` block",
        PemLabel::Sec1 => "`BEGIN EC PRIVATE KEY` block",
    }
}

/// A PEM label for an error message. Labels are public metadata, but a mangled file could
/// put anything between the dashes, so only label-like text is repeated.
fn shown(label: &str) -> String {
    let plain = label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    if plain {
        format!("`{label}`")
    } else {
        "an unrecognised PEM block".to_owned()
    }
}

fn pkcs8_key(der: &[u8]) -> Result<SigningKey, String> {
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|_| "`BEGIN PRIVATE KEY` block is not valid PKCS#8".to_owned())?;
    let oid = info.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        let key = RsaPrivateKey::try_from(info)
            .map_err(|_| "PKCS#8 RSA key is malformed or inconsistent".to_owned())?;
        rsa_key(key)
    } else if oid == EC_PUBLIC_KEY {
        let curve = info.algorithm.parameters_oid().ok();
        if curve != Some(PRIME256V1) {
            return Err(unsupported_curve(curve));
        }
        let secret = p256::SecretKey::try_from(info)
            .map_err(|_| "PKCS#8 P-256 key is malformed".to_owned())?;
        Ok(SigningKey::P256(secret.into()))
    } else {
        Err(unsupported_algorithm(oid))
    }
}

fn sec1_key(der: &[u8]) -> Result<SigningKey, String> {
    let parsed = sec1::EcPrivateKey::try_from(der).map_err(|_| {
        "`BEGIN EC PRIVATE KEY` block is not a valid SEC1 key with a named curve".to_owned()
    })?;
    // The key bytes alone do not say which curve they belong to (a secp256k1 scalar
    // parses as P-256), and the SEC1 decoder does not check the parameters.
    let curve = match parsed.parameters.and_then(|p| p.named_curve()) {
        Some(curve) => curve,
        // Without parameters (RustCrypto writes none), only a public key that matches on
        // P-256 pins the curve; its length tells which curve it was meant for.
        None => match parsed.public_key.map(<[u8]>::len) {
            Some(65 | 33) => PRIME256V1,
            Some(97 | 49) => SECP384R1,
            Some(133 | 67) => SECP521R1,
            Some(_) => return Err(unsupported_curve(None)),
            None => {
                return Err(
                    "`BEGIN EC PRIVATE KEY` block names no curve; expected P-256".to_owned(),
                )
            }
        },
    };
    if curve != PRIME256V1 {
        return Err(unsupported_curve(Some(curve)));
    }
    let secret = p256::SecretKey::try_from(parsed).map_err(|_| {
        "`BEGIN EC PRIVATE KEY` block is not a valid P-256 key (or its public key does not match)"
            .to_owned()
    })?;
    Ok(SigningKey::P256(secret.into()))
}

fn rsa_key(key: RsaPrivateKey) -> Result<SigningKey, String> {
    rsa_size_ok(key.n().bits())?;
    Ok(SigningKey::Rsa(Box::new(key)))
}

fn rsa_size_ok(bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        Err(format!(
            "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ))
    } else if bits > MAX_RSA_BITS {
        Err(format!(
            "RSA key has {bits} bits; at most {MAX_RSA_BITS} are supported"
        ))
    } else {
        Ok(())
    }
}

fn unsupported_curve(curve: Option<ObjectIdentifier>) -> String {
    let name = match curve {
        Some(SECP384R1) => "P-384".to_owned(),
        Some(SECP521R1) => "P-521".to_owned(),
        Some(other) if other.to_string() == "1.3.132.0.10" => "secp256k1".to_owned(),
        Some(other) => format!("curve OID {other}"),
        None => "an unnamed curve".to_owned(),
    };
    format!("EC key is on {name}; only P-256 (ES256) is supported")
}

fn unsupported_algorithm(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.3.101.110" | "1.3.101.111" => "an X25519/X448 key-agreement key".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        _ if oid == RSASSA_PSS => "RSASSA-PSS-restricted RSA".to_owned(),
        other => format!("algorithm OID {other}"),
    };
    format!("PKCS#8 key is {name}; only RSA (RS256) and P-256 EC (ES256) keys are supported")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::{jwt, testkeys, Jwks, JwtError};
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use serde_json::{json, Value};

    const NOW: u64 = 1_700_000_000;
    const TOKEN_URL: &str = "https://idp.example.com/oauth2/token";

    fn rsa_pkcs8() -> String {
        testkeys::rsa_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    fn rsa_pkcs1() -> String {
        testkeys::rsa_key()
            .to_pkcs1_pem(LineEnding::CRLF)
            .unwrap()
            .to_string()
    }

    fn ec_pkcs8() -> String {
        testkeys::ec_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    fn ec_sec1() -> String {
        p256::SecretKey::from(testkeys::ec_key())
            .to_sec1_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    /// The verifying side, built only from the public half as a provider would hold it.
    fn public_jwks(key: &ClientKey, pin_alg: bool) -> Jwks {
        let mut jwk = match &key.key {
            SigningKey::Rsa(k) => json!({
                "kty": "RSA",
                "n": testkeys::b64(&k.n().to_bytes_be()),
                "e": testkeys::b64(&k.e().to_bytes_be()),
            }),
            SigningKey::P256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": testkeys::b64(point.x().unwrap()),
                    "y": testkeys::b64(point.y().unwrap()),
                })
            }
        };
        if let Some(kid) = &key.kid {
            jwk["kid"] = json!(kid);
        }
        if pin_alg {
            jwk["alg"] = json!(key.alg().name());
        }
        Jwks::parse(testkeys::jwks_json_for(&[jwk]).as_bytes()).unwrap()
    }

    fn header_of(token: &str) -> Value {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    }

    fn every_format() -> Vec<(String, Alg)> {
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            ec_sec1()
        );
        // What OpenSSL writes: parameters naming the curve, and the public key.
        let secret = p256::SecretKey::from(testkeys::ec_key());
        let (scalar, public) = (secret.to_bytes(), secret.public_key().to_sec1_bytes());
        let openssl_sec1 = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(PRIME256V1)),
            public_key: Some(&public),
        };
        let openssl_sec1 = pem_block(
            "EC PRIVATE KEY",
            &sec1::der::Encode::to_der(&openssl_sec1).unwrap(),
        );
        vec![
            (openssl_sec1, Alg::ES256),
            (rsa_pkcs8(), Alg::RS256),
            (rsa_pkcs1(), Alg::RS256),
            (ec_pkcs8(), Alg::ES256),
            (ec_sec1(), Alg::ES256),
            // What `openssl ecparam -genkey` writes.
            (with_params, Alg::ES256),
        ]
    }

    #[test]
    fn round_trips_through_the_verifier() {
        for (pem, alg) in every_format() {
            for kid in [Some("client-key-1".to_owned()), None] {
                let key = ClientKey::from_pem(&pem, kid.clone()).unwrap();
                assert_eq!(key.alg(), alg);
                let token = key.assertion("my-client", TOKEN_URL, NOW, "jti-1").unwrap();
                for pin_alg in [false, true] {
                    let claims = jwt::verify(&token, &public_jwks(&key, pin_alg)).unwrap();
                    assert_eq!(claims.get("iss"), Some(&json!("my-client")));
                }
                let mut expected = json!({"alg": alg.name(), "typ": "JWT"});
                if let Some(kid) = &kid {
                    expected["kid"] = json!(kid);
                }
                assert_eq!(header_of(&token), expected);
            }
        }
    }

    #[test]
    fn claims_are_exactly_the_rfc_7523_set() {
        for (pem, _) in every_format() {
            let key = ClientKey::from_pem(&pem, None).unwrap();
            let token = key
                .assertion("client \"1\"", TOKEN_URL, NOW, "a-unique-jti")
                .unwrap();
            let claims = jwt::verify(&token, &public_jwks(&key, false)).unwrap();
            assert_eq!(
                Value::Object(claims),
                json!({
                    "iss": "client \"1\"",
                    "sub": "client \"1\"",
                    "aud": TOKEN_URL,
                    "iat": NOW,
                    "exp": NOW + 60,
                    "jti": "a-unique-jti",
                })
            );
        }
        let key = ClientKey::from_pem(&ec_pkcs8(), None).unwrap();
        let token = key.assertion("c", TOKEN_URL, u64::MAX, "j").unwrap();
        let claims = jwt::verify(&token, &public_jwks(&key, false)).unwrap();
        assert_eq!(claims.get("exp"), Some(&json!(u64::MAX)));
    }

    #[test]
    fn signing_is_deterministic_and_bound_to_the_content() {
        for (pem, _) in every_format() {
            let key = ClientKey::from_pem(&pem, Some("k".into())).unwrap();
            let jwks = public_jwks(&key, false);
            let a = key.assertion("c", TOKEN_URL, NOW, "j1").unwrap();
            assert_eq!(key.assertion("c", TOKEN_URL, NOW, "j1").unwrap(), a);
            let b = key.assertion("c", TOKEN_URL, NOW, "j2").unwrap();
            let (input_a, sig_a) = a.rsplit_once('.').unwrap();
            let (input_b, sig_b) = b.rsplit_once('.').unwrap();
            assert_ne!(sig_a, sig_b);
            assert!(jwt::verify(&b, &jwks).is_ok());
            for swapped in [format!("{input_a}.{sig_b}"), format!("{input_b}.{sig_a}")] {
                assert_eq!(jwt::verify(&swapped, &jwks), Err(JwtError::BadSignature));
            }
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        for (pem, _) in every_format() {
            let key = ClientKey::from_pem(&pem, Some("kid-7".into())).unwrap();
            let shown = format!("{key:?}");
            assert!(shown.starts_with("ClientKey { alg: "), "{shown}");
            assert!(shown.contains("kid-7"));
            assert!(shown.len() < 60, "{shown}");
            assert_no_key_lines(&shown, &pem);
        }
    }

    fn assert_no_key_lines(text: &str, pem: &str) {
        for line in pem
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        {
            assert!(!text.contains(line), "{text}");
        }
    }

    fn err(pem: &str) -> String {
        let e = ClientKey::from_pem(pem, None).unwrap_err();
        assert_no_key_lines(&e, pem);
        e
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    }

    #[test]
    fn refuses_what_is_not_one_private_key() {
        assert!(err("").contains("no PEM block found"));
        assert!(err("/etc/envoy/client-key.pem").contains("no PEM block found"));
        let der = STANDARD.encode(testkeys::rsa_key().to_pkcs8_der().unwrap().as_bytes());
        assert!(err(&der).contains("no PEM block found"));

        let cert = pem_block("CERTIFICATE", b"not really");
        let e = err(&cert);
        assert!(
            e.contains("found `CERTIFICATE`") && e.contains(SUPPORTED),
            "{e}"
        );
        let e = err(&pem_block("PUBLIC KEY", b"x"));
        assert!(e.contains("found `PUBLIC KEY`"), "{e}");
        let e = err(&pem_block("ENCRYPTED PRIVATE KEY", b"x"));
        assert!(e.contains("encrypted keys are not supported"), "{e}");
        let e = err(&pem_block("OPENSSH PRIVATE KEY", b"x"));
        assert!(e.contains("ssh-keygen"), "{e}");
        let e = err(&pem_block("<script>", b"x"));
        assert!(
            e.contains("an unrecognised PEM block") && !e.contains("script"),
            "{e}"
        );

        let two = format!("{}{}", rsa_pkcs8(), ec_sec1());
        assert!(err(&two).contains("more than one private key"));
        // A certificate next to the key is fine.
        assert!(ClientKey::from_pem(&format!("{cert}{}", rsa_pkcs8()), None).is_ok());
        // So is explanatory text before it (RFC 7468 2), as `openssl pkcs12` writes.
        let bag = format!("Bag Attributes\n    localKeyID: 01 02\n{}", ec_pkcs8());
        assert!(ClientKey::from_pem(&bag, None).is_ok());

        let pem = rsa_pkcs8();
        assert!(err(&pem[..pem.len() / 2]).contains("has no END line"));
        let mismatched = pem.replace("END PRIVATE KEY", "END RSA PRIVATE KEY");
        assert!(err(&mismatched).contains("closed by END `RSA PRIVATE KEY`"));
        assert!(err(&format!("x{}", "\n".repeat(MAX_PEM_BYTES))).contains("larger than 64 KiB"));
    }

    #[test]
    fn refuses_broken_encodings() {
        let pem = rsa_pkcs8();
        let mut lines: Vec<&str> = pem.lines().collect();
        lines.insert(3, "!!!!");
        let e = err(&lines.join("\n"));
        assert!(e.contains("is not valid base64"), "{e}");

        let legacy = rsa_pkcs1().replacen(
            "-----\r\n",
            "-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\r\n\r\n",
            1,
        );
        let e = err(&legacy);
        assert!(e.contains("is encrypted"), "{e}");

        // Valid base64 of the wrong structure, under each label.
        for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
            let e = err(&pem_block(label, b"\x30\x03\x02\x01\x00"));
            assert!(e.contains(&format!("`BEGIN {label}` block is not")), "{e}");
        }
        // Right base64, wrong label: PKCS#8 where PKCS#1 is announced and vice versa.
        let der = testkeys::rsa_key().to_pkcs8_der().unwrap();
        assert!(err(&pem_block("RSA PRIVATE KEY", der.as_bytes())).contains("not a valid PKCS#1"));
        let der = testkeys::rsa_key().to_pkcs1_der().unwrap();
        assert!(err(&pem_block("PRIVATE KEY", der.as_bytes())).contains("not valid PKCS#8"));
    }

    #[test]
    fn refuses_small_rsa_keys() {
        let small = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pkcs8 = small.to_pkcs8_pem(LineEnding::LF).unwrap();
        let pkcs1 = small.to_pkcs1_pem(LineEnding::LF).unwrap();
        for pem in [pkcs8.as_str(), pkcs1.as_str()] {
            assert_eq!(
                err(pem),
                "RSA key has 1024 bits; at least 2048 are required"
            );
        }
        assert!(rsa_size_ok(2048).is_ok() && rsa_size_ok(4096).is_ok());
        assert_eq!(
            rsa_size_ok(4097).unwrap_err(),
            "RSA key has 4097 bits; at most 4096 are supported"
        );
        assert!(rsa_size_ok(2047).is_err());
    }

    #[test]
    fn refuses_other_curves_and_key_types() {
        let p384 = p384::SecretKey::random(&mut rand::thread_rng());
        let e = err(&p384.to_pkcs8_pem(LineEnding::LF).unwrap());
        assert_eq!(e, "EC key is on P-384; only P-256 (ES256) is supported");
        let e = err(&p384.to_sec1_pem(LineEnding::LF).unwrap());
        assert_eq!(e, "EC key is on P-384; only P-256 (ES256) is supported");
        // As OpenSSL writes it: the curve named in the parameters.
        let scalar = p384.to_bytes();
        let named = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(SECP384R1)),
            public_key: None,
        };
        let der = sec1::der::Encode::to_der(&named).unwrap();
        let e = err(&pem_block("EC PRIVATE KEY", &der));
        assert_eq!(e, "EC key is on P-384; only P-256 (ES256) is supported");
        // secp256k1 scalars are the same size as P-256 ones; only the name tells them apart.
        let k1 = ObjectIdentifier::new_unwrap("1.3.132.0.10");
        let key = p256::SecretKey::from(testkeys::ec_key()).to_bytes();
        let named = sec1::EcPrivateKey {
            private_key: &key,
            parameters: Some(sec1::EcParameters::NamedCurve(k1)),
            public_key: None,
        };
        let der = sec1::der::Encode::to_der(&named).unwrap();
        let e = err(&pem_block("EC PRIVATE KEY", &der));
        assert_eq!(e, "EC key is on secp256k1; only P-256 (ES256) is supported");

        // RFC 8410 10.3: an Ed25519 PKCS#8 key is this fixed prefix and the 32-byte seed.
        let mut ed = b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20".to_vec();
        ed.extend_from_slice(&[7; 32]);
        let e = err(&pem_block("PRIVATE KEY", &ed));
        assert!(e.starts_with("PKCS#8 key is Ed25519; only RSA"), "{e}");

        // A SEC1 key whose curve is known only from its key bytes could be any 256-bit
        // curve, so it needs the public key to tie it to P-256.
        let secret = p256::SecretKey::from(testkeys::ec_key());
        let scalar = secret.to_bytes();
        let public = secret.public_key().to_sec1_bytes();
        let bare = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: None,
            public_key: None,
        };
        let der = sec1::der::Encode::to_der(&bare).unwrap();
        assert!(err(&pem_block("EC PRIVATE KEY", &der)).contains("names no curve"));
        let with_public = sec1::EcPrivateKey {
            public_key: Some(&public),
            ..bare
        };
        let der = sec1::der::Encode::to_der(&with_public).unwrap();
        let key = ClientKey::from_pem(&pem_block("EC PRIVATE KEY", &der), None).unwrap();
        assert_eq!(key.alg(), Alg::ES256);
        // ...and a public key that is not this scalar's on P-256 is refused.
        let other = p256::SecretKey::random(&mut rand::thread_rng())
            .public_key()
            .to_sec1_bytes();
        let mismatched = sec1::EcPrivateKey {
            public_key: Some(&other),
            ..bare
        };
        let der = sec1::der::Encode::to_der(&mismatched).unwrap();
        assert!(err(&pem_block("EC PRIVATE KEY", &der)).contains("does not match"));
    }
}
