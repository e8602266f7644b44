//! The filter as the IdP's client: the signed assertion it authenticates with
//! (`private_key_jwt`), and the access tokens the token endpoint sends it, read when they
//! are JWTs the issuer signed (Keycloak's roles are there).

use super::request::Env;
use super::vocab::Context;
use crate::oidc::{self, IdTokenRules, Verified};
use crate::providers::Kind;

/// The signed client assertion for a call to the IdP with `private_key_jwt` (RFC 7523): made
/// out to the issuer (the audience the RFC 7523 revision recommends, which no other endpoint
/// of the IdP can be tricked into accepting), fresh `jti`, one minute of validity. `None` with
/// any other client authentication, or when no randomness could be had.
pub(super) fn assertion(cx: &Context, env: &mut Env) -> Option<String> {
    let key = cx.config.client_key.as_ref()?;
    let issuer = cx.login_issuer()?.discovery.issuer.clone();
    let jti = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        env.bytes::<16>()?,
    );
    key.assertion(&cx.config.client_id, &issuer, env.now, &jti)
}

/// The access token's claims, for `keycloak-oidc` only (oauth2-proxy reads Keycloak's roles
/// from the access token): when it is a JWT the login issuer signed for this client, checked
/// like a bearer token. `None` for any other provider, an opaque token or one that does not
/// verify (its roles then simply do not count).
pub(super) fn verified_access_token(cx: &Context, token: &str, now: u64) -> Option<Verified> {
    if cx.config.provider.kind != Kind::KeycloakOidc {
        return None;
    }
    let issuer = cx.login_issuer()?;
    let audiences = cx.config.issuers.first().map(|i| &i.audiences[..])?;
    let rules = IdTokenRules {
        kind: oidc::Kind::Bearer,
        ..IdTokenRules::new(&issuer.discovery.issuer, audiences, now)
    };
    oidc::validate_id_token(token, &issuer.jwks, &rules).ok()
}
