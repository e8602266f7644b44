//! What `convert` writes, before it is written: the filter's configuration, the secrets it
//! reads from the environment, the hosts it calls, and the report.

use serde_json::{Map, Value};

use crate::report::Report;
use crate::settings::SecretRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `host` or `host:port` as the filter matches it (`idp_clusters` keys).
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub cluster: String,
    /// A Kubernetes Service of the mesh (a name without dots, or `*.svc[.cluster.local]`):
    /// Istio already has its cluster, no ServiceEntry.
    pub in_mesh: bool,
    /// False for the issuer's host when discovery is skipped and nothing is fetched there:
    /// it still names `idp_cluster`, but needs no ServiceEntry.
    pub called: bool,
}

/// Where a secret's value comes from in the generated deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read from the user's configuration: goes into the generated Secret.
    Value(String),
    /// Already in a Secret of the user's (the pod read it with `secretKeyRef`).
    Ref(SecretRef),
    /// Unknown: the generated Secret holds a placeholder to replace.
    Missing,
}

#[derive(Debug, Clone)]
pub struct SecretItem {
    /// The environment variable of Envoy the filter reads it from (`*_env`).
    pub env: &'static str,
    /// Its key in the generated Secret.
    pub key: &'static str,
    pub source: SecretSource,
}

/// What `convert` writes, before it is written.
#[derive(Debug, Default)]
pub struct Plan {
    /// The filter's JSON configuration.
    pub config: Map<String, Value>,
    pub secrets: Vec<SecretItem>,
    /// Every host the filter calls, with its cluster: ServiceEntries and Envoy clusters.
    pub hosts: Vec<Host>,
    /// The app behind Envoy (`upstreams`): `host`, `port`.
    pub upstream: Option<(String, u16)>,
    /// Where oauth2-proxy listened (`http_address`): Envoy's listener.
    pub listen: Option<(String, u16)>,
    pub namespace: String,
    pub report: Report,
}

impl Plan {
    pub fn set(&mut self, key: &str, v: Value) {
        self.config.insert(key.to_string(), v);
    }

    pub(super) fn secret(&mut self, env: &'static str, key: &'static str, source: SecretSource) {
        self.secrets.retain(|s| s.env != env);
        self.secrets.push(SecretItem { env, key, source });
    }
}

pub const CLIENT_SECRET_ENV: &str = "OAUTH2_CLIENT_SECRET";
pub const COOKIE_SECRET_ENV: &str = "OAUTH2_COOKIE_SECRET";
pub const GITHUB_TOKEN_ENV: &str = "OAUTH2_GITHUB_TOKEN";
