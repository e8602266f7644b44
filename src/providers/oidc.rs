//! `oidc`: any OpenID Connect provider, read as oauth2-proxy's generic OIDC provider reads
//! it (`oidc_email_claim`, `oidc_groups_claim`, `user_id_claim`, userinfo for what the ID
//! token lacks). Keycloak-shaped role claims count for `allowed_roles` (ours).

use super::provider::Provider;

#[derive(Debug, Clone, Default)]
pub struct Oidc;

impl Provider for Oidc {
    fn display_name(&self) -> &'static str {
        "OpenID Connect"
    }
}
