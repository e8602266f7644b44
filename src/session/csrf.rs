//! The login in progress: `state`, `nonce` and the PKCE verifier, sealed into a short-lived
//! CSRF cookie so the callback can prove it is finishing a login this browser started.

use crate::session::seal::{self, constant_time_eq};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub code_verifier: String,
    /// Where to send the browser after login; already checked by `redirect`.
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "x")]
    pub expires_at: u64,
}

/// Opaque random token for `state` and `nonce`.
pub fn token(random: [u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

fn aad(cookie_name: &str) -> Vec<u8> {
    format!("csrf:{cookie_name}").into_bytes()
}

pub fn seal(
    key: &[u8; 32],
    cookie_name: &str,
    login: &LoginState,
    nonce: [u8; 12],
) -> Option<String> {
    let json = serde_json::to_vec(login).ok()?;
    seal::seal(key, &aad(cookie_name), nonce, &json)
}

/// What a login-attempt cookie holds, if authentic (expired or not).
pub fn open(key: &[u8; 32], cookie_name: &str, cookie: &str) -> Option<LoginState> {
    let json = seal::open(key, &aad(cookie_name), cookie)?;
    serde_json::from_slice(&json).ok()
}

/// The login this browser started, if the cookie is authentic, unexpired and was issued
/// for exactly this `state`.
pub fn verify(
    key: &[u8; 32],
    cookie_name: &str,
    cookie: &str,
    state: &str,
    now: u64,
) -> Option<LoginState> {
    let login = open(key, cookie_name, cookie)?;
    (login.expires_at > now && constant_time_eq(login.state.as_bytes(), state.as_bytes()))
        .then_some(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> LoginState {
        LoginState {
            state: token([1; 32]),
            nonce: token([2; 32]),
            code_verifier: "v".into(),
            return_to: "/x".into(),
            expires_at: 100,
        }
    }

    #[test]
    fn binds_state_and_expiry() {
        let c = seal(&[9; 32], "_oauth2_proxy_csrf", &login(), [0; 12]).unwrap();
        assert_eq!(
            verify(&[9; 32], "_oauth2_proxy_csrf", &c, &login().state, 50),
            Some(login())
        );
        assert!(verify(&[9; 32], "_oauth2_proxy_csrf", &c, &token([3; 32]), 50).is_none());
        assert!(verify(&[9; 32], "_oauth2_proxy_csrf", &c, "", 50).is_none());
        assert!(verify(&[9; 32], "_oauth2_proxy_csrf", &c, &login().state, 100).is_none());
        assert!(verify(&[8; 32], "_oauth2_proxy_csrf", &c, &login().state, 50).is_none());
    }

    #[test]
    fn session_cookie_cannot_pose_as_csrf_cookie() {
        let c = seal(&[9; 32], "_oauth2_proxy_csrf", &login(), [0; 12]).unwrap();
        assert!(verify(&[9; 32], "_oauth2_proxy", &c, &login().state, 50).is_none());
    }
}
