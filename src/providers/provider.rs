//! The one trait every provider implements: what oauth2-proxy's `providers/<name>.go` each
//! hold. A provider says how a login against it is configured (its options, default scope,
//! endpoints and the hosts it calls), how its tokens' claims are read, which access rules
//! are its own, and which calls it makes after the token endpoint answered. The gate never
//! names a provider; it asks this trait.

use super::profile::{Cx, Next, Profile};
use crate::oidc::{self, ClientAuth, Discovery, Identity, Verified};
use crate::policy::ProviderRules;
use std::fmt::Debug;

pub trait Provider: Debug {
    /// The name on the sign-in button.
    fn display_name(&self) -> &'static str;

    /// Whether logins end with an ID token (OpenID Connect) to verify.
    fn has_id_token(&self) -> bool {
        true
    }

    /// oauth2-proxy's default `scope`; `groups_wanted`: `allowed_groups` is set.
    fn default_scope(&self, _groups_wanted: bool) -> &'static str {
        "openid email profile"
    }

    /// How the client authenticates at the token endpoint unless configured.
    fn default_client_auth(&self) -> ClientAuth {
        ClientAuth::Basic
    }

    /// Endpoints the provider fixes instead of discovering them (GitHub's), or that
    /// `skip_oidc_discovery` configured.
    fn endpoints(&self) -> Option<&Discovery> {
        None
    }

    /// URLs this provider calls besides the discovered endpoints, with the option that makes
    /// it call each: each needs an Envoy cluster, checked at load.
    fn calls(&self, _groups_wanted: bool) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The provider's own access rules, for `crate::policy::admit`.
    fn rules(&self) -> ProviderRules {
        ProviderRules::None
    }

    /// Extra parameters of the authorization request.
    fn authorize_params(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The issuer an ID token must name, given the discovered one.
    fn expected_issuer(&self, discovered: &str, _id_token: &str) -> String {
        discovered.to_string()
    }

    /// Whether a bearer token naming `iss` belongs to the login issuer `login` although the
    /// two differ (Entra's multi-tenant issuer template).
    fn issues_as(&self, _login: &str, _iss: &str) -> bool {
        false
    }

    /// What a verified token says of its user, as this provider reads it. `access`: the
    /// access token's claims when it is a JWT the issuer signed for this client.
    fn read_claims(&self, cx: &Cx, v: &Verified, _access: Option<&Verified>) -> Identity {
        oidc::identity(v, &cx.claims)
    }

    /// Whether the profile needs the userinfo endpoint (OIDC Core 5.3) for what the ID token
    /// did not say.
    fn wants_userinfo(&self, cx: &Cx, id: &Identity) -> bool {
        id.email.is_none() || (cx.groups_wanted && id.groups.is_empty())
    }

    /// Groups the provider derives from what it read (Keycloak's `role:` groups).
    fn derived_groups(&self, _id: &Identity) -> Vec<String> {
        Vec::new()
    }

    /// Of a session's groups, those only the provider's API gave (GitLab's `project:`): a
    /// refreshed token does not say them, so they are kept.
    fn kept_groups(&self, _old: &[String]) -> Vec<String> {
        Vec::new()
    }

    /// Whether an email the new token does not carry must not be kept from the login either
    /// (Entra across tenants, where it is kept out on purpose).
    fn refuses_old_email(&self) -> bool {
        false
    }

    /// The calls after the token endpoint (and userinfo) that the login still needs.
    fn advance(&self, _cx: &Cx, p: Profile) -> Next {
        super::profile::done(p)
    }

    /// The answer to one of this provider's calls, `stage` being what it asked.
    fn on_answer(&self, _cx: &Cx, _p: Profile, _stage: u32, _answer: Option<(u16, &[u8])>) -> Next {
        Next::Failed("unexpected_answer".into())
    }

    /// Whether a refresh reads the identity from the new tokens (OIDC) or keeps the login's
    /// (GitHub: no ID token).
    fn refresh_reads_claims(&self) -> bool {
        self.has_id_token()
    }
}
