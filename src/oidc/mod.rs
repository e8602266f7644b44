//! OpenID Connect: discovery, JWKS, token responses and JWT / ID-token verification.
//!
//! Everything here is sans-IO: callers fetch documents over HTTP and hand the bytes in.
//! Error types deliberately carry no token or response-body contents so they are safe to log.

pub mod assertion;
pub mod claims;
pub mod discovery;
pub mod error;
pub mod id_token;
pub mod jwks;
pub mod jwt;
pub mod token;

#[cfg(test)]
pub(crate) mod testkeys;

pub use assertion::ClientKey;
pub use claims::{identity, ClaimNames, Identity};
pub use discovery::{
    discovery_url, http_url, issuer_matches, target, well_known_path, Credentials, Discovery,
    Target,
};
pub use error::{JwtError, OidcError, MAX_DOCUMENT_BYTES};
pub use id_token::{validate_id_token, IdTokenRules, Kind, Verified};
pub use jwks::{Alg, Jwks};
pub use jwt::{unverified_exp, unverified_issuer, verify};
pub use token::{
    code_exchange, parse_grant_response, parse_token_response, refresh_grant, revocation,
    token_exchange, Client, ClientAuth, TokenRequest, TokenResponse,
};

#[cfg(test)]
mod tests {
    use super::error::{JwtError, OidcError};

    #[test]
    fn display_never_echoes_details() {
        let e = OidcError::TokenEndpoint {
            status: 400,
            error: Some("invalid_grant".into()),
        };
        assert_eq!(e.to_string(), "token endpoint error 400: invalid_grant");
        assert_eq!(JwtError::UnknownKid.to_string(), "unknown key id");
    }
}
