//! The providers, one file each behind one trait ([`Provider`]), as oauth2-proxy has them
//! (`providers/<name>.go`): `oidc`, `keycloak-oidc`, `google`, `gitlab`, `ms-entra-id` and
//! `github`. Each file holds its options, default scope, endpoints, how its tokens' claims
//! are read and the calls a login makes after the token endpoint ([`profile`]). "Provider"
//! means only this: an issuer's metadata is `crate::issuer`'s.

pub mod entra;
pub mod github;
pub mod gitlab;
pub mod google;
pub mod keycloak;
pub mod kind;
pub mod machine;
pub mod oidc;
pub mod profile;
pub mod provider;
pub mod settings;

pub use kind::Kind;
pub use machine::{bearer_identity, refreshed, resume, start};
pub use profile::{Cx, Next, Profile, MAX_PAGES};
pub use provider::Provider;
pub use settings::Settings;

#[cfg(test)]
mod tests;
