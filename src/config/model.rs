//! The parsed configuration: every option group's settings, and what the rest of the
//! filter asks of them (the cluster for a host, the client's credentials, the claim names).

use super::cookie::CookieSettings;
use super::keys::KeySet;
use super::lifecycle::Lifecycle;
use super::pages::Pages;
use crate::oidc::{self, ClaimNames, ClientAuth};
use crate::policy::Rules;
use crate::providers::{Cx, Settings};
use crate::routing::routes::{ApiRoute, SkipRoute};
use std::fmt;

/// An issuer whose tokens the filter verifies: the login issuer first, then each of
/// `extra_jwt_issuers` (bearer tokens only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// As configured; discovery is read from `<url>/.well-known/openid-configuration`.
    pub url: String,
    /// A token must name one of these in `aud`.
    pub audiences: Vec<String>,
}

#[derive(Clone)]
pub struct Config {
    /// The login issuer first, then the extra JWT issuers; index = issuer id.
    pub issuers: Vec<Issuer>,
    pub idp_cluster: String,
    /// Host (`host` or `host:port`) -> Envoy cluster, for IdP hosts `idp_cluster` does not serve.
    pub idp_clusters: Vec<(String, String)>,
    pub idp_timeout_ms: u64,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    /// The key `private_key_jwt` signs client assertions with.
    pub client_key: Option<oidc::ClientKey>,
    /// The cookie secrets' keys.
    pub keys: KeySet,
    pub redirect_url: Option<String>,
    pub proxy_prefix: String,
    pub scope: String,
    pub cookie: CookieSettings,
    pub rules: Rules,
    pub whitelist_domains: Vec<String>,
    pub set_xauthrequest: bool,
    pub set_authorization_header: bool,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub pass_user_headers: bool,
    pub pages: Pages,
    pub email_claim: String,
    pub groups_claim: String,
    pub user_id_claim: String,
    pub skip_auth_routes: Vec<SkipRoute>,
    pub skip_auth_preflight: bool,
    pub api_routes: Vec<ApiRoute>,
    pub reverse_proxy: bool,
    pub ping_path: String,
    pub ready_path: String,
    pub ping_user_agent: Option<String>,
    pub skip_jwt_bearer_tokens: bool,
    pub bearer_token_login_fallback: bool,
    pub lifecycle: Lifecycle,
    pub provider: Settings,
}

// Secrets stay out of Debug output so a stray `{:?}` can never log them.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("issuers", &self.issuers)
            .field("idp_cluster", &self.idp_cluster)
            .field("client_id", &self.client_id)
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn callback_path(&self) -> String {
        format!("{}/callback", self.proxy_prefix)
    }

    /// How the filter authenticates to the IdP's token and revocation endpoints.
    /// `assertion`: the signed client assertion for `private_key_jwt` (ignored otherwise).
    pub fn client<'a>(&'a self, assertion: Option<&'a str>) -> oidc::Client<'a> {
        oidc::Client {
            id: &self.client_id,
            secret: &self.client_secret,
            auth: self.client_auth,
            assertion,
        }
    }

    /// The claims `user_id_claim`, `oidc_email_claim` and `oidc_groups_claim` name.
    pub fn claim_names(&self) -> ClaimNames<'_> {
        ClaimNames {
            user: &self.user_id_claim,
            email: &self.email_claim,
            groups: &self.groups_claim,
        }
    }

    /// What the provider's profile and claim reading need of the configuration;
    /// `userinfo`: the login issuer's userinfo endpoint, when it has one.
    pub fn provider_cx<'a>(&'a self, userinfo: Option<&'a str>) -> Cx<'a> {
        Cx {
            userinfo,
            claims: self.claim_names(),
            groups_wanted: !self.rules.allowed_groups.is_empty(),
            allow_unverified_email: self.rules.allow_unverified_email,
            prefer_email_to_user: self.provider.prefer_email_to_user,
        }
    }

    /// The login issuer's URL.
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", |i| i.url.as_str())
    }

    /// The Envoy cluster for a call to `authority` (`host` or `host:port`): the one
    /// `idp_clusters` names for it, else `idp_cluster` for the login issuer's own host.
    /// `None` for any other host: sending it to the login IdP's cluster would ask the wrong
    /// server (and fail its TLS name check at best).
    pub fn cluster_for(&self, authority: &str) -> Option<&str> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let named = self
            .idp_clusters
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(authority) || h.eq_ignore_ascii_case(host));
        if let Some((_, cluster)) = named {
            return Some(cluster);
        }
        let login_host = oidc::target(self.issuer()).ok().map(|t| t.authority);
        let same_host = login_host.is_some_and(|a| a.eq_ignore_ascii_case(authority));
        same_host.then_some(self.idp_cluster.as_str())
    }

    /// The Envoy clusters this configuration sends calls through, each with the host it
    /// serves (`host` or `host:port`): the login issuer's host on `idp_cluster`, then every
    /// `idp_clusters` entry. What a deployment must define (the `check-config` command lists
    /// them; an Istio `ServiceEntry` and `DestinationRule` per host).
    pub fn clusters(&self) -> Vec<(String, String)> {
        let login = oidc::target(self.issuer())
            .map(|t| t.authority)
            .unwrap_or_default();
        std::iter::once((login, self.idp_cluster.clone()))
            .chain(self.idp_clusters.iter().cloned())
            .collect()
    }
}
