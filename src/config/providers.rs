//! `provider` and the options of each provider, with oauth2-proxy's names: where the
//! endpoints are (discovered, or given with `skip_oidc_discovery`, or a provider's fixed
//! ones) and which provider-specific checks a login must pass.

use super::reader::{check_url, Reader};
use super::{err, ConfigError};
use crate::oidc::Discovery;
use crate::policy::{GitHubRules, ProviderRules};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oidc,
    KeycloakOidc,
    Google,
    GitLab,
    /// Microsoft Entra ID (`ms-entra-id`, `entra-id`, and oauth2-proxy's older `azure`).
    EntraId,
    /// OAuth2 without ID tokens: the user comes from the GitHub API.
    GitHub,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "oidc" => Kind::Oidc,
            "keycloak-oidc" => Kind::KeycloakOidc,
            "google" => Kind::Google,
            "gitlab" => Kind::GitLab,
            "ms-entra-id" | "entra-id" | "azure" => Kind::EntraId,
            "github" => Kind::GitHub,
            _ => return None,
        })
    }

    /// The name on the sign-in button.
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::Oidc => "OpenID Connect",
            Kind::KeycloakOidc => "Keycloak",
            Kind::Google => "Google",
            Kind::GitLab => "GitLab",
            Kind::EntraId => "Microsoft",
            Kind::GitHub => "GitHub",
        }
    }

    /// Whether logins end with an ID token (OpenID Connect) to verify.
    pub fn has_id_token(self) -> bool {
        self != Kind::GitHub
    }
}

#[derive(Debug, Clone, Default)]
pub struct GitHub {
    pub org: Option<String>,
    pub teams: Vec<String>,
    pub repo: Option<String>,
    /// `github_token`: a token that may list the repository's collaborators.
    pub token: Option<String>,
    pub users: Vec<String>,
    /// The REST API's base URL (`validate_url`), without a trailing `/`.
    pub api: String,
}

#[derive(Debug, Clone, Default)]
pub struct GitLab {
    pub groups: Vec<String>,
    /// `group/project` and the minimum access level (GitLab's numbers: 10 guest … 50 owner).
    pub projects: Vec<(String, u8)>,
    /// The REST API's base URL: the issuer's `/api/v4`.
    pub api: String,
}

#[derive(Debug, Clone, Default)]
pub struct Entra {
    /// `entra_id_allowed_tenants`: tenant ids (`tid`) whose users may log in; required for
    /// a multi-tenant issuer (`common`, `organizations`).
    pub allowed_tenants: Vec<String>,
    /// Microsoft Graph's base URL, for groups that did not fit in the token (overage).
    pub graph: String,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub kind: Kind,
    /// The endpoints when they are not discovered: `skip_oidc_discovery`, or GitHub's.
    pub endpoints: Option<Discovery>,
    pub prefer_email_to_user: bool,
    /// Ours (Google): the `hd` claim must be one of these; the first is sent as `hd`.
    pub google_hosted_domains: Vec<String>,
    pub github: GitHub,
    pub gitlab: GitLab,
    pub entra: Entra,
}

pub(super) const KEYS: &[&str] = &[
    "skip_oidc_discovery",
    "login_url",
    "redeem_url",
    "oidc_jwks_url",
    "profile_url",
    "validate_url",
    "prefer_email_to_user",
    "google_hosted_domains",
    "github_org",
    "github_team",
    "github_repo",
    "github_token",
    "github_token_env",
    "github_users",
    "gitlab_group",
    "gitlab_projects",
    "entra_id_allowed_tenants",
];

const GITHUB_LOGIN: &str = "https://github.com/login/oauth/authorize";
const GITHUB_REDEEM: &str = "https://github.com/login/oauth/access_token";
const GITHUB_API: &str = "https://api.github.com";
const GRAPH: &str = "https://graph.microsoft.com";

/// The provider's settings; `issuer` is `oidc_issuer_url` (absent for GitHub).
pub(super) fn settings(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
    issuer: Option<&str>,
) -> Result<ProviderSettings, ConfigError> {
    let name = r.string_or("provider", "oidc")?;
    let kind = Kind::parse(&name).ok_or_else(|| {
        err(
            "provider",
            format!(
                "`{name}` is not one of `oidc`, `keycloak-oidc`, `google`, `gitlab`, \
                 `ms-entra-id` (or `entra-id`, `azure`), `github`"
            ),
        )
    })?;
    let url = |key: &str| -> Result<Option<String>, ConfigError> {
        let v = r.string(key)?.filter(|s| !s.is_empty());
        if let Some(u) = &v {
            check_url(key, u)?;
        }
        Ok(v)
    };
    let list = |key: &str| -> Result<Vec<String>, ConfigError> {
        Ok(r.string_list(key)?.unwrap_or_default())
    };
    let login_url = url("login_url")?;
    let redeem_url = url("redeem_url")?;
    let jwks_url = url("oidc_jwks_url")?;
    let profile_url = url("profile_url")?;
    let validate_url = url("validate_url")?;

    let endpoints = if kind == Kind::GitHub {
        Some(Discovery {
            issuer: String::new(),
            authorization_endpoint: login_url.unwrap_or_else(|| GITHUB_LOGIN.into()),
            token_endpoint: redeem_url.unwrap_or_else(|| GITHUB_REDEEM.into()),
            jwks_uri: String::new(),
            userinfo_endpoint: None,
            end_session_endpoint: None,
            revocation_endpoint: None,
            token_endpoint_auth_methods_supported: Vec::new(),
            code_challenge_methods_supported: Vec::new(),
            id_token_signing_alg_values_supported: Vec::new(),
        })
    } else if r.bool("skip_oidc_discovery", false)? {
        let need = |v: Option<String>, key: &str| {
            v.ok_or_else(|| err(key, "required with `skip_oidc_discovery`"))
        };
        Some(Discovery {
            issuer: issuer.unwrap_or_default().to_string(),
            authorization_endpoint: need(login_url, "login_url")?,
            token_endpoint: need(redeem_url, "redeem_url")?,
            jwks_uri: need(jwks_url, "oidc_jwks_url")?,
            userinfo_endpoint: profile_url,
            end_session_endpoint: None,
            revocation_endpoint: None,
            token_endpoint_auth_methods_supported: Vec::new(),
            code_challenge_methods_supported: Vec::new(),
            id_token_signing_alg_values_supported: Vec::new(),
        })
    } else {
        if let Some(key) = [
            ("login_url", &login_url),
            ("redeem_url", &redeem_url),
            ("oidc_jwks_url", &jwks_url),
        ]
        .iter()
        .find_map(|(k, v)| v.is_some().then_some(*k))
        {
            return Err(err(
                key,
                "only with `skip_oidc_discovery: true` (otherwise discovery says where it is)",
            ));
        }
        None
    };

    let github_token = match (r.string("github_token")?, r.string("github_token_env")?) {
        (Some(_), Some(_)) => {
            return Err(err(
                "github_token",
                "set either `github_token` or `github_token_env`, not both",
            ))
        }
        (Some(t), None) => Some(t).filter(|t| !t.is_empty()),
        (None, Some(var)) => Some(env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            err(
                "github_token_env",
                format!("environment variable `{var}` is not set or empty"),
            )
        })?),
        (None, None) => None,
    };
    let github = GitHub {
        org: r.string("github_org")?.filter(|s| !s.is_empty()),
        teams: list("github_team")?,
        repo: r.string("github_repo")?.filter(|s| !s.is_empty()),
        token: github_token,
        users: list("github_users")?,
        api: validate_url
            .clone()
            .unwrap_or_else(|| GITHUB_API.into())
            .trim_end_matches('/')
            .to_string(),
    };
    if !github.teams.is_empty() && github.org.is_none() {
        return Err(err("github_team", "needs `github_org`"));
    }
    if let Some(repo) = &github.repo {
        if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
            return Err(err("github_repo", "must be `owner/repository`"));
        }
    }
    let uses = |keys: &[&str], owner: Kind| -> Result<(), ConfigError> {
        match keys.iter().find(|k| r.map.contains_key(**k)) {
            Some(k) if kind != owner => Err(err(k, "only with its provider")),
            _ => Ok(()),
        }
    };
    uses(
        &[
            "github_org",
            "github_team",
            "github_repo",
            "github_token",
            "github_token_env",
            "github_users",
        ],
        Kind::GitHub,
    )?;
    uses(&["gitlab_group", "gitlab_projects"], Kind::GitLab)?;
    uses(&["google_hosted_domains"], Kind::Google)?;
    uses(&["entra_id_allowed_tenants"], Kind::EntraId)?;

    let gitlab = GitLab {
        groups: list("gitlab_group")?,
        projects: list("gitlab_projects")?
            .iter()
            .map(|p| gitlab_project(p))
            .collect::<Result<_, _>>()
            .map_err(|e| err("gitlab_projects", e))?,
        api: format!(
            "{}/api/v4",
            issuer.unwrap_or_default().trim_end_matches('/')
        ),
    };
    let entra = Entra {
        allowed_tenants: list("entra_id_allowed_tenants")?,
        graph: GRAPH.into(),
    };
    if kind != Kind::EntraId && issuer.is_some_and(is_multi_tenant) {
        return Err(err(
            "oidc_issuer_url",
            "a Microsoft multi-tenant issuer admits every tenant: use `provider: ms-entra-id` with `entra_id_allowed_tenants`",
        ));
    }
    if kind == Kind::EntraId
        && issuer.is_some_and(is_multi_tenant)
        && entra.allowed_tenants.is_empty()
    {
        return Err(err(
            "entra_id_allowed_tenants",
            "required with a multi-tenant issuer (`common`, `organizations`): list the tenant ids, or `*` for any",
        ));
    }
    Ok(ProviderSettings {
        kind,
        endpoints,
        prefer_email_to_user: r.bool("prefer_email_to_user", false)?,
        google_hosted_domains: list("google_hosted_domains")?
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        github,
        gitlab,
        entra,
    })
}

impl ProviderSettings {
    /// The provider's own access rules, for [`crate::policy::admit`].
    pub(super) fn rules(&self) -> ProviderRules {
        match self.kind {
            Kind::Oidc | Kind::KeycloakOidc => ProviderRules::None,
            Kind::Google => ProviderRules::Google {
                hosted_domains: self.google_hosted_domains.clone(),
            },
            Kind::GitLab => ProviderRules::GitLab {
                groups: self.gitlab.groups.clone(),
                projects: self
                    .gitlab
                    .projects
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect(),
            },
            Kind::EntraId => ProviderRules::Entra {
                tenants: self.entra.allowed_tenants.clone(),
            },
            Kind::GitHub => ProviderRules::GitHub(GitHubRules {
                users: self.github.users.clone(),
                org: self.github.org.clone(),
                teams: self.github.teams.clone(),
                repo: self.github.repo.clone(),
            }),
        }
    }

    /// Whether Entra users may come from several tenants, whose admins each type their
    /// users' emails (a multi-tenant issuer needs `entra_id_allowed_tenants`; one tenant
    /// listed, or a tenant's own issuer, is one tenant).
    pub fn entra_several_tenants(&self) -> bool {
        let t = &self.entra.allowed_tenants;
        self.kind == Kind::EntraId && (t.len() > 1 || t.iter().any(|t| t == "*"))
    }
}

/// Entra's multi-tenant endpoints, whose ID tokens name the user's own tenant.
pub fn is_multi_tenant(issuer: &str) -> bool {
    ["/common/", "/organizations/", "/consumers/"]
        .iter()
        .any(|t| issuer.contains(t) || issuer.ends_with(t.trim_end_matches('/')))
}

/// oauth2-proxy's `gitlab_projects` entry: `group/project` or `group/project=<level>`
/// (default 20, reporter).
fn gitlab_project(entry: &str) -> Result<(String, u8), String> {
    let (path, level) = match entry.rsplit_once('=') {
        Some((p, l)) => (
            p,
            l.parse::<u8>()
                .map_err(|_| format!("`{entry}`: bad access level"))?,
        ),
        None => (entry, 20),
    };
    if !path.contains('/') || path.starts_with('/') || path.ends_with('/') {
        return Err(format!("`{entry}` is not `group/project`"));
    }
    if ![10, 20, 30, 40, 50].contains(&level) {
        return Err(format!(
            "`{entry}`: access level must be 10, 20, 30, 40 or 50"
        ));
    }
    Ok((path.to_string(), level))
}
