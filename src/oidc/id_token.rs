//! ID token and bearer JWT validation (OIDC Core 1.0, 3.1.3.7; RFC 9068 for access tokens)
//! on top of JWS verification. What the claims say about the user is read in `claims`.

use serde_json::{Map, Value};

use super::error::JwtError;
use super::jwks::Jwks;
use super::jwt;
use crate::session::seal::constant_time_eq;

/// Clock skew tolerated between us and the provider.
pub const DEFAULT_SKEW: u64 = 60;

/// What a token must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdTokenRules<'a> {
    /// The provider's issuer as published in discovery; compared exactly.
    pub issuer: &'a str,
    /// `aud` must name one of these. The first is our client id: with several audiences an
    /// ID token's `azp` must name it.
    pub audiences: &'a [String],
    /// The nonce bound to this login attempt; `None` skips the check (bearer tokens).
    pub nonce: Option<&'a str>,
    /// Unix seconds.
    pub now: u64,
    pub skew: u64,
    /// An ID token from our own login (`iat` and the `azp` rule required), or a bearer JWT
    /// a machine client presents (RFC 9068 access tokens need neither).
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    IdToken,
    Bearer,
}

impl<'a> IdTokenRules<'a> {
    /// Rules for an ID token with the usual defaults: no nonce, [`DEFAULT_SKEW`].
    pub fn new(issuer: &'a str, audiences: &'a [String], now: u64) -> Self {
        IdTokenRules {
            issuer,
            audiences,
            nonce: None,
            now,
            skew: DEFAULT_SKEW,
            kind: Kind::IdToken,
        }
    }
}

/// A token whose signature and registered claims checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub sub: String,
    pub exp: u64,
    pub claims: Map<String, Value>,
}

pub fn validate_id_token(
    token: &str,
    jwks: &Jwks,
    rules: &IdTokenRules,
) -> Result<Verified, JwtError> {
    let all = jwt::verify(token, jwks)?;

    let iss = required_str(&all, "iss")?;
    if iss != rules.issuer {
        return Err(JwtError::BadIssuer);
    }
    check_audience(&all, rules)?;

    let exp = required_time(&all, "exp")?;
    if exp.saturating_add(rules.skew) <= rules.now {
        return Err(JwtError::Expired);
    }
    let iat = match (rules.kind, all.contains_key("iat")) {
        (Kind::Bearer, false) => None,
        _ => Some(required_time(&all, "iat")?),
    };
    if iat.is_some_and(|iat| iat > rules.now.saturating_add(rules.skew)) {
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
        if !constant_time_eq(got.as_bytes(), expected.as_bytes()) {
            return Err(JwtError::BadNonce);
        }
    }

    let sub = required_str(&all, "sub")?;
    if sub.is_empty() {
        return Err(JwtError::InvalidClaim("sub"));
    }
    Ok(Verified {
        sub: sub.to_owned(),
        exp,
        claims: all,
    })
}

fn check_audience(all: &Map<String, Value>, rules: &IdTokenRules) -> Result<(), JwtError> {
    let audiences: Vec<&str> = match all.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(JwtError::InvalidClaim("aud")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::InvalidClaim("aud")),
    };
    if !audiences
        .iter()
        .any(|a| rules.audiences.iter().any(|ours| ours == a))
    {
        return Err(JwtError::BadAudience);
    }
    if rules.kind == Kind::Bearer {
        return Ok(());
    }
    // With several audiences, azp is what says the token was issued *to us* (3.1.3.7 #4-5).
    let client_id = rules.audiences.first().map_or("", String::as_str);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testkeys::{self, CLIENT_ID, ISSUER, NONCE};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn ours() -> &'static [String] {
        static AUD: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        AUD.get_or_init(|| vec![CLIENT_ID.to_string(), "extra-aud".to_string()])
    }

    fn rules() -> IdTokenRules<'static> {
        IdTokenRules {
            nonce: Some(NONCE),
            ..IdTokenRules::new(ISSUER, ours(), NOW)
        }
    }

    fn check(claims: &Value) -> Result<Verified, JwtError> {
        let token = testkeys::sign_rs256(Some("rsa1"), claims);
        validate_id_token(&token, &testkeys::jwks(), &rules())
    }

    fn check_bearer(claims: &Value) -> Result<Verified, JwtError> {
        let token = testkeys::sign_rs256(Some("rsa1"), claims);
        let r = IdTokenRules {
            kind: Kind::Bearer,
            ..IdTokenRules::new(ISSUER, ours(), NOW)
        };
        validate_id_token(&token, &testkeys::jwks(), &r)
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
            assert_eq!(got.exp, NOW + 300);
            assert_eq!(got.claims.get("iss"), Some(&json!(ISSUER)));
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
        // oidc_extra_audiences: another audience we accept, issued to us (azp).
        assert!(check(&with(json!({"aud": "extra-aud"}))).is_ok());
        assert_eq!(
            check(&with(json!({"aud": "extra-aud", "azp": "extra-aud"}))),
            Err(JwtError::BadAzp)
        );
    }

    #[test]
    fn bearer_tokens_need_no_iat_nonce_or_azp() {
        let claims = with(json!({"iat": null, "nonce": null, "azp": "machine"}));
        assert!(check_bearer(&claims).is_ok());
        assert_eq!(check(&claims), Err(JwtError::BadAzp));
        let claims = with(json!({"iat": null}));
        assert_eq!(check(&claims), Err(JwtError::MissingClaim("iat")));
        for (change, expected) in [
            (json!({"aud": "someone-else"}), JwtError::BadAudience),
            (
                json!({"iss": "https://evil.example.com"}),
                JwtError::BadIssuer,
            ),
            (json!({"exp": NOW - 61}), JwtError::Expired),
            (json!({"exp": null}), JwtError::MissingClaim("exp")),
            (json!({"nbf": NOW + 120}), JwtError::NotYetValid),
            (json!({"iat": NOW + 120}), JwtError::IssuedInFuture),
            (json!({"sub": ""}), JwtError::InvalidClaim("sub")),
        ] {
            assert_eq!(
                check_bearer(&with(change.clone())),
                Err(expected),
                "{change}"
            );
        }
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
        let no_nonce = IdTokenRules::new(ISSUER, ours(), NOW);
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
}
