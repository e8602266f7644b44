//! Reading the JSON configuration, group by group (oauth2-proxy's `pkg/validation` style):
//! unknown keys are refused, each option group is validated on its own so every problem is
//! reported at once, then the checks that span groups run on the whole.

use super::access;
use super::bearer;
use super::cookie;
use super::error::{err, ConfigError, Errors};
use super::headers;
use super::idp;
use super::keys;
use super::lifecycle;
use super::model::{Config, Issuer};
use super::pages;
use super::reader::Reader;
use super::routes;
use crate::oidc;
use crate::policy::ProviderRules;
use crate::providers::settings;
use serde_json::Value;

/// Every key the filter understands. Anything else is rejected: a misspelt security option
/// silently falling back to its default is worse than refusing to start.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    let groups: [&[&str]; 10] = [
        &["provider"],
        idp::KEYS,
        keys::KEYS,
        cookie::KEYS,
        access::KEYS,
        routes::KEYS,
        headers::KEYS,
        pages::KEYS,
        bearer::KEYS,
        lifecycle::KEYS,
    ];
    groups
        .into_iter()
        .flatten()
        .copied()
        .chain(settings::keys())
}

impl Config {
    /// Parses the JSON configuration, failing with its first problem. `env` looks up
    /// environment variables of the Envoy process (for the `*_env` keys); it is a parameter
    /// so tests need no real environment.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::check(json, env).map_err(|mut errs| {
            if errs.is_empty() {
                err("(document)", "invalid")
            } else {
                errs.swap_remove(0)
            }
        })
    }

    /// [`Config::parse`], reporting every problem it finds: each option group is checked on
    /// its own (an error in one group hides nothing in another; a group that needs another
    /// one's result waits for it to be right).
    pub fn check(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| vec![err("(document)", format!("not valid JSON: {e}"))])?;
        let Value::Object(map) = value else {
            return Err(vec![err("(document)", "must be a JSON object")]);
        };
        let mut errs = Errors::default();
        let known: Vec<&str> = known_keys().collect();
        for unknown in map.keys().filter(|k| !known.contains(&k.as_str())) {
            errs.push(err(unknown, "unknown option"));
        }
        let r = Reader { map: &map };
        let issuer = errs.or(idp::issuer_url(&r), None);
        let provider = errs.ok(settings::parse(&r, env, issuer.as_deref()));
        let keys = errs.group(keys::parse(&r, env));
        let cookie = errs.ok(cookie::parse(&r));
        let access = errs.group(access::parse(&r));
        let routes = errs.group(routes::parse(&r));
        let headers = errs.group(headers::parse(&r));
        let pages = errs.group(pages::parse(&r));
        let bearer = errs.group(bearer::parse(&r));
        let lifecycle = cookie
            .as_ref()
            .and_then(|c| errs.ok(lifecycle::parse(&r, c.expire)));
        let groups_wanted = access
            .as_ref()
            .is_some_and(|a| !a.rules.allowed_groups.is_empty());
        let idp = provider
            .as_ref()
            .and_then(|p| errs.group(idp::parse(&r, env, issuer, p, groups_wanted)));
        let (
            Some(provider),
            Some(keys),
            Some(cookie),
            Some(access),
            Some(routes),
            Some(headers),
            Some(pages),
            Some(bearer),
            Some(lifecycle),
            Some(idp),
        ) = (
            provider, keys, cookie, access, routes, headers, pages, bearer, lifecycle, idp,
        )
        else {
            return Err(errs.into_vec());
        };
        if !errs.is_empty() {
            return Err(errs.into_vec());
        }
        let mut audiences = vec![idp.client_id.clone()];
        audiences.extend(bearer.extra_audiences);
        let mut issuers = vec![Issuer {
            url: idp.issuer,
            audiences,
        }];
        issuers.extend(bearer.extra_issuers);
        let mut rules = access.rules;
        rules.provider = provider.get().rules();
        let config = Config {
            issuers,
            idp_cluster: idp.idp_cluster,
            idp_clusters: idp.idp_clusters,
            idp_timeout_ms: idp.idp_timeout_ms,
            client_id: idp.client_id,
            client_secret: idp.client_secret,
            client_auth: idp.client_auth,
            client_key: idp.client_key,
            keys,
            redirect_url: idp.redirect_url,
            proxy_prefix: routes.proxy_prefix,
            scope: idp.scope,
            cookie,
            rules,
            whitelist_domains: routes.whitelist_domains,
            set_xauthrequest: headers.set_xauthrequest,
            set_authorization_header: headers.set_authorization_header,
            pass_access_token: headers.pass_access_token,
            pass_authorization_header: headers.pass_authorization_header,
            pass_user_headers: headers.pass_user_headers,
            pages,
            email_claim: access.email_claim,
            groups_claim: access.groups_claim,
            user_id_claim: access.user_id_claim,
            skip_auth_routes: routes.skip_auth_routes,
            skip_auth_preflight: routes.skip_auth_preflight,
            api_routes: routes.api_routes,
            reverse_proxy: routes.reverse_proxy,
            ping_path: routes.ping_path,
            ready_path: routes.ready_path,
            ping_user_agent: routes.ping_user_agent,
            skip_jwt_bearer_tokens: bearer.skip_jwt_bearer_tokens,
            bearer_token_login_fallback: bearer.bearer_token_login_fallback,
            lifecycle,
            provider,
        };
        let problems = across_groups(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

/// The checks that need more than one group.
fn across_groups(config: &Config) -> Vec<ConfigError> {
    let mut errs: Vec<ConfigError> = Vec::new();
    errs.extend(check_hosts(config));
    errs.extend(check_minimal(config));
    if let (true, ProviderRules::GitHub(gh)) =
        (config.skip_jwt_bearer_tokens, &config.rules.provider)
    {
        if gh.any() {
            errs.push(err(
                "skip_jwt_bearer_tokens",
                "`github_org`, `github_team`, `github_repo` and `github_users` are checked \
                 through GitHub's API at login; a bearer token cannot prove them, so bearer \
                 tokens cannot be accepted with them",
            ));
        }
    }
    errs
}

/// Every host the configuration makes the filter call must be reachable through a cluster:
/// `idp_cluster` serves the issuer's host, `idp_clusters` every other one.
fn check_hosts(config: &Config) -> Vec<ConfigError> {
    let p = &config.provider;
    let mut named: Vec<(&str, String)> = Vec::new();
    if let Some(e) = p.endpoints() {
        named.push(("redeem_url", e.token_endpoint.clone()));
        named.push(("oidc_jwks_url", e.jwks_uri.clone()));
        named.extend(e.userinfo_endpoint.clone().map(|u| ("profile_url", u)));
    }
    named.extend(p.get().calls(!config.rules.allowed_groups.is_empty()));
    // `backend_logout_url` is called like the IdP: through a cluster that serves its host.
    if let Some(url) = &config.lifecycle.backend_logout_url {
        named.push(("backend_logout_url", url.replace("{id_token}", "x")));
    }
    for extra in config.issuers.iter().skip(1) {
        named.push(("extra_jwt_issuers", extra.url.clone()));
    }
    let mut errs = Vec::new();
    for (key, url) in named.into_iter().filter(|(_, u)| !u.is_empty()) {
        match oidc::target(&url) {
            Err(_) => errs.push(err(key, "bad URL")),
            Ok(t) if config.cluster_for(&t.authority).is_none() => errs.push(err(
                key,
                format!(
                    "no Envoy cluster for `{}`: add it to `idp_clusters`",
                    t.authority
                ),
            )),
            Ok(_) => {}
        }
    }
    errs
}

/// oauth2-proxy refuses options that need tokens a minimal cookie does not keep.
fn check_minimal(config: &Config) -> Option<ConfigError> {
    if !config.lifecycle.session_cookie_minimal {
        return None;
    }
    let needs_tokens = [
        ("pass_access_token", config.pass_access_token),
        (
            "pass_authorization_header",
            config.pass_authorization_header,
        ),
        ("set_authorization_header", config.set_authorization_header),
        ("cookie_refresh", config.lifecycle.cookie_refresh > 0),
        (
            "upstream_token_exchange",
            config.lifecycle.token_exchange.is_some(),
        ),
    ];
    needs_tokens.iter().find(|(_, on)| *on).map(|(key, _)| {
        err(
            key,
            "needs tokens in the session, which `session_cookie_minimal` leaves out",
        )
    })
}
