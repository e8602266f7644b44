//! oauth2-proxy's `skip_jwt_bearer_tokens`: a machine client's `Authorization: Bearer <jwt>`
//! signed by the login issuer or one of `extra_jwt_issuers` stands in for a session, after
//! the same checks as an ID token (signature with the issuer's keys, `iss`, `aud`, expiry)
//! and the same access rules. A verified token is cached by its exact value until it
//! expires, so a repeated token never pays for the signature again.

use super::sessions;
use super::vocab::{Admitted, Context};
use crate::issuer::MAIN;
use crate::oidc::{self, IdTokenRules, JwtError, Kind};
use crate::session::Session;
use std::rc::Rc;

pub(super) enum Outcome {
    Admitted(Rc<Admitted>),
    /// The token names this issuer, whose metadata is not loaded yet.
    NeedIssuer(usize),
    /// Signed with a key this issuer's JWKS does not have (yet).
    NeedKeys(usize),
    Invalid(JwtError),
}

pub(super) fn verify(cx: &mut Context, token: &str, now: u64, keys_refreshed: bool) -> Outcome {
    if let Some(hit) = cx.bearers.get(token, now) {
        return Outcome::Admitted(hit);
    }
    let config = cx.config;
    let issuer = match oidc::unverified_issuer(token) {
        Ok(iss) => iss,
        Err(e) => return Outcome::Invalid(e),
    };
    let id = config
        .issuers
        .iter()
        .position(|i| oidc::issuer_matches(&issuer, &i.url))
        .or_else(|| {
            let login = config.issuer();
            config
                .provider
                .get()
                .issues_as(login, &issuer)
                .then_some(MAIN)
        });
    let Some(id) = id else {
        return Outcome::Invalid(JwtError::BadIssuer);
    };
    let (Some(provider), Some(configured)) = (cx.issuers.get(id), config.issuers.get(id)) else {
        return Outcome::NeedIssuer(id);
    };
    // The login issuer's tokens are read as its ID tokens are (Entra's tenant template).
    let expected = if id == MAIN {
        config
            .provider
            .get()
            .expected_issuer(&provider.discovery.issuer, token)
    } else {
        provider.discovery.issuer.clone()
    };
    let rules = IdTokenRules {
        kind: Kind::Bearer,
        ..IdTokenRules::new(&expected, &configured.audiences, now)
    };
    let verified = match oidc::validate_id_token(token, &provider.jwks, &rules) {
        Ok(v) => v,
        Err(JwtError::UnknownKid) if !keys_refreshed => return Outcome::NeedKeys(id),
        Err(e) => return Outcome::Invalid(e),
    };
    let session = Session {
        // As oauth2-proxy: the token itself is what the app receives as either token.
        access_token: token.to_string(),
        id_token: token.to_string(),
        access_expires_at: verified.exp,
        id_expires_at: verified.exp,
        ..sessions::from_token(config, &verified, now, verified.exp)
    };
    let admitted = Rc::new(Admitted::new(config, session));
    if verified.exp > now {
        cx.bearers.insert(token, Rc::clone(&admitted));
    }
    Outcome::Admitted(admitted)
}
