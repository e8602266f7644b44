//! How the filter reaches and authenticates to the IdP: `oidc_issuer_url`, the Envoy
//! clusters (`idp_cluster`, `idp_clusters`, ours), `idp_timeout` (ours), the client's
//! identity and secret or key (`client_id`, `client_secret`, `token_endpoint_auth_method`,
//! `client_private_key`), `redirect_url` and `scope`.

use super::error::{err, ConfigError, Errors};
use super::reader::{check_url, Reader};
use crate::oidc::{self, ClientAuth};
use crate::providers::Settings;

pub(super) const KEYS: &[&str] = &[
    "oidc_issuer_url",
    "idp_cluster",
    "idp_clusters",
    "idp_timeout",
    "client_id",
    "client_secret",
    "client_secret_env",
    "token_endpoint_auth_method",
    "client_private_key",
    "client_private_key_env",
    "client_private_key_id",
    "redirect_url",
    "scope",
];

pub(super) struct Idp {
    /// The login issuer's URL (for GitHub, its token endpoint's origin).
    pub issuer: String,
    pub idp_cluster: String,
    pub idp_clusters: Vec<(String, String)>,
    pub idp_timeout_ms: u64,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    pub client_key: Option<oidc::ClientKey>,
    pub redirect_url: Option<String>,
    pub scope: String,
}

/// `oidc_issuer_url`, read before the provider group (which needs it).
pub(super) fn issuer_url(r: &Reader) -> Result<Option<String>, ConfigError> {
    let issuer = r.string("oidc_issuer_url")?.filter(|s| !s.is_empty());
    if let Some(url) = &issuer {
        check_url("oidc_issuer_url", url)?;
    }
    Ok(issuer)
}

/// The IdP group's validator. `groups_wanted`: `allowed_groups` is set (some providers'
/// default scope depends on it).
pub(super) fn parse(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
    issuer: Option<String>,
    provider: &Settings,
    groups_wanted: bool,
) -> Result<Idp, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let p = provider.get();
    // GitHub has no issuer: its token endpoint's origin stands for it (the shared-data key
    // of its metadata, and the host `idp_cluster` serves).
    let issuer = match (issuer, p.has_id_token(), provider.endpoints()) {
        (Some(_), false, _) => {
            errs.push(err(
                "oidc_issuer_url",
                "not used by `github` (`login_url`, `redeem_url` and `validate_url` say where \
                 it is)",
            ));
            String::new()
        }
        (Some(url), true, _) => url,
        (None, false, Some(e)) => origin_of(&e.token_endpoint),
        (None, _, _) => {
            errs.push(err("oidc_issuer_url", "required"));
            String::new()
        }
    };
    let client_auth = errs.or(client_auth(r, provider), ClientAuth::Basic);
    let (client_secret, client_key) =
        errs.or(credentials(r, env, client_auth), (String::new(), None));
    let redirect_url = errs.or(r.string("redirect_url"), None);
    if let Some(url) = &redirect_url {
        errs.ok(check_url("redirect_url", url));
    }
    let idp = Idp {
        issuer,
        idp_cluster: errs.or(r.required_string("idp_cluster"), String::new()),
        idp_clusters: errs.or(r.string_map("idp_clusters"), Vec::new()),
        idp_timeout_ms: errs.or(r.duration_ms("idp_timeout", 5000), 5000),
        client_id: errs.or(r.required_string("client_id"), String::new()),
        client_secret,
        client_auth,
        client_key,
        redirect_url,
        scope: errs.or(
            r.string_or("scope", p.default_scope(groups_wanted)),
            String::new(),
        ),
    };
    errs.done(idp)
}

fn client_auth(r: &Reader, provider: &Settings) -> Result<ClientAuth, ConfigError> {
    Ok(match r.string("token_endpoint_auth_method")?.as_deref() {
        None => provider.get().default_client_auth(),
        Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
        Some(other) => {
            return Err(err(
                "token_endpoint_auth_method",
                format!(
                    "`{other}` is not `client_secret_basic`, `client_secret_post` or \
                     `private_key_jwt`"
                ),
            ))
        }
    })
}

/// `private_key_jwt` signs instead of sending a secret; the others need one.
fn credentials(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
    auth: ClientAuth,
) -> Result<(String, Option<oidc::ClientKey>), ConfigError> {
    if auth == ClientAuth::PrivateKeyJwt {
        if r.map.contains_key("client_secret") || r.map.contains_key("client_secret_env") {
            return Err(err(
                "client_secret",
                "not used with `private_key_jwt`: the client signs with `client_private_key`",
            ));
        }
        let pem = r.secret("client_private_key", env)?;
        let kid = r.string("client_private_key_id")?.filter(|s| !s.is_empty());
        let key = oidc::ClientKey::from_pem(&pem, kid).map_err(|e| err("client_private_key", e))?;
        return Ok((String::new(), Some(key)));
    }
    let key_options = [
        "client_private_key",
        "client_private_key_env",
        "client_private_key_id",
    ];
    if let Some(k) = key_options.iter().find(|k| r.map.contains_key(**k)) {
        return Err(err(
            k,
            "only with `token_endpoint_auth_method: private_key_jwt`",
        ));
    }
    Ok((r.secret("client_secret", env)?, None))
}

/// `scheme://host[:port]` of a URL already checked by `check_url`.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}
