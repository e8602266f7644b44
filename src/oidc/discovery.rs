//! OpenID Provider metadata (OIDC Discovery 1.0) and URL helpers for HTTP callouts.

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{OidcError, MAX_DOCUMENT_BYTES};
use super::token::ClientAuth;

const WELL_KNOWN_SUFFIX: &str = "/.well-known/openid-configuration";

/// The subset of provider metadata the gate uses. Serializable so the filter can cache it
/// in shared data between workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// The issuer exactly as the provider spells it; ID tokens must carry this value in
    /// `iss`, so pass this (not the configured string) to `IdTokenRules::issuer`.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Empty means the provider did not advertise it (spec default: client_secret_basic).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    userinfo_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    id_token_signing_alg_values_supported: Option<Vec<String>>,
}

impl Discovery {
    /// Parses a discovery document and checks it belongs to `expected_issuer`
    /// (OIDC Discovery 4.3: a mismatch means the document must not be used).
    pub fn parse(body: &[u8], expected_issuer: &str) -> Result<Discovery, OidcError> {
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(OidcError::Malformed);
        }
        let raw: RawDiscovery = serde_json::from_slice(body).map_err(|_| OidcError::Malformed)?;

        let issuer = raw.issuer.ok_or(OidcError::MissingField("issuer"))?;
        if !issuer_matches(&issuer, expected_issuer) && !tenant_template(&issuer, expected_issuer) {
            return Err(OidcError::BadIssuer);
        }
        check_issuer_url(&issuer)?;

        let authorization_endpoint =
            required_url(raw.authorization_endpoint, "authorization_endpoint")?;
        let token_endpoint = required_url(raw.token_endpoint, "token_endpoint")?;
        let jwks_uri = required_url(raw.jwks_uri, "jwks_uri")?;
        let userinfo_endpoint = optional_url(raw.userinfo_endpoint, "userinfo_endpoint")?;
        let end_session_endpoint = optional_url(raw.end_session_endpoint, "end_session_endpoint")?;
        let revocation_endpoint = optional_url(raw.revocation_endpoint, "revocation_endpoint")?;

        Ok(Discovery {
            issuer,
            authorization_endpoint,
            token_endpoint,
            jwks_uri,
            userinfo_endpoint,
            end_session_endpoint,
            revocation_endpoint,
            token_endpoint_auth_methods_supported: raw
                .token_endpoint_auth_methods_supported
                .unwrap_or_default(),
            code_challenge_methods_supported: raw
                .code_challenge_methods_supported
                .unwrap_or_default(),
            id_token_signing_alg_values_supported: raw
                .id_token_signing_alg_values_supported
                .unwrap_or_default(),
        })
    }

    /// Picks a client-secret authentication method the provider accepts, preferring Basic.
    /// `None` means it only advertises methods we cannot do (e.g. `private_key_jwt`).
    pub fn client_auth(&self) -> Option<ClientAuth> {
        let methods = &self.token_endpoint_auth_methods_supported;
        if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") {
            Some(ClientAuth::Basic)
        } else if methods.iter().any(|m| m == "client_secret_post") {
            Some(ClientAuth::Post)
        } else {
            None
        }
    }
}

/// Microsoft Entra's multi-tenant endpoints (`.../common/v2.0`, `organizations`,
/// `consumers`) publish the issuer as a template, `.../{tenantid}/v2.0`, which each ID token
/// fills with its own tenant: the one documented exception to OIDC Discovery 4.3.
fn tenant_template(actual: &str, expected: &str) -> bool {
    ["common", "organizations", "consumers"].iter().any(|t| {
        issuer_matches(&actual.replacen("{tenantid}", t, 1), expected)
            && actual.contains("{tenantid}")
    })
}

/// Exact match, except that configs commonly differ from the provider by a trailing slash.
pub fn issuer_matches(actual: &str, expected: &str) -> bool {
    actual == expected
        || actual.strip_suffix('/') == Some(expected)
        || expected.strip_suffix('/') == Some(actual)
}

fn required_url(value: Option<String>, field: &'static str) -> Result<String, OidcError> {
    let value = value.ok_or(OidcError::MissingField(field))?;
    metadata_url(&value, field)?;
    Ok(value)
}

fn optional_url(value: Option<String>, field: &'static str) -> Result<Option<String>, OidcError> {
    match value {
        Some(v) => {
            metadata_url(&v, field)?;
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

/// Endpoints must not carry fragments (RFC 6749 3.1); we append query strings to them.
fn metadata_url(value: &str, field: &'static str) -> Result<Url, OidcError> {
    let url = parse_http_url(value, field)?;
    if url.fragment().is_some() {
        return Err(OidcError::BadUrl(field));
    }
    Ok(url)
}

/// Whether an absolute URL may carry `user:password@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// Only what the configuration names (checked once at load, never used as is).
    Allowed,
    /// Anything the filter calls or sends a browser to: credentials in a URL would end up
    /// in logs and headers.
    Refused,
}

/// The one check of an absolute URL, whoever gives it (the configuration, a discovery
/// document, a browser's `rd`): it parses, is http or https, and has a host. http is
/// allowed alongside https because local/dev providers (and in-mesh ones behind an Envoy
/// TLS cluster) are commonly plain http; whether that is acceptable is config policy.
/// What a caller refuses beyond this (fragments, queries) it checks itself.
pub fn http_url(value: &str, credentials: Credentials) -> Option<Url> {
    let url = Url::parse(value).ok()?;
    let http = matches!(url.scheme(), "https" | "http");
    let has_host = url.host_str().is_some_and(|h| !h.is_empty());
    let credentials_ok = credentials == Credentials::Allowed
        || (url.username().is_empty() && url.password().is_none());
    (http && has_host && credentials_ok).then_some(url)
}

/// [`http_url`] for a URL the filter will call, failing with the field it came from.
fn parse_http_url(value: &str, field: &'static str) -> Result<Url, OidcError> {
    http_url(value, Credentials::Refused).ok_or(OidcError::BadUrl(field))
}

/// Issuers are scheme://host[:port][/path] only (OIDC Core 2, `iss`).
fn check_issuer_url(issuer: &str) -> Result<Url, OidcError> {
    let url = metadata_url(issuer, "issuer")?;
    if url.query().is_some() {
        return Err(OidcError::BadUrl("issuer"));
    }
    Ok(url)
}

/// Path (on the issuer's authority) of the discovery document, e.g.
/// `https://idp/realms/x/` -> `/realms/x/.well-known/openid-configuration`.
pub fn well_known_path(issuer: &str) -> Result<String, OidcError> {
    let url = check_issuer_url(issuer)?;
    // Discovery 4: a terminating `/` on the issuer is removed before appending.
    let path = url.path();
    let base = path.strip_suffix('/').unwrap_or(path);
    Ok(format!("{base}{WELL_KNOWN_SUFFIX}"))
}

/// Absolute URL of the discovery document for `issuer`.
pub fn discovery_url(issuer: &str) -> Result<String, OidcError> {
    let url = check_issuer_url(issuer)?;
    let path = well_known_path(issuer)?;
    let authority = authority_of(&url).ok_or(OidcError::BadUrl("issuer"))?;
    Ok(format!("{}://{authority}{path}", url.scheme()))
}

/// Where an HTTP callout goes: `:authority` and `:path` pseudo-header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host` or `host:port` (port omitted when it is the scheme default).
    pub authority: String,
    /// Path plus `?query` when present; never the fragment.
    pub path: String,
}

/// Splits an absolute http(s) URL for a proxy-wasm `dispatch_http_call`.
pub fn target(url: &str) -> Result<Target, OidcError> {
    let parsed = parse_http_url(url, "url")?;
    let authority = authority_of(&parsed).ok_or(OidcError::BadUrl("url"))?;
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Target { authority, path })
}

fn authority_of(url: &Url) -> Option<String> {
    // host_str keeps IPv6 brackets, which is what :authority needs.
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(issuer: &str) -> Vec<u8> {
        json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "userinfo_endpoint": "https://idp.example.com/userinfo",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "response_types_supported": ["code"]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn parses_valid_document() {
        let d =
            Discovery::parse(&doc("https://idp.example.com"), "https://idp.example.com").unwrap();
        assert_eq!(d.issuer, "https://idp.example.com");
        assert_eq!(d.token_endpoint, "https://idp.example.com/token");
        assert_eq!(
            d.userinfo_endpoint.as_deref(),
            Some("https://idp.example.com/userinfo")
        );
        assert_eq!(d.end_session_endpoint, None);
        assert_eq!(d.code_challenge_methods_supported, vec!["S256"]);
        assert_eq!(d.client_auth(), Some(ClientAuth::Post));
    }

    #[test]
    fn roundtrips_through_serde() {
        let d =
            Discovery::parse(&doc("https://idp.example.com"), "https://idp.example.com").unwrap();
        let s = serde_json::to_string(&d).unwrap();
        let back: Discovery = serde_json::from_str(&s).unwrap();
        assert_eq!(d, back);
    }

    #[test]
    fn rejects_issuer_mismatch() {
        let err = Discovery::parse(&doc("https://evil.example.com"), "https://idp.example.com");
        assert_eq!(err, Err(OidcError::BadIssuer));
        let err = Discovery::parse(
            &doc("https://idp.example.com/a"),
            "https://idp.example.com/b",
        );
        assert_eq!(err, Err(OidcError::BadIssuer));
        let err = Discovery::parse(&doc("https://idp.example.com//"), "https://idp.example.com");
        assert_eq!(err, Err(OidcError::BadIssuer));
    }

    #[test]
    fn tolerates_single_trailing_slash() {
        let d =
            Discovery::parse(&doc("https://idp.example.com/"), "https://idp.example.com").unwrap();
        assert_eq!(d.issuer, "https://idp.example.com/");
        assert!(
            Discovery::parse(&doc("https://idp.example.com"), "https://idp.example.com/").is_ok()
        );
    }

    #[test]
    fn rejects_non_http_endpoints_and_missing_fields() {
        let mut v: serde_json::Value = serde_json::from_slice(&doc("https://i")).unwrap();
        v["token_endpoint"] = json!("javascript:alert(1)");
        let r = Discovery::parse(v.to_string().as_bytes(), "https://i");
        assert_eq!(r, Err(OidcError::BadUrl("token_endpoint")));

        v["token_endpoint"] = json!("https://user:pw@i/token");
        let r = Discovery::parse(v.to_string().as_bytes(), "https://i");
        assert_eq!(r, Err(OidcError::BadUrl("token_endpoint")));

        // No Unicode IDNA in the build: an endpoint on a non-ASCII host is refused.
        v["token_endpoint"] = json!("https://\u{ff49}/token");
        let r = Discovery::parse(v.to_string().as_bytes(), "https://i");
        assert_eq!(r, Err(OidcError::BadUrl("token_endpoint")));

        v.as_object_mut().unwrap().remove("jwks_uri");
        v["token_endpoint"] = json!("http://i/token");
        let r = Discovery::parse(v.to_string().as_bytes(), "https://i");
        assert_eq!(r, Err(OidcError::MissingField("jwks_uri")));

        assert_eq!(
            Discovery::parse(b"not json", "https://i"),
            Err(OidcError::Malformed)
        );
    }

    #[test]
    fn default_client_auth_is_basic() {
        let mut d = Discovery::parse(&doc("https://i"), "https://i").unwrap();
        d.token_endpoint_auth_methods_supported.clear();
        assert_eq!(d.client_auth(), Some(ClientAuth::Basic));
        d.token_endpoint_auth_methods_supported = vec!["private_key_jwt".into()];
        assert_eq!(d.client_auth(), None);
    }

    #[test]
    fn well_known_paths() {
        assert_eq!(
            well_known_path("https://idp.example.com").unwrap(),
            "/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_path("https://idp.example.com/realms/x/").unwrap(),
            "/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("http://localhost:8080/realms/x").unwrap(),
            "http://localhost:8080/realms/x/.well-known/openid-configuration"
        );
        assert!(well_known_path("https://idp.example.com/?a=b").is_err());
        assert!(well_known_path("ftp://idp.example.com").is_err());
    }

    #[test]
    fn targets() {
        let t = target("https://idp.example.com/token?x=1#frag").unwrap();
        assert_eq!(t.authority, "idp.example.com");
        assert_eq!(t.path, "/token?x=1");
        let t = target("https://idp.example.com:443/a").unwrap();
        assert_eq!(t.authority, "idp.example.com");
        let t = target("http://[::1]:8080").unwrap();
        assert_eq!(
            t,
            Target {
                authority: "[::1]:8080".into(),
                path: "/".into()
            }
        );
        assert!(target("/relative").is_err());
        assert!(target("file:///etc/passwd").is_err());
    }

    #[test]
    fn the_one_url_check() {
        use Credentials::{Allowed, Refused};
        for ok in ["https://idp.example.com", "http://[::1]:8080/x?y#z"] {
            assert!(http_url(ok, Refused).is_some(), "{ok}");
        }
        for bad in [
            "/relative",
            "ftp://idp.example.com/",
            "https://",
            "file:///etc/passwd",
        ] {
            assert!(http_url(bad, Allowed).is_none(), "{bad}");
        }
        // No Unicode IDNA in the build (Cargo.toml): a non-ASCII host is no URL at all, for
        // the configuration, a discovery document and a browser's `rd` alike.
        for bad in [
            "https://idp.ex\u{e4}mple.com/",
            "https://\u{ff49}dp.example.com/",
            "https://idp\u{3002}example.com/",
        ] {
            assert!(http_url(bad, Allowed).is_none(), "{bad}");
            assert!(target(bad).is_err(), "{bad}");
        }
        assert!(http_url("https://xn--idp-exmple-r5a.com/", Refused).is_some());
        // Credentials: only the configuration lets them through (see `config::check_url`).
        assert!(http_url("https://u:p@idp.example.com/", Allowed).is_some());
        assert!(http_url("https://u:p@idp.example.com/", Refused).is_none());
        assert!(http_url("https://u@idp.example.com/", Refused).is_none());
    }
}
