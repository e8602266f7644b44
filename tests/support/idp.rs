//! Asking the real IdP (`idp/server.js`) what happened: its test counters, whether an
//! access token is still good (userinfo), its signing keys, and checking an RS256 JWT
//! against them.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::signature::Verifier;
use serde_json::Value;

use super::checks::discovery;
use super::http::{raw_request, Response};
use super::jwt;
use super::stack::Stack;

const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /test/counters`: what the IdP counted since it started or was last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful `refresh_token` grants.
    pub refresh: u64,
    /// `refresh_token` grants that ended in an error (`invalid_grant`, …).
    pub refresh_failed: u64,
    /// Successful `authorization_code` grants.
    pub code: u64,
    /// Successful token exchanges (RFC 8693).
    pub exchange: u64,
    /// Requests to `/token/revocation`.
    pub revocation: u64,
    /// Successful RP-initiated logouts.
    pub end_session: u64,
    /// Refresh grants that presented an already-used (rotated) refresh token: the IdP's
    /// reuse detection fired and revoked the whole grant.
    pub refresh_reused: u64,
    /// Requests for the discovery document.
    pub discovery: u64,
    /// Requests for the signing keys (`/jwks`).
    pub jwks: u64,
}

impl Counters {
    fn from_json(st: &Stack, v: &Value) -> Counters {
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| st.fail(&format!("IdP counters have no `{k}`: {v}")))
        };
        Counters {
            refresh: n("refresh"),
            refresh_failed: n("refresh_failed"),
            code: n("code"),
            exchange: n("exchange"),
            revocation: n("revocation"),
            end_session: n("end_session"),
            refresh_reused: n("refresh_reused"),
            discovery: n("discovery"),
            jwks: n("jwks"),
        }
    }
}

fn counters_call(st: &Stack, method: &str, path: &str) -> Counters {
    // Straight to the IdP: a proxy in front of it may be down.
    let url = format!("{}{path}", st.idp_direct());
    let r = raw_request(method, &url, &[], Some(b""), TIMEOUT)
        .unwrap_or_else(|e| st.fail(&format!("{method} {url}: {e}")));
    st.check(r.status == 200, || format!("{method} {url}: {}", r.short()));
    Counters::from_json(st, &r.json())
}

/// The IdP's counters now.
pub fn counters(st: &Stack) -> Counters {
    counters_call(st, "GET", "/test/counters")
}

/// Zero the IdP's counters.
pub fn reset_counters(st: &Stack) {
    counters_call(st, "POST", "/test/counters/reset");
}

/// The IdP's userinfo endpoint (from discovery).
pub fn userinfo_endpoint(st: &Stack) -> String {
    discovery(st)["userinfo_endpoint"]
        .as_str()
        .unwrap_or_else(|| st.fail("discovery has no userinfo_endpoint"))
        .to_string()
}

/// The userinfo endpoint's answer to `Authorization: Bearer <token>`: 200 means the IdP
/// holds `token` as a valid access token right now.
pub fn userinfo(st: &Stack, endpoint: &str, token: &str) -> Response {
    let hs = vec![
        ("Authorization".to_string(), format!("Bearer {token}")),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    raw_request("GET", endpoint, &hs, None, TIMEOUT)
        .unwrap_or_else(|e| st.fail(&format!("GET {endpoint}: {e}")))
}

/// The IdP's published keys (`jwks_uri` of discovery).
pub fn jwks(st: &Stack) -> Value {
    let uri = discovery(st)["jwks_uri"]
        .as_str()
        .unwrap_or_else(|| st.fail("discovery has no jwks_uri"))
        .to_string();
    let r = raw_request("GET", &uri, &[], None, TIMEOUT)
        .unwrap_or_else(|e| st.fail(&format!("GET {uri}: {e}")));
    st.check(r.status == 200, || format!("GET {uri}: {}", r.short()));
    r.json()
}

/// Checks an RS256 JWT's signature against the RSA key of `jwks` its header names (`kid`),
/// and returns its claims. Says what is wrong otherwise.
pub fn verify_rs256(token: &str, jwks: &Value) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("not a JWS compact serialization: {token:?}"));
    }
    let header = jwt::header(token).ok_or("header is not base64url JSON")?;
    if header["alg"] != "RS256" {
        return Err(format!("header alg is not RS256: {header}"));
    }
    let kid = header["kid"].as_str().ok_or("header has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid && k["kty"] == "RSA"))
        .ok_or_else(|| format!("kid {kid} is not an RSA key of the IdP's JWKS: {jwks}"))?;
    let int = |name: &str| {
        jwk[name]
            .as_str()
            .and_then(|s| B64URL.decode(s).ok())
            .map(|b| rsa::BigUint::from_bytes_be(&b))
            .ok_or_else(|| format!("JWK {kid} has no usable `{name}`"))
    };
    let key =
        rsa::RsaPublicKey::new(int("n")?, int("e")?).map_err(|e| format!("JWK {kid}: {e}"))?;
    let sig = B64URL
        .decode(parts[2])
        .map_err(|e| format!("signature is not base64url: {e}"))?;
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice())
        .map_err(|e| format!("signature: {e}"))?;
    let input = format!("{}.{}", parts[0], parts[1]);
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(input.as_bytes(), &sig)
        .map_err(|e| format!("RS256 signature does not verify with kid {kid}: {e}"))?;
    jwt::payload(token).ok_or_else(|| "payload is not base64url JSON".to_string())
}
