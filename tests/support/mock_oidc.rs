//! What the OpenID Provider mocks (`mock_google`, `mock_gitlab`, `mock_entra`) have in
//! common beyond `mock_common`: the discovery document's shared part, JWKS, the token
//! endpoint's redemption of a code (client authentication, the code, `redirect_uri`, PKCE),
//! ID tokens carrying the authorization request's `nonce`, and revocation.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::jwt::{self, Key};
use super::mock_common::{check_grant, client_credentials, take_code, CodeIssuer, Grant};
use super::upstream::{ServerRequest, ServerResponse};

/// `doc` (the provider's endpoints and what it supports) with what every mock OP has in
/// common: its `issuer`, RS256 ID tokens, and the query, fragment and form_post modes.
pub fn discovery(issuer: &str, doc: Value) -> Value {
    merged(
        json!({
            "issuer": issuer,
            "response_modes_supported": ["query", "fragment", "form_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
        doc,
    )
}

/// A JWKS answer publishing `keys`.
pub fn jwks(keys: Vec<Value>) -> ServerResponse {
    ServerResponse::json(200, &json!({ "keys": keys }))
}

/// `base` with every member of the object `more` set in it.
pub fn merged(mut base: Value, more: Value) -> Value {
    if let (Some(b), Value::Object(m)) = (base.as_object_mut(), more) {
        b.extend(m);
    }
    base
}

/// Notes as a violation an authorization request to an OpenID Provider without `openid`.
pub fn want_openid(st: &mut impl CodeIssuer, g: &Grant) {
    if !g.scope.split(' ').any(|s| s == "openid") {
        st.violation(format!("authorize: scope without openid: {:?}", g.scope));
    }
}

/// Why a token request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Missing or wrong client credentials (noted as a violation).
    Client,
    /// The code is unknown or was already redeemed.
    Code,
    /// The code was issued for another `redirect_uri` or PKCE verifier (noted as a
    /// violation), or the grant type is not `authorization_code`: the OAuth error code.
    Grant(&'static str),
}

impl Refused {
    pub fn status(self) -> u16 {
        match self {
            Refused::Client => 401,
            _ => 400,
        }
    }
    /// The OAuth error code (RFC 6749 5.2).
    pub fn error(self) -> &'static str {
        match self {
            Refused::Client => "invalid_client",
            Refused::Code => "invalid_grant",
            Refused::Grant(e) => e,
        }
    }
}

/// The grant of a token request's code, once the client's credentials (Basic or form) and
/// the code's `redirect_uri` and PKCE verifier check out.
pub fn redeem(st: &mut impl CodeIssuer, req: &ServerRequest) -> Result<Grant, Refused> {
    match client_credentials(req) {
        Some((id, secret, _)) if st.client() == (id.as_str(), secret.as_str()) => {}
        other => {
            st.violation(format!("token: bad client authentication {other:?}"));
            return Err(Refused::Client);
        }
    }
    let grant = take_code(st, req).ok_or(Refused::Code)?;
    check_grant(st, req, &grant).map_err(Refused::Grant)?;
    Ok(grant)
}

/// An RS256 ID token of `claims` with the authorization request's `nonce`, signed by `key`.
pub fn id_token(key: &Key, grant: &Grant, mut claims: Value) -> String {
    if let Some(n) = &grant.nonce {
        claims["nonce"] = json!(n);
    }
    jwt::sign_rs256(key, &key.kid, &claims)
}

/// Forgets the token a revocation request names; whether it was known.
pub fn revoke<V>(req: &ServerRequest, tokens: &mut HashMap<String, V>) -> bool {
    let t = req.form().get("token").cloned().unwrap_or_default();
    tokens.remove(&t).is_some()
}
