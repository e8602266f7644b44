//! Each issuer's published metadata (discovery document and signing keys): how to fetch it
//! through callouts, a snapshot format to share it between Envoy workers, and the store of
//! what each VM has loaded, by issuer id (the login issuer is id 0, then
//! `extra_jwt_issuers` in the order configured).

use crate::gate::Callout;
use crate::oidc::{self, Discovery, Jwks, OidcError};
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// The login issuer's id.
pub const MAIN: usize = 0;

/// What this VM has loaded, by issuer id.
#[derive(Default)]
pub struct Providers {
    slots: Vec<Option<Rc<Provider>>>,
}

impl Providers {
    pub fn new(issuers: usize) -> Providers {
        Providers {
            slots: vec![None; issuers],
        }
    }

    pub fn get(&self, issuer: usize) -> Option<&Provider> {
        self.slots.get(issuer)?.as_deref()
    }

    pub fn get_rc(&self, issuer: usize) -> Option<Rc<Provider>> {
        self.slots.get(issuer)?.clone()
    }

    pub fn set(&mut self, issuer: usize, provider: Provider) {
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

pub struct Provider {
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

impl Provider {
    pub fn new(
        discovery: Discovery,
        raw_jwks: &[u8],
        fetched_at: u64,
    ) -> Result<Provider, OidcError> {
        let jwks = Jwks::parse(raw_jwks)?;
        let raw_jwks = String::from_utf8(raw_jwks.to_vec()).map_err(|_| OidcError::Malformed)?;
        Ok(Provider {
            discovery,
            jwks,
            fetched_at,
            raw_jwks,
        })
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
    pub fn from_snapshot(bytes: &[u8], issuer: &str) -> Option<Provider> {
        let s: Snapshot = serde_json::from_slice(bytes).ok()?;
        let doc = serde_json::to_vec(&s.discovery).ok()?;
        let discovery = Discovery::parse(&doc, issuer).ok()?;
        Provider::new(discovery, s.jwks.as_bytes(), s.fetched_at).ok()
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
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreachable => f.write_str("unreachable"),
            LoadError::Status(s) => write!(f, "HTTP status {s}"),
            LoadError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// The discovery document from a callout answer (`None` = the callout failed).
pub fn on_discovery(issuer: &str, response: Option<(u16, &[u8])>) -> Result<Discovery, LoadError> {
    Discovery::parse(ok_body(response)?, issuer).map_err(LoadError::Invalid)
}

pub fn on_jwks(
    discovery: Discovery,
    response: Option<(u16, &[u8])>,
    now: u64,
) -> Result<Provider, LoadError> {
    Provider::new(discovery, ok_body(response)?, now).map_err(LoadError::Invalid)
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

    fn loaded(now: u64) -> Provider {
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
        let back = Provider::from_snapshot(&bytes, config().issuer()).unwrap();
        assert_eq!(back.fetched_at, 42);
        assert_eq!(back.discovery, p.discovery);
        assert_eq!(back.jwks.len(), p.jwks.len());
        assert!(Provider::from_snapshot(&bytes, "https://other.example.com").is_none());
        assert!(Provider::from_snapshot(b"junk", config().issuer()).is_none());
    }

    #[test]
    fn staleness() {
        let p = loaded(1000);
        assert!(!p.is_stale(1000 + REFRESH_SECS - 1));
        assert!(p.is_stale(1000 + REFRESH_SECS));
    }
}
