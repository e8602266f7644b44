//! `google`: OpenID Connect at `https://accounts.google.com`, as oauth2-proxy's (OIDC-based)
//! Google provider. Ours: `google_hosted_domains` — the ID token's (or a bearer token's) `hd`
//! claim, the account's Google Workspace domain, must be one of them (oauth2-proxy checks no
//! `hd`: its issue #2363), and the first is sent as the `hd` hint of the account chooser.

use super::provider::Provider;
use crate::config::error::ConfigError;
use crate::config::reader::Reader;
use crate::policy::ProviderRules;

pub(super) const KEYS: &[&str] = &["google_hosted_domains"];

#[derive(Debug, Clone, Default)]
pub struct Google {
    /// Lower-cased.
    pub hosted_domains: Vec<String>,
}

impl Google {
    pub(super) fn parse(r: &Reader) -> Result<Google, ConfigError> {
        let domains = r.string_list("google_hosted_domains")?.unwrap_or_default();
        Ok(Google {
            hosted_domains: domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        })
    }
}

impl Provider for Google {
    fn display_name(&self) -> &'static str {
        "Google"
    }

    fn rules(&self) -> ProviderRules {
        ProviderRules::Google {
            hosted_domains: self.hosted_domains.clone(),
        }
    }

    fn authorize_params(&self) -> Vec<(&'static str, String)> {
        // Google's account chooser offers only accounts of this Workspace domain.
        self.hosted_domains
            .first()
            .map(|hd| ("hd", hd.clone()))
            .into_iter()
            .collect()
    }
}
