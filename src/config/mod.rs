//! The filter's JSON configuration: oauth2-proxy option names, strict parsing, and
//! errors that name the key, so a typo fails the deployment instead of weakening it.

mod lifecycle;
mod providers;
mod reader;

pub use lifecycle::{Lifecycle, TokenExchange, MAX_CSRF_COOKIES};
pub use providers::{is_multi_tenant, Entra, GitHub, GitLab, Kind, ProviderSettings};
pub use reader::parse_duration_ms;
use reader::{check_url, decode_cookie_secret, is_cookie_name_byte, Reader};
use serde_json::Value;
use std::fmt;

use crate::oidc;
pub use crate::oidc::ClientAuth;
use crate::policy::{ProviderRules, Rules};
use crate::routing::routes::{ApiRoute, SkipRoute};

/// Every key the filter understands. Anything else is rejected: a misspelt security
/// option silently falling back to its default is worse than refusing to start.
const KNOWN_KEYS: &[&str] = &[
    "provider",
    "oidc_issuer_url",
    "idp_cluster",
    "idp_clusters",
    "idp_timeout",
    "client_id",
    "client_secret",
    "client_secret_env",
    "cookie_secret",
    "cookie_secret_env",
    "redirect_url",
    "proxy_prefix",
    "scope",
    "cookie_name",
    "cookie_secure",
    "cookie_samesite",
    "cookie_domains",
    "cookie_path",
    "cookie_expire",
    "cookie_csrf_expire",
    "email_domains",
    "authenticated_emails",
    "allowed_groups",
    "allowed_roles",
    "whitelist_domains",
    "set_xauthrequest",
    "set_authorization_header",
    "pass_access_token",
    "pass_authorization_header",
    "pass_user_headers",
    "skip_provider_button",
    "oidc_email_claim",
    "oidc_groups_claim",
    "oidc_extra_audiences",
    "user_id_claim",
    "insecure_oidc_allow_unverified_email",
    "token_endpoint_auth_method",
    "client_private_key",
    "client_private_key_env",
    "client_private_key_id",
    "skip_auth_routes",
    "skip_auth_regex",
    "skip_auth_preflight",
    "skip_auth_strip_headers",
    "api_routes",
    "reverse_proxy",
    "ping_path",
    "ready_path",
    "ping_user_agent",
    "skip_jwt_bearer_tokens",
    "extra_jwt_issuers",
    "bearer_token_login_fallback",
    "cookie_refresh",
    "session_max_lifetime",
    "session_cookie_minimal",
    "cookie_csrf_per_request",
    "cookie_csrf_per_request_limit",
    "backend_logout_url",
    "oidc_rp_initiated_logout",
    "cookie_secret_previous",
    "cookie_secret_previous_env",
    "upstream_token_exchange",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.problem)
    }
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
    /// oauth2-proxy's `""`: the attribute is left out and the browser default applies.
    Unset,
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub samesite: SameSite,
    pub domains: Vec<String>,
    pub path: String,
    /// Session lifetime in seconds.
    pub expire: u64,
    /// Lifetime of the login-in-progress (CSRF) cookie in seconds.
    pub csrf_expire: u64,
}

impl CookieSettings {
    pub fn csrf_name(&self) -> String {
        format!("{}_csrf", self.name)
    }

    /// `cookie_csrf_per_request`'s cookie for one login attempt, named from its `state`
    /// so parallel logins in several tabs each find their own.
    pub fn csrf_name_for(&self, state: &str) -> String {
        // Our states are base64url; anything else a client sends must not reach a header.
        let tag: String = state
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(16)
            .collect();
        format!("{}_csrf_{tag}", self.name)
    }
}

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
    /// AES-256-GCM key for the session cookie, derived from `cookie_secret`.
    pub session_key: [u8; 32],
    /// Separate key for the CSRF cookie, so one can never be replayed as the other.
    pub csrf_key: [u8; 32],
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
    pub skip_provider_button: bool,
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
    pub provider: ProviderSettings,
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
    pub fn claim_names(&self) -> oidc::ClaimNames<'_> {
        oidc::ClaimNames {
            user: &self.user_id_claim,
            email: &self.email_claim,
            groups: &self.groups_claim,
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

    /// [`Config::parse`], reporting every problem it finds rather than the first only: each
    /// option group is checked on its own (an error in one group hides nothing in another).
    pub fn check(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        Config::parse(json, env).map_err(|e| vec![e])
    }

    /// Parses the JSON configuration. `env` looks up environment variables of the Envoy
    /// process (for the `*_env` keys); it is a parameter so tests need no real environment.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| err("(document)", format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err("(document)", "must be a JSON object"));
        };
        let known = |k: &str| KNOWN_KEYS.contains(&k) || providers::KEYS.contains(&k);
        if let Some(unknown) = map.keys().find(|k| !known(k)) {
            return Err(err(unknown, "unknown option"));
        }
        let r = Reader { map: &map };

        let issuer = r.string("oidc_issuer_url")?.filter(|s| !s.is_empty());
        if let Some(url) = &issuer {
            check_url("oidc_issuer_url", url)?;
        }
        let provider = providers::settings(&r, env, issuer.as_deref())?;
        // GitHub has no issuer: its token endpoint's origin stands for it (the shared-data
        // key of its metadata, and the host `idp_cluster` serves).
        let issuer = match (&issuer, &provider.endpoints) {
            (Some(_), _) if provider.kind == Kind::GitHub => {
                return Err(err(
                    "oidc_issuer_url",
                    "not used by `github` (`login_url`, `redeem_url` and `validate_url` say where it is)",
                ))
            }
            (Some(url), _) => url.clone(),
            (None, Some(e)) if provider.kind == Kind::GitHub => origin_of(&e.token_endpoint),
            (None, _) => return Err(err("oidc_issuer_url", "required")),
        };
        let idp_cluster = r.required_string("idp_cluster")?;
        let client_id = r.required_string("client_id")?;
        let client_auth = match r.string("token_endpoint_auth_method")?.as_deref() {
            // GitHub documents the client credentials as form parameters only.
            None if provider.kind == Kind::GitHub => ClientAuth::Post,
            None | Some("client_secret_basic") => ClientAuth::Basic,
            Some("client_secret_post") => ClientAuth::Post,
            Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
            Some(other) => {
                return Err(err(
                    "token_endpoint_auth_method",
                    format!(
                        "`{other}` is not `client_secret_basic`, `client_secret_post` or `private_key_jwt`"
                    ),
                ))
            }
        };
        // `private_key_jwt` signs instead of sending a secret; the others need one.
        let (client_secret, client_key) = if client_auth == ClientAuth::PrivateKeyJwt {
            if r.map.contains_key("client_secret") || r.map.contains_key("client_secret_env") {
                return Err(err(
                    "client_secret",
                    "not used with `private_key_jwt`: the client signs with `client_private_key`",
                ));
            }
            let pem = r.secret("client_private_key", env)?;
            let kid = r.string("client_private_key_id")?.filter(|s| !s.is_empty());
            let key =
                oidc::ClientKey::from_pem(&pem, kid).map_err(|e| err("client_private_key", e))?;
            (String::new(), Some(key))
        } else {
            if let Some(k) = [
                "client_private_key",
                "client_private_key_env",
                "client_private_key_id",
            ]
            .iter()
            .find(|k| r.map.contains_key(**k))
            {
                return Err(err(
                    k,
                    "only with `token_endpoint_auth_method: private_key_jwt`",
                ));
            }
            (r.secret("client_secret", env)?, None)
        };
        let cookie_secret = r.secret("cookie_secret", env)?;
        let secret_bytes = decode_cookie_secret(&cookie_secret)?;

        let redirect_url = r.string("redirect_url")?;
        if let Some(url) = &redirect_url {
            check_url("redirect_url", url)?;
        }
        let proxy_prefix = r.string_or("proxy_prefix", "/oauth2")?;
        if !proxy_prefix.starts_with('/') || proxy_prefix.ends_with('/') || proxy_prefix.len() < 2 {
            return Err(err(
                "proxy_prefix",
                "must start with `/` and not end with `/`",
            ));
        }

        let cookie = cookie_settings(&r)?;
        let rules = Rules {
            provider: provider.rules(),
            ..rules(&r)?
        };
        let (session_key, csrf_key) = lifecycle::keys_of(&secret_bytes);
        let lifecycle = lifecycle::lifecycle(&r, env, cookie.expire)?;

        // Skipped routes always lose client-sent identity headers; there is no way to
        // turn that off (it would let any client forge an identity on those routes).
        if !r.bool("skip_auth_strip_headers", true)? {
            return Err(err(
                "skip_auth_strip_headers",
                "only `true` is supported: identity headers are always stripped",
            ));
        }

        let mut audiences = vec![client_id.clone()];
        audiences.extend(r.string_list("oidc_extra_audiences")?.unwrap_or_default());
        let mut issuers = vec![Issuer {
            url: issuer,
            audiences,
        }];
        issuers.extend(r.parsed_list("extra_jwt_issuers", parse_extra_issuer)?);
        let idp_clusters = r.string_map("idp_clusters")?;

        let skip_jwt_bearer_tokens = r.bool("skip_jwt_bearer_tokens", false)?;
        if let (true, ProviderRules::GitHub(gh)) = (skip_jwt_bearer_tokens, &rules.provider) {
            if gh.any() {
                return Err(err(
                    "skip_jwt_bearer_tokens",
                    "`github_org`, `github_team`, `github_repo` and `github_users` are checked \
                     through GitHub's API at login; a bearer token cannot prove them, so bearer \
                     tokens cannot be accepted with them",
                ));
            }
        }
        let config = Config {
            issuers,
            idp_cluster,
            idp_clusters,
            idp_timeout_ms: r.duration_ms("idp_timeout", 5000)?,
            client_id,
            client_secret,
            client_auth,
            client_key,
            session_key,
            csrf_key,
            redirect_url,
            proxy_prefix,
            scope: r.string_or("scope", default_scope(&provider, &rules))?,
            cookie,
            rules,
            whitelist_domains: r.string_list("whitelist_domains")?.unwrap_or_default(),
            set_xauthrequest: r.bool("set_xauthrequest", false)?,
            set_authorization_header: r.bool("set_authorization_header", false)?,
            pass_access_token: r.bool("pass_access_token", false)?,
            pass_authorization_header: r.bool("pass_authorization_header", false)?,
            pass_user_headers: r.bool("pass_user_headers", true)?,
            skip_provider_button: r.bool("skip_provider_button", false)?,
            email_claim: r.string_or("oidc_email_claim", "email")?,
            groups_claim: r.string_or("oidc_groups_claim", "groups")?,
            user_id_claim: r.string_or("user_id_claim", "email")?,
            // JSON lists only: regexes may hold commas. oauth2-proxy's older
            // `skip_auth_regex` (paths, any method) adds to them.
            skip_auth_routes: [
                r.parsed_list("skip_auth_routes", SkipRoute::parse)?,
                r.parsed_list("skip_auth_regex", SkipRoute::any_method)?,
            ]
            .concat(),
            skip_auth_preflight: r.bool("skip_auth_preflight", false)?,
            api_routes: r.parsed_list("api_routes", ApiRoute::parse)?,
            reverse_proxy: r.bool("reverse_proxy", false)?,
            ping_path: r.local_path("ping_path", "/ping")?,
            ready_path: r.local_path("ready_path", "/ready")?,
            ping_user_agent: r.string("ping_user_agent")?.filter(|s| !s.is_empty()),
            skip_jwt_bearer_tokens,
            bearer_token_login_fallback: r.bool("bearer_token_login_fallback", true)?,
            lifecycle,
            provider,
        };
        config.check_hosts()?;
        config.check_minimal()?;
        // `backend_logout_url` is called like the IdP: through a cluster that serves its host.
        if let Some(url) = &config.lifecycle.backend_logout_url {
            let target = oidc::target(&url.replace("{id_token}", "x"))
                .map_err(|_| err("backend_logout_url", "bad URL"))?;
            if config.cluster_for(&target.authority).is_none() {
                return Err(err(
                    "backend_logout_url",
                    format!(
                        "no Envoy cluster for `{}`: add it to `idp_clusters`",
                        target.authority
                    ),
                ));
            }
        }
        // Each extra issuer must be reachable through a cluster the configuration names.
        for extra in config.issuers.iter().skip(1) {
            let target =
                oidc::target(&extra.url).map_err(|_| err("extra_jwt_issuers", "bad URL"))?;
            if config.cluster_for(&target.authority).is_none() {
                return Err(err(
                    "extra_jwt_issuers",
                    format!(
                        "no Envoy cluster for `{}`: add it to `idp_clusters`",
                        target.authority
                    ),
                ));
            }
        }
        Ok(config)
    }
}

/// oauth2-proxy's default scopes per provider (GitHub's `read:org` only when organisations
/// or teams are read: for `github_org`, or for `allowed_groups`, which match them).
fn default_scope(p: &ProviderSettings, rules: &Rules) -> &'static str {
    match p.kind {
        Kind::GitHub if p.github.org.is_some() || !rules.allowed_groups.is_empty() => {
            "user:email read:org"
        }
        Kind::GitHub => "user:email",
        // Project access is read through the API (oauth2-proxy's setProjectScope).
        Kind::GitLab if !p.gitlab.projects.is_empty() => "openid email read_api",
        Kind::GitLab => "openid email",
        _ => "openid email profile",
    }
}

/// `scheme://host[:port]` of a URL already checked by `check_url`.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

impl Config {
    /// Every endpoint the configuration names must be reachable through a cluster:
    /// `idp_cluster` serves the issuer's host, `idp_clusters` every other one.
    fn check_hosts(&self) -> Result<(), ConfigError> {
        let p = &self.provider;
        let mut named: Vec<(&str, String)> = Vec::new();
        if let Some(e) = &p.endpoints {
            named.push(("redeem_url", e.token_endpoint.clone()));
            named.push(("oidc_jwks_url", e.jwks_uri.clone()));
            named.extend(e.userinfo_endpoint.clone().map(|u| ("profile_url", u)));
        }
        if p.kind == Kind::GitHub {
            named.push(("validate_url", format!("{}/", p.github.api)));
        }
        if p.kind == Kind::EntraId && !self.rules.allowed_groups.is_empty() {
            named.push(("allowed_groups", format!("{}/", p.entra.graph)));
        }
        for (key, url) in named.into_iter().filter(|(_, u)| !u.is_empty()) {
            let target = oidc::target(&url).map_err(|_| err(key, "bad URL"))?;
            if self.cluster_for(&target.authority).is_none() {
                return Err(err(
                    key,
                    format!(
                        "no Envoy cluster for `{}`: add it to `idp_clusters`",
                        target.authority
                    ),
                ));
            }
        }
        Ok(())
    }

    /// oauth2-proxy refuses options that need tokens a minimal cookie does not keep.
    fn check_minimal(&self) -> Result<(), ConfigError> {
        if !self.lifecycle.session_cookie_minimal {
            return Ok(());
        }
        let needs_tokens = [
            ("pass_access_token", self.pass_access_token),
            ("pass_authorization_header", self.pass_authorization_header),
            ("set_authorization_header", self.set_authorization_header),
            ("cookie_refresh", self.lifecycle.cookie_refresh > 0),
            (
                "upstream_token_exchange",
                self.lifecycle.token_exchange.is_some(),
            ),
        ];
        match needs_tokens.iter().find(|(_, on)| *on) {
            Some((key, _)) => Err(err(
                key,
                "needs tokens in the session, which `session_cookie_minimal` leaves out",
            )),
            None => Ok(()),
        }
    }
}

fn cookie_settings(r: &Reader) -> Result<CookieSettings, ConfigError> {
    let name = r.string_or("cookie_name", "_oauth2_proxy")?;
    if name.is_empty() || !name.bytes().all(is_cookie_name_byte) {
        return Err(err("cookie_name", "must be a non-empty cookie token"));
    }
    let samesite = match r.string("cookie_samesite")?.as_deref() {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some("") => SameSite::Unset,
        Some(other) => {
            return Err(err(
                "cookie_samesite",
                format!("`{other}` is not one of `lax`, `strict`, `none`, `\"\"`"),
            ))
        }
    };
    let secure = r.bool("cookie_secure", true)?;
    if samesite == SameSite::None && !secure {
        return Err(err(
            "cookie_samesite",
            "`none` requires `cookie_secure: true`",
        ));
    }
    let cookie = CookieSettings {
        name,
        secure,
        samesite,
        domains: r.string_list("cookie_domains")?.unwrap_or_default(),
        path: r.string_or("cookie_path", "/")?,
        expire: r.duration("cookie_expire", 168 * 3600)?,
        csrf_expire: r.duration("cookie_csrf_expire", 15 * 60)?,
    };
    if cookie
        .domains
        .iter()
        .any(|d| d.is_empty() || d.contains(';'))
    {
        return Err(err(
            "cookie_domains",
            "entries must be non-empty domain names",
        ));
    }
    if !cookie.path.starts_with('/') || cookie.path.contains(';') {
        return Err(err("cookie_path", "must be a path starting with `/`"));
    }
    Ok(cookie)
}

fn rules(r: &Reader) -> Result<Rules, ConfigError> {
    let lower = |l: Option<Vec<String>>| -> Vec<String> {
        l.unwrap_or_default()
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect()
    };
    let email_domains = lower(r.string_list("email_domains")?);
    let authenticated_emails = lower(r.string_list("authenticated_emails")?);
    if email_domains.is_empty() && authenticated_emails.is_empty() {
        return Err(err(
            "email_domains",
            "required unless `authenticated_emails` is set (use [\"*\"] to allow every email domain)",
        ));
    }
    if let Some(bad) = authenticated_emails
        .iter()
        .find(|e| !crate::policy::valid_email(e))
    {
        return Err(err(
            "authenticated_emails",
            format!("`{bad}` is not an email address"),
        ));
    }
    if email_domains
        .iter()
        .any(|d| d.contains('@') || d.chars().any(char::is_whitespace))
    {
        return Err(err(
            "email_domains",
            "entries are domains (`example.com`, `.example.com`, `*.example.com`) or `*`",
        ));
    }
    Ok(Rules {
        email_domains,
        authenticated_emails,
        allowed_groups: r.string_list("allowed_groups")?.unwrap_or_default(),
        allowed_roles: r.string_list("allowed_roles")?.unwrap_or_default(),
        allow_unverified_email: r.bool("insecure_oidc_allow_unverified_email", false)?,
        provider: ProviderRules::None,
    })
}

/// oauth2-proxy's `extra_jwt_issuers` entry: `issuer=audience`.
fn parse_extra_issuer(entry: &str) -> Result<Issuer, String> {
    let (url, audience) = entry
        .rsplit_once('=')
        .filter(|(u, a)| !u.is_empty() && !a.is_empty())
        .ok_or_else(|| format!("`{entry}` is not `issuer=audience`"))?;
    check_url("extra_jwt_issuers", url).map_err(|e| e.problem)?;
    Ok(Issuer {
        url: url.to_string(),
        audiences: vec![audience.to_string()],
    })
}

#[cfg(test)]
mod tests;

/// A valid configuration for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Config;

    /// The smallest valid configuration, as JSON.
    pub(crate) fn base() -> serde_json::Value {
        serde_json::json!({
            "oidc_issuer_url": "https://idp.example.com",
            "idp_cluster": "idp",
            "client_id": "app",
            "client_secret": "s3cret",
            "cookie_secret": "0123456789abcdef0123456789abcdef",
            "email_domains": ["*"]
        })
    }

    pub(crate) fn config() -> Config {
        match Config::parse(base().to_string().as_bytes(), &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }
}
