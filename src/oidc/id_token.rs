//! ID token validation (OIDC Core 1.0, 3.1.3.7) on top of JWS verification.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::jwks::Jwks;
use super::{ct_eq, jwt, JwtError};

/// Clock skew tolerated between us and the provider.
pub const DEFAULT_SKEW: u64 = 60;

/// What an ID token must satisfy for this login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdTokenRules<'a> {
    /// The provider's issuer as published in discovery; compared exactly.
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce bound to this login attempt; `None` skips the check (e.g. refresh).
    pub nonce: Option<&'a str>,
    /// Unix seconds.
    pub now: u64,
    pub skew: u64,
    /// Claim holding group names; a dotted path (`realm_access.roles`) is followed when no
    /// top-level claim has that exact name.
    pub groups_claim: &'a str,
    pub email_claim: &'a str,
}

impl<'a> IdTokenRules<'a> {
    /// Rules with the usual defaults: no nonce, [`DEFAULT_SKEW`], `groups`, `email`.
    pub fn new(issuer: &'a str, client_id: &'a str, now: u64) -> Self {
        IdTokenRules {
            issuer,
            client_id,
            nonce: None,
            now,
            skew: DEFAULT_SKEW,
            groups_claim: "groups",
            email_claim: "email",
        }
    }
}

/// The identity facts the gate uses, plus every claim for header mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub exp: u64,
    pub iat: u64,
    pub all: Map<String, Value>,
}

pub fn validate_id_token(
    token: &str,
    jwks: &Jwks,
    rules: &IdTokenRules,
) -> Result<IdClaims, JwtError> {
    let all = jwt::verify(token, jwks)?;

    let iss = required_str(&all, "iss")?;
    if iss != rules.issuer {
        return Err(JwtError::BadIssuer);
    }
    check_audience(&all, rules.client_id)?;

    let exp = required_time(&all, "exp")?;
    let iat = required_time(&all, "iat")?;
    if exp.saturating_add(rules.skew) <= rules.now {
        return Err(JwtError::Expired);
    }
    if iat > rules.now.saturating_add(rules.skew) {
        return Err(JwtError::IssuedInFuture);
    }
    if all.contains_key("nbf") {
        let nbf = required_time(&all, "nbf")?;
        if nbf > rules.now.saturating_add(rules.skew) {
            return Err(JwtError::NotYetValid);
        }
    }

    if let Some(expected) = rules.nonce {
        let got = all
            .get("nonce")
            .and_then(Value::as_str)
            .ok_or(JwtError::BadNonce)?;
        if !ct_eq(got.as_bytes(), expected.as_bytes()) {
            return Err(JwtError::BadNonce);
        }
    }

    let sub = required_str(&all, "sub")?;
    if sub.is_empty() {
        return Err(JwtError::InvalidClaim("sub"));
    }

    Ok(IdClaims {
        sub: sub.to_owned(),
        email: claim(&all, rules.email_claim)
            .and_then(Value::as_str)
            .map(str::to_owned),
        email_verified: all.get("email_verified").and_then(loose_bool),
        preferred_username: optional_str(&all, "preferred_username"),
        name: optional_str(&all, "name"),
        groups: claim(&all, rules.groups_claim)
            .map(string_list)
            .unwrap_or_default(),
        exp,
        iat,
        all,
    })
}

fn check_audience(all: &Map<String, Value>, client_id: &str) -> Result<(), JwtError> {
    let audiences: Vec<&str> = match all.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(JwtError::InvalidClaim("aud")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::InvalidClaim("aud")),
    };
    if !audiences.contains(&client_id) {
        return Err(JwtError::BadAudience);
    }
    // With several audiences, azp is what says the token was issued *to us* (3.1.3.7 #4-5).
    match all.get("azp") {
        Some(azp) if azp.as_str() != Some(client_id) => Err(JwtError::BadAzp),
        None if audiences.len() > 1 => Err(JwtError::BadAzp),
        _ => Ok(()),
    }
}

fn required_str<'m>(all: &'m Map<String, Value>, name: &'static str) -> Result<&'m str, JwtError> {
    match all.get(name) {
        None => Err(JwtError::MissingClaim(name)),
        Some(v) => v.as_str().ok_or(JwtError::InvalidClaim(name)),
    }
}

fn optional_str(all: &Map<String, Value>, name: &str) -> Option<String> {
    all.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// NumericDate may legally be fractional (RFC 7519 2); sub-second precision is irrelevant.
fn required_time(all: &Map<String, Value>, name: &'static str) -> Result<u64, JwtError> {
    let v = all.get(name).ok_or(JwtError::MissingClaim(name))?;
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(JwtError::InvalidClaim(name)),
    }
}

/// Claim names may themselves contain dots (namespaced URIs), so exact names win.
fn claim<'m>(all: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    if let Some(v) = all.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let first = all.get(parts.next()?)?;
    parts.try_fold(first, |v, part| v.get(part))
}

/// Some providers (e.g. Cognito) send booleans as strings.
fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Non-string entries are dropped: groups only ever grant access, so ignoring is safe.
fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testkeys::{self, CLIENT_ID, ISSUER, NONCE};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules() -> IdTokenRules<'static> {
        IdTokenRules {
            nonce: Some(NONCE),
            ..IdTokenRules::new(ISSUER, CLIENT_ID, NOW)
        }
    }

    fn check(claims: &Value) -> Result<IdClaims, JwtError> {
        let token = testkeys::sign_rs256(Some("rsa1"), claims);
        validate_id_token(&token, &testkeys::jwks(), &rules())
    }

    fn with(changes: Value) -> Value {
        let mut claims = testkeys::id_claims(NOW);
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    #[test]
    fn accepts_valid_token_with_each_alg() {
        let claims = testkeys::id_claims(NOW);
        for token in [
            testkeys::sign_rs256(Some("rsa1"), &claims),
            testkeys::sign_ps256(Some("rsa1"), &claims),
            testkeys::sign_es256(Some("ec1"), &claims),
        ] {
            let got = validate_id_token(&token, &testkeys::jwks(), &rules()).unwrap();
            assert_eq!(got.sub, "user-123");
            assert_eq!(got.email.as_deref(), Some("alice@example.com"));
            assert_eq!(got.email_verified, Some(true));
            assert_eq!(got.preferred_username.as_deref(), Some("alice"));
            assert_eq!(got.name.as_deref(), Some("Alice Example"));
            assert_eq!(got.groups, vec!["admins", "devs"]);
            assert_eq!((got.iat, got.exp), (NOW, NOW + 300));
            assert_eq!(got.all.get("iss"), Some(&json!(ISSUER)));
        }
    }

    #[test]
    fn propagates_signature_errors() {
        let token = testkeys::sign_rs256(Some("other"), &testkeys::id_claims(NOW));
        let err = validate_id_token(&token, &testkeys::jwks(), &rules());
        assert_eq!(err, Err(JwtError::UnknownKid));
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(
            check(&with(json!({"iss": "https://evil.example.com"}))),
            Err(JwtError::BadIssuer)
        );
        assert_eq!(
            check(&with(json!({"iss": format!("{ISSUER}/")}))),
            Err(JwtError::BadIssuer)
        );
        assert_eq!(
            check(&with(json!({"iss": null}))),
            Err(JwtError::MissingClaim("iss"))
        );
    }

    #[test]
    fn audience_rules() {
        assert_eq!(
            check(&with(json!({"aud": "someone-else"}))),
            Err(JwtError::BadAudience)
        );
        assert_eq!(
            check(&with(json!({"aud": ["a", "b"]}))),
            Err(JwtError::BadAudience)
        );
        assert_eq!(
            check(&with(json!({"aud": null}))),
            Err(JwtError::MissingClaim("aud"))
        );
        assert_eq!(
            check(&with(json!({"aud": 5}))),
            Err(JwtError::InvalidClaim("aud"))
        );
        assert!(check(&with(json!({"aud": [CLIENT_ID]}))).is_ok());
    }

    #[test]
    fn multiple_audiences_need_azp() {
        let aud = json!([CLIENT_ID, "other"]);
        assert_eq!(check(&with(json!({"aud": aud}))), Err(JwtError::BadAzp));
        assert_eq!(
            check(&with(json!({"aud": aud, "azp": "other"}))),
            Err(JwtError::BadAzp)
        );
        assert!(check(&with(json!({"aud": aud, "azp": CLIENT_ID}))).is_ok());
        // azp, when present, must be us even with a single audience.
        assert_eq!(check(&with(json!({"azp": "other"}))), Err(JwtError::BadAzp));
    }

    #[test]
    fn expiry() {
        assert_eq!(
            check(&with(json!({"exp": NOW - 61}))),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check(&with(json!({"exp": NOW - 60}))),
            Err(JwtError::Expired)
        );
        assert!(
            check(&with(json!({"exp": NOW - 59}))).is_ok(),
            "within skew"
        );
        assert_eq!(
            check(&with(json!({"exp": null}))),
            Err(JwtError::MissingClaim("exp"))
        );
        assert_eq!(
            check(&with(json!({"exp": "soon"}))),
            Err(JwtError::InvalidClaim("exp"))
        );
        assert!(check(&with(json!({"exp": (NOW + 10) as f64 + 0.5}))).is_ok());
    }

    #[test]
    fn issued_in_future() {
        assert_eq!(
            check(&with(json!({"iat": NOW + 61}))),
            Err(JwtError::IssuedInFuture)
        );
        assert!(check(&with(json!({"iat": NOW + 60}))).is_ok());
        assert_eq!(
            check(&with(json!({"iat": null}))),
            Err(JwtError::MissingClaim("iat"))
        );
    }

    #[test]
    fn not_before() {
        assert_eq!(
            check(&with(json!({"nbf": NOW + 120}))),
            Err(JwtError::NotYetValid)
        );
        assert!(check(&with(json!({"nbf": NOW + 30}))).is_ok());
        assert_eq!(
            check(&with(json!({"nbf": -1}))),
            Err(JwtError::InvalidClaim("nbf"))
        );
    }

    #[test]
    fn nonce_rules() {
        assert_eq!(
            check(&with(json!({"nonce": "other"}))),
            Err(JwtError::BadNonce)
        );
        assert_eq!(
            check(&with(json!({"nonce": null}))),
            Err(JwtError::BadNonce)
        );
        assert_eq!(check(&with(json!({"nonce": 1}))), Err(JwtError::BadNonce));
        let token = testkeys::sign_rs256(Some("rsa1"), &with(json!({"nonce": null})));
        let no_nonce = IdTokenRules::new(ISSUER, CLIENT_ID, NOW);
        assert!(validate_id_token(&token, &testkeys::jwks(), &no_nonce).is_ok());
    }

    #[test]
    fn sub_required() {
        assert_eq!(
            check(&with(json!({"sub": null}))),
            Err(JwtError::MissingClaim("sub"))
        );
        assert_eq!(
            check(&with(json!({"sub": ""}))),
            Err(JwtError::InvalidClaim("sub"))
        );
    }

    #[test]
    fn configurable_groups_and_email_claims() {
        let claims = with(json!({
            "groups": null,
            "roles": "solo",
            "upn": "alice@corp",
            "realm_access": {"roles": ["r1", 2, "r2"]},
            "https://ns.example/groups": ["ns"],
            "email_verified": "false",
        }));
        let token = testkeys::sign_rs256(Some("rsa1"), &claims);
        let jwks = testkeys::jwks();
        let mut r = rules();
        let got = validate_id_token(&token, &jwks, &r).unwrap();
        assert!(got.groups.is_empty());
        assert_eq!(got.email_verified, Some(false));

        r.groups_claim = "roles";
        r.email_claim = "upn";
        let got = validate_id_token(&token, &jwks, &r).unwrap();
        assert_eq!(got.groups, vec!["solo"]);
        assert_eq!(got.email.as_deref(), Some("alice@corp"));

        r.groups_claim = "realm_access.roles";
        assert_eq!(
            validate_id_token(&token, &jwks, &r).unwrap().groups,
            vec!["r1", "r2"]
        );
        r.groups_claim = "https://ns.example/groups";
        assert_eq!(
            validate_id_token(&token, &jwks, &r).unwrap().groups,
            vec!["ns"]
        );
    }
}
