//! An HTTP request to an identity provider, as the core asks the adapter to make it. Its own
//! module so the providers and the metadata loader can build callouts without depending on
//! the gate that drives them.

use crate::oidc;

/// An HTTP request to an identity provider, sent to the cluster `Config::cluster_for` its
/// authority names.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Callout {
    /// A form POST (token, refresh, exchange, revocation) to `to`.
    pub fn post(to: oidc::Target, request: oidc::TokenRequest) -> Callout {
        Callout {
            method: "POST",
            authority: to.authority,
            path: to.path,
            headers: request.headers,
            body: request.body,
        }
    }
}

// The body can carry the authorization code and the client secret.
impl std::fmt::Debug for Callout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Callout({} {}{})",
            self.method, self.authority, self.path
        )
    }
}
