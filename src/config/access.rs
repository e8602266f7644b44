//! Who gets in: oauth2-proxy's `email_domains`, `authenticated_emails`, `allowed_groups`,
//! `allowed_roles` and verified-email option, and the claims they read
//! (`oidc_email_claim`, `oidc_groups_claim`, `user_id_claim`). The provider's own rules join
//! these from the provider group.

use super::error::{err, ConfigError, Errors};
use super::reader::Reader;
use crate::policy::{ProviderRules, Rules};

pub(super) const KEYS: &[&str] = &[
    "email_domains",
    "authenticated_emails",
    "allowed_groups",
    "allowed_roles",
    "insecure_oidc_allow_unverified_email",
    "oidc_email_claim",
    "oidc_groups_claim",
    "user_id_claim",
];

pub(super) struct Access {
    pub rules: Rules,
    pub email_claim: String,
    pub groups_claim: String,
    pub user_id_claim: String,
}

/// The access group's validator.
pub(super) fn parse(r: &Reader) -> Result<Access, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let rules = errs.or(rules(r), Rules::default());
    let mut claim = |key: &str, default: &str| errs.or(r.string_or(key, default), default.into());
    let access = Access {
        rules,
        email_claim: claim("oidc_email_claim", "email"),
        groups_claim: claim("oidc_groups_claim", "groups"),
        user_id_claim: claim("user_id_claim", "email"),
    };
    errs.done(access)
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
