//! What the filter's own pages show: oauth2-proxy's `skip_provider_button`.

use super::error::{ConfigError, Errors};
use super::reader::Reader;

pub(super) const KEYS: &[&str] = &["skip_provider_button"];

#[derive(Debug, Clone, Default)]
pub struct Pages {
    /// `/oauth2/sign_in` goes straight to the IdP instead of showing its page.
    pub skip_provider_button: bool,
}

/// The pages group's validator.
pub(super) fn parse(r: &Reader) -> Result<Pages, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let pages = Pages {
        skip_provider_button: errs.or(r.bool("skip_provider_button", false), false),
    };
    errs.done(pages)
}
