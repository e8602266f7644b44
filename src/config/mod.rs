//! The filter's JSON configuration: oauth2-proxy option names, strict parsing, and errors
//! that name the key, so a typo fails the deployment instead of weakening it. Each option
//! group has its validator (oauth2-proxy's `pkg/validation` style); `parse` runs them all.

mod access;
mod bearer;
pub mod cookie;
pub mod error;
mod headers;
mod idp;
pub mod keys;
pub mod lifecycle;
pub mod model;
pub mod pages;
mod parse;
pub mod reader;
mod routes;

pub use cookie::{CookieSettings, SameSite};
pub use error::{err, ConfigError};
pub use keys::{KeySet, Keys};
pub use lifecycle::{Lifecycle, TokenExchange, MAX_CSRF_COOKIES};
pub use model::{Config, Issuer};
pub use pages::{Logo, Pages, Text};
pub use parse::known_keys;
pub use reader::{check_url, parse_duration_ms, Reader};

#[cfg(test)]
mod tables;
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
