//! `keycloak-oidc`, as oauth2-proxy's `providers/keycloak_oidc.go`: realm roles
//! (`realm_access.roles`) and client roles (`resource_access.<client>.roles`, as
//! `client:role`) admit through `allowed_roles`, and are passed in the groups header as
//! `role:<role>` and `role:<client>:<role>`. Keycloak puts the roles in the access token by
//! default, where oauth2-proxy reads them: when it is a JWT the issuer signed for this client,
//! its roles count beside the ID token's.

use super::profile::{merge, Cx};
use super::provider::Provider;
use crate::oidc::{self, Identity, Verified};

#[derive(Debug, Clone, Default)]
pub struct Keycloak;

impl Provider for Keycloak {
    fn display_name(&self) -> &'static str {
        "Keycloak"
    }

    fn read_claims(&self, cx: &Cx, v: &Verified, access: Option<&Verified>) -> Identity {
        let mut id = oidc::identity(v, &cx.claims);
        if let Some(a) = access {
            merge(&mut id.roles, oidc::identity(a, &cx.claims).roles);
        }
        id
    }

    fn derived_groups(&self, id: &Identity) -> Vec<String> {
        id.roles.iter().map(|r| format!("role:{r}")).collect()
    }
}
