//! Each issuer's published metadata (discovery document and signing keys): how to fetch it
//! through callouts, a snapshot format to share it between Envoy workers, and the store of
//! what each VM has loaded, by issuer id (the login issuer is id 0, then
//! `extra_jwt_issuers` in the order configured).

pub mod loader;

use crate::callout::Callout;
use crate::config::Config;
use crate::oidc::{self, Discovery, Jwks, OidcError};
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// The login issuer's id.
pub const MAIN: usize = 0;

/// What this VM has loaded, by issuer id.
#[derive(Default, Clone)]
pub struct Issuers {
    slots: Vec<Option<Rc<Metadata>>>,
}

impl Issuers {
    pub fn new(issuers: usize) -> Issuers {
        Issuers {
            slots: vec![None; issuers],
        }
    }

    pub fn get(&self, issuer: usize) -> Option<&Metadata> {
        self.slots.get(issuer)?.as_deref()
    }

    pub fn get_rc(&self, issuer: usize) -> Option<Rc<Metadata>> {
        self.slots.get(issuer)?.clone()
    }

    pub fn set(&mut self, issuer: usize, provider: Metadata) {
        if let Some(slot) = self.slots.get_mut(issuer) {
            *slot = Some(Rc::new(provider));
        }
    }
}

/// Metadata older than this is refetched in the background.
pub const REFRESH_SECS: u64 = 3600;
/// An unknown `kid` triggers a key refetch at most this often, so forged tokens cannot
/// make us hammer the IdP.
pub const KEY_REFETCH_MIN_SECS: u64 = 5;
/// After a failed load, requests are answered 503 for this long before we try again.
pub const RETRY_SECS: u64 = 2;

pub struct Metadata {
    pub discovery: Discovery,
    pub jwks: Jwks,
    pub fetched_at: u64,
    raw_jwks: String,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    discovery: Discovery,
    jwks: String,
    fetched_at: u64,
}

impl Metadata {
    pub fn new(
        discovery: Discovery,
        raw_jwks: &[u8],
        fetched_at: u64,
    ) -> Result<Metadata, OidcError> {
        let jwks = Jwks::parse(raw_jwks)?;
        let raw_jwks = String::from_utf8(raw_jwks.to_vec()).map_err(|_| OidcError::Malformed)?;
        Ok(Metadata {
            discovery,
            jwks,
            fetched_at,
            raw_jwks,
        })
    }

    /// The login provider when nothing needs loading: a provider that signs nothing (GitHub)
    /// with its endpoints fixed by the configuration.
    pub fn fixed(config: &Config) -> Option<Metadata> {
        let endpoints = config.provider.endpoints().cloned()?;
        (!config.provider.get().has_id_token()).then(|| Metadata::without_keys(endpoints))
    }

    /// A provider without signing keys (GitHub: no ID tokens) whose endpoints are fixed by
    /// the configuration: loaded from the start, never stale, never fetched.
    pub fn without_keys(discovery: Discovery) -> Metadata {
        Metadata {
            discovery,
            jwks: Jwks::default(),
            fetched_at: u64::MAX,
            raw_jwks: String::new(),
        }
    }

    pub fn is_stale(&self, now: u64) -> bool {
        now.saturating_sub(self.fetched_at) >= REFRESH_SECS
    }

    /// Bytes for proxy-wasm shared data, readable by every worker's VM.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&Snapshot {
            discovery: self.discovery.clone(),
            jwks: self.raw_jwks.clone(),
            fetched_at: self.fetched_at,
        })
        .ok()
    }

    /// A provider from another worker's snapshot; the discovery document is re-checked
    /// against the configured issuer, so a foreign snapshot cannot be adopted.
    pub fn from_snapshot(bytes: &[u8], issuer: &str) -> Option<Metadata> {
        let s: Snapshot = serde_json::from_slice(bytes).ok()?;
        let doc = serde_json::to_vec(&s.discovery).ok()?;
        let discovery = Discovery::parse(&doc, issuer).ok()?;
        Metadata::new(discovery, s.jwks.as_bytes(), s.fetched_at).ok()
    }
}

fn get(target: oidc::Target) -> Callout {
    Callout {
        method: "GET",
        authority: target.authority,
        path: target.path,
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
    }
}

pub fn discovery_request(issuer: &str) -> Result<Callout, OidcError> {
    oidc::target(&oidc::discovery_url(issuer)?).map(get)
}

/// The shared-data key under which workers share an issuer's metadata.
pub fn shared_key(issuer: &str) -> String {
    format!("wasm-oauth2-proxy/provider/{issuer}")
}

pub fn jwks_request(discovery: &Discovery) -> Result<Callout, OidcError> {
    oidc::target(&discovery.jwks_uri).map(get)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    Unreachable,
    Status(u16),
    Invalid(OidcError),
    /// The document names an endpoint on a host no configured cluster serves.
    NoCluster(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreachable => f.write_str("unreachable"),
            LoadError::Status(s) => write!(f, "HTTP status {s}"),
            LoadError::Invalid(e) => write!(f, "{e}"),
            LoadError::NoCluster(host) => {
                write!(f, "no Envoy cluster for `{host}`: add it to `idp_clusters`")
            }
        }
    }
}

/// The discovery document from a callout answer (`None` = the callout failed).
pub fn on_discovery(issuer: &str, response: Option<(u16, &[u8])>) -> Result<Discovery, LoadError> {
    Discovery::parse(ok_body(response)?, issuer).map_err(LoadError::Invalid)
}

/// Every endpoint the filter calls must be on a host a cluster serves: refused here, at
/// load, rather than as a failed callout in the middle of a login.
/// The optional ones (userinfo, revocation) on a host without a cluster are left unused
/// instead (Entra's userinfo is on Graph's host, needed only for its groups).
pub fn check_hosts(config: &Config, mut d: Discovery) -> Result<Discovery, LoadError> {
    let covered = |url: &str| -> Result<bool, LoadError> {
        let authority = oidc::target(url).map_err(LoadError::Invalid)?.authority;
        Ok(config.cluster_for(&authority).is_some())
    };
    for url in [&d.token_endpoint, &d.jwks_uri] {
        if !covered(url)? {
            let authority = oidc::target(url).map_err(LoadError::Invalid)?.authority;
            return Err(LoadError::NoCluster(authority));
        }
    }
    if let Some(u) = d.userinfo_endpoint.clone() {
        if !covered(&u)? {
            d.userinfo_endpoint = None;
        }
    }
    if let Some(u) = d.revocation_endpoint.clone() {
        if !covered(&u)? {
            d.revocation_endpoint = None;
        }
    }
    Ok(d)
}

pub fn on_jwks(
    discovery: Discovery,
    response: Option<(u16, &[u8])>,
    now: u64,
) -> Result<Metadata, LoadError> {
    Metadata::new(discovery, ok_body(response)?, now).map_err(LoadError::Invalid)
}

fn ok_body(response: Option<(u16, &[u8])>) -> Result<&[u8], LoadError> {
    match response {
        Some((200, body)) => Ok(body),
        Some((status, _)) => Err(LoadError::Status(status)),
        None => Err(LoadError::Unreachable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::config;
    use crate::oidc::testkeys;

    fn discovery_json(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
        })
        .to_string()
    }

    fn loaded(now: u64) -> Metadata {
        let c = config();
        let d = on_discovery(
            c.issuer(),
            Some((200, discovery_json(c.issuer()).as_bytes())),
        )
        .unwrap();
        on_jwks(d, Some((200, testkeys::jwks_json().as_bytes())), now).unwrap()
    }

    #[test]
    fn callouts_target_the_issuer() {
        let c = config();
        let r = discovery_request(c.issuer()).unwrap();
        assert_eq!((r.method, r.authority.as_str()), ("GET", "idp.example.com"));
        assert_eq!(r.path, "/.well-known/openid-configuration");
        let p = loaded(0);
        assert_eq!(jwks_request(&p.discovery).unwrap().path, "/jwks");
    }

    #[test]
    fn failures_are_classified() {
        let c = config();
        let iss = c.issuer();
        assert_eq!(on_discovery(iss, None).unwrap_err(), LoadError::Unreachable);
        assert_eq!(
            on_discovery(iss, Some((503, b""))).unwrap_err(),
            LoadError::Status(503)
        );
        let foreign = discovery_json("https://other.example.com");
        assert!(matches!(
            on_discovery(iss, Some((200, foreign.as_bytes()))),
            Err(LoadError::Invalid(_))
        ));
        let d = on_discovery(iss, Some((200, discovery_json(iss).as_bytes()))).unwrap();
        assert!(matches!(
            on_jwks(d, Some((200, b"{\"keys\":[]}")), 0),
            Err(LoadError::Invalid(_))
        ));
    }

    #[test]
    fn snapshot_round_trip_and_issuer_check() {
        let p = loaded(42);
        let bytes = p.snapshot().unwrap();
        let back = Metadata::from_snapshot(&bytes, config().issuer()).unwrap();
        assert_eq!(back.fetched_at, 42);
        assert_eq!(back.discovery, p.discovery);
        assert_eq!(back.jwks.len(), p.jwks.len());
        assert!(Metadata::from_snapshot(&bytes, "https://other.example.com").is_none());
        assert!(Metadata::from_snapshot(b"junk", config().issuer()).is_none());
    }

    #[test]
    fn staleness() {
        let p = loaded(1000);
        assert!(!p.is_stale(1000 + REFRESH_SECS - 1));
        assert!(p.is_stale(1000 + REFRESH_SECS));
    }

    const COMMON: &str = "https://login.microsoftonline.com/common/v2.0";
    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

    /// Entra's multi-tenant discovery document (its issuer a template).
    fn entra_json(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        })
        .to_string()
    }

    #[test]
    fn the_tenant_template_is_accepted_for_the_multi_tenant_issuer_only() {
        let doc = entra_json(TEMPLATE);
        for configured in [
            COMMON,
            "https://login.microsoftonline.com/common/v2.0/",
            "https://login.microsoftonline.com/organizations/v2.0",
            "https://login.microsoftonline.com/consumers/v2.0",
        ] {
            let d = on_discovery(configured, Some((200, doc.as_bytes())))
                .unwrap_or_else(|e| panic!("{configured}: {e}"));
            assert_eq!(d.issuer, TEMPLATE, "kept for the ID token's tid to fill");
        }
        // A single tenant's issuer must be the tenant's own, not the template.
        for configured in [
            "https://login.microsoftonline.com/sometenant/v2.0",
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "https://login.microsoftonline.com/common",
            "https://login.example.com/common/v2.0",
        ] {
            assert!(
                matches!(
                    on_discovery(configured, Some((200, doc.as_bytes()))),
                    Err(LoadError::Invalid(OidcError::BadIssuer))
                ),
                "{configured}"
            );
        }
        // Without a template a mismatch is a mismatch, `common` or not.
        let tenant = entra_json("https://login.microsoftonline.com/sometenant/v2.0");
        assert!(matches!(
            on_discovery(COMMON, Some((200, tenant.as_bytes()))),
            Err(LoadError::Invalid(OidcError::BadIssuer))
        ));
        // Only `{tenantid}` is a template.
        let other = entra_json("https://login.microsoftonline.com/{tenant}/v2.0");
        assert!(on_discovery(COMMON, Some((200, other.as_bytes()))).is_err());
        // Snapshots are checked alike.
        let d = on_discovery(COMMON, Some((200, doc.as_bytes()))).unwrap();
        let p = on_jwks(d, Some((200, testkeys::jwks_json().as_bytes())), 7).unwrap();
        let bytes = p.snapshot().unwrap();
        assert!(Metadata::from_snapshot(&bytes, COMMON).is_some());
        assert!(
            Metadata::from_snapshot(&bytes, "https://login.microsoftonline.com/x/v2.0").is_none()
        );
    }

    fn config_with(extra: serde_json::Value) -> Config {
        let mut v = crate::config::tests_support::base();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
    }

    #[test]
    fn check_hosts_wants_a_cluster_for_every_endpoint_called() {
        let doc = |extra: serde_json::Value| {
            let mut d: serde_json::Value =
                serde_json::from_str(&discovery_json("https://idp.example.com")).unwrap();
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            Discovery::parse(d.to_string().as_bytes(), "https://idp.example.com").unwrap()
        };
        let c = config();
        assert!(check_hosts(&c, doc(serde_json::json!({}))).is_ok());
        // The browser's endpoints are not called by the filter.
        let browser = doc(serde_json::json!({
            "authorization_endpoint": "https://login.other.example/authorize",
            "end_session_endpoint": "https://login.other.example/logout",
        }));
        assert_eq!(check_hosts(&c, browser.clone()).unwrap(), browser);
        for field in ["token_endpoint", "jwks_uri"] {
            let d = doc(serde_json::json!({ field: "https://api.other.example/x" }));
            assert_eq!(
                check_hosts(&c, d.clone()).unwrap_err(),
                LoadError::NoCluster("api.other.example".into()),
                "{field}"
            );
            assert!(LoadError::NoCluster("api.other.example".into())
                .to_string()
                .contains("idp_clusters"));
            let served = config_with(serde_json::json!({
                "idp_clusters": {"api.other.example": "other"},
            }));
            assert!(check_hosts(&served, d).is_ok(), "{field}");
        }
        // Optional endpoints on a host without a cluster are left unused, not called.
        for field in ["userinfo_endpoint", "revocation_endpoint"] {
            let d = doc(serde_json::json!({ field: "https://api.other.example/x" }));
            let kept = check_hosts(&c, d).unwrap();
            assert_eq!(
                (&kept.userinfo_endpoint, &kept.revocation_endpoint),
                (&None, &None),
                "{field}"
            );
        }
        // Entra: the keys on the issuer's host, userinfo on Graph's.
        let entra = config_with(serde_json::json!({
            "provider": "ms-entra-id",
            "oidc_issuer_url": COMMON,
            "entra_id_allowed_tenants": ["*"],
        }));
        let template = entra_json(TEMPLATE);
        let d = on_discovery(COMMON, Some((200, template.as_bytes()))).unwrap();
        assert_eq!(
            check_hosts(&entra, d.clone()).unwrap().userinfo_endpoint,
            None
        );
        let entra = config_with(serde_json::json!({
            "provider": "ms-entra-id",
            "oidc_issuer_url": COMMON,
            "entra_id_allowed_tenants": ["*"],
            "idp_clusters": {"graph.microsoft.com": "graph"},
        }));
        assert!(check_hosts(&entra, d).unwrap().userinfo_endpoint.is_some());
    }

    #[test]
    fn a_provider_without_keys_is_never_stale() {
        let d = loaded(0).discovery;
        let p = Metadata::without_keys(d.clone());
        assert_eq!(p.discovery, d);
        assert_eq!(p.jwks.len(), 0);
        assert!(!p.is_stale(0) && !p.is_stale(u64::MAX - 1) && !p.is_stale(u64::MAX));
    }
}
