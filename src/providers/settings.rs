//! `provider` and the provider options, read into the configured provider: the options all
//! OpenID Connect providers share (`skip_oidc_discovery` and the endpoints it needs,
//! `prefer_email_to_user`), then the chosen provider's own, which its file parses. Another
//! provider's options are refused, naming the key.

use super::entra::{self, is_multi_tenant, Entra};
use super::github::{self, GitHub};
use super::gitlab::{self, GitLab};
use super::google::{self, Google};
use super::keycloak::Keycloak;
use super::kind::Kind;
use super::oidc::Oidc;
use super::provider::Provider;
use crate::config::error::{err, ConfigError};
use crate::config::reader::{check_url, Reader};
use crate::oidc::Discovery;

/// The options shared by the providers, then each provider's own.
const COMMON: &[&str] = &[
    "skip_oidc_discovery",
    "login_url",
    "redeem_url",
    "oidc_jwks_url",
    "profile_url",
    "prefer_email_to_user",
];

/// Every key a provider reads, whichever is configured.
pub fn keys() -> impl Iterator<Item = &'static str> {
    COMMON
        .iter()
        .chain(github::KEYS)
        .chain(gitlab::KEYS)
        .chain(google::KEYS)
        .chain(entra::KEYS)
        .copied()
}

#[derive(Debug, Clone)]
enum Which {
    Oidc(Oidc),
    Keycloak(Keycloak),
    Google(Google),
    GitLab(GitLab),
    Entra(Entra),
    GitHub(Box<GitHub>),
}

/// The configured provider.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kind: Kind,
    /// `skip_oidc_discovery`'s endpoints.
    configured: Option<Discovery>,
    pub prefer_email_to_user: bool,
    which: Which,
}

impl Settings {
    pub fn get(&self) -> &dyn Provider {
        match &self.which {
            Which::Oidc(p) => p,
            Which::Keycloak(p) => p,
            Which::Google(p) => p,
            Which::GitLab(p) => p,
            Which::Entra(p) => p,
            Which::GitHub(p) => p.as_ref(),
        }
    }

    /// The endpoints when they are not discovered: `skip_oidc_discovery`'s, or GitHub's.
    pub fn endpoints(&self) -> Option<&Discovery> {
        self.configured.as_ref().or_else(|| self.get().endpoints())
    }

    pub fn github(&self) -> Option<&GitHub> {
        match &self.which {
            Which::GitHub(p) => Some(p.as_ref()),
            _ => None,
        }
    }

    pub fn gitlab(&self) -> Option<&GitLab> {
        match &self.which {
            Which::GitLab(p) => Some(p),
            _ => None,
        }
    }

    pub fn entra(&self) -> Option<&Entra> {
        match &self.which {
            Which::Entra(p) => Some(p),
            _ => None,
        }
    }

    pub fn google(&self) -> Option<&Google> {
        match &self.which {
            Which::Google(p) => Some(p),
            _ => None,
        }
    }
}

/// The provider group's validator. `issuer` is `oidc_issuer_url` (absent for GitHub).
pub fn parse(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
    issuer: Option<&str>,
) -> Result<Settings, ConfigError> {
    let name = r.string_or("provider", "oidc")?;
    let kind = Kind::parse(&name).ok_or_else(|| {
        err(
            "provider",
            format!("`{name}` is not one of {}", Kind::NAMES),
        )
    })?;
    let url = |key: &str| -> Result<Option<String>, ConfigError> {
        let v = r.string(key)?.filter(|s| !s.is_empty());
        if let Some(u) = &v {
            check_url(key, u)?;
        }
        Ok(v)
    };
    let login_url = url("login_url")?;
    let redeem_url = url("redeem_url")?;
    let jwks_url = url("oidc_jwks_url")?;
    let profile_url = url("profile_url")?;

    let own: &[&str] = match kind {
        Kind::GitHub => github::KEYS,
        Kind::GitLab => gitlab::KEYS,
        Kind::Google => google::KEYS,
        Kind::EntraId => entra::KEYS,
        Kind::Oidc | Kind::KeycloakOidc => &[],
    };
    let others = github::KEYS
        .iter()
        .chain(gitlab::KEYS)
        .chain(google::KEYS)
        .chain(entra::KEYS)
        .filter(|k| !own.contains(k));
    if let Some(k) = others.into_iter().find(|k| r.map.contains_key(**k)) {
        return Err(err(k, "only with its provider"));
    }
    if kind != Kind::EntraId && issuer.is_some_and(is_multi_tenant) {
        return Err(err(
            "oidc_issuer_url",
            "a Microsoft multi-tenant issuer admits every tenant: use `provider: ms-entra-id` \
             with `entra_id_allowed_tenants`",
        ));
    }

    let configured = if kind == Kind::GitHub {
        None
    } else if r.bool("skip_oidc_discovery", false)? {
        let need = |v: Option<String>, key: &str| {
            v.ok_or_else(|| err(key, "required with `skip_oidc_discovery`"))
        };
        Some(Discovery {
            issuer: issuer.unwrap_or_default().to_string(),
            authorization_endpoint: need(login_url.clone(), "login_url")?,
            token_endpoint: need(redeem_url.clone(), "redeem_url")?,
            jwks_uri: need(jwks_url, "oidc_jwks_url")?,
            userinfo_endpoint: profile_url,
            ..Discovery::default()
        })
    } else {
        let given = [
            ("login_url", &login_url),
            ("redeem_url", &redeem_url),
            ("oidc_jwks_url", &jwks_url),
        ];
        if let Some((key, _)) = given.iter().find(|(_, v)| v.is_some()) {
            return Err(err(
                key,
                "only with `skip_oidc_discovery: true` (otherwise discovery says where it is)",
            ));
        }
        None
    };
    let which = match kind {
        Kind::Oidc => Which::Oidc(Oidc),
        Kind::KeycloakOidc => Which::Keycloak(Keycloak),
        Kind::Google => Which::Google(Google::parse(r)?),
        Kind::GitLab => Which::GitLab(GitLab::parse(r, issuer)?),
        Kind::EntraId => Which::Entra(Entra::parse(r, issuer)?),
        Kind::GitHub => Which::GitHub(Box::new(GitHub::parse(r, env, login_url, redeem_url)?)),
    };
    Ok(Settings {
        kind,
        configured,
        prefer_email_to_user: r.bool("prefer_email_to_user", false)?,
        which,
    })
}
