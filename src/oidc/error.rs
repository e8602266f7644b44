//! What can go wrong with an IdP's documents and tokens. Error types deliberately carry no
//! token or response-body contents so they are safe to log.

use std::fmt;

/// Upper bound for discovery / JWKS / token-endpoint bodies; real ones are a few KiB, so
/// anything bigger is a misbehaving or hostile upstream and not worth parsing.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Failures handling provider documents (discovery, JWKS, token endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// Body is not the JSON shape we expect, or is too large.
    Malformed,
    /// A required field is absent or has the wrong type.
    MissingField(&'static str),
    /// Discovery `issuer` differs from the configured issuer.
    BadIssuer,
    /// A URL is unparsable, not http(s), has no host, or carries credentials.
    BadUrl(&'static str),
    /// JWKS had no key we can verify with.
    NoUsableKeys,
    /// Token endpoint refused the request. `error` is the OAuth error code when the
    /// provider sent one; it is sanitised to the RFC 6749 character set.
    TokenEndpoint { status: u16, error: Option<String> },
    /// Token response `token_type` is not `Bearer`.
    BadTokenType,
}

impl fmt::Display for OidcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OidcError::Malformed => f.write_str("malformed document"),
            OidcError::MissingField(name) => write!(f, "missing or invalid field `{name}`"),
            OidcError::BadIssuer => f.write_str("issuer mismatch"),
            OidcError::BadUrl(which) => write!(f, "invalid URL for `{which}`"),
            OidcError::NoUsableKeys => f.write_str("JWKS contains no usable signing key"),
            OidcError::TokenEndpoint { status, error } => match error {
                Some(code) => write!(f, "token endpoint error {status}: {code}"),
                None => write!(f, "token endpoint error {status}"),
            },
            OidcError::BadTokenType => f.write_str("token_type is not Bearer"),
        }
    }
}

impl std::error::Error for OidcError {}

/// Failures verifying a JWS or validating ID-token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Token exceeds [`super::jwt::MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three segments, or header/payload is not a JSON object.
    Malformed,
    /// A segment is not strict unpadded base64url.
    BadEncoding,
    /// `alg` is not on the allow-list, or does not fit the selected key.
    AlgNotAllowed,
    /// Header carries `crit`; we implement no extensions so must refuse (RFC 7515 4.1.11).
    CritHeader,
    /// Header `kid` names no key in the JWKS. Callers may refetch the JWKS (rate-limited).
    UnknownKid,
    /// No `kid` and no key compatible with `alg`.
    NoMatchingKey,
    BadSignature,
    MissingClaim(&'static str),
    /// Claim present but of the wrong type or shape.
    InvalidClaim(&'static str),
    BadIssuer,
    BadAudience,
    /// `azp` missing with multiple audiences, or not our client id.
    BadAzp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// `nonce` missing or different from the one bound to the login attempt.
    BadNonce,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::TooLarge => f.write_str("token too large"),
            JwtError::Malformed => f.write_str("malformed token"),
            JwtError::BadEncoding => f.write_str("invalid base64url in token"),
            JwtError::AlgNotAllowed => f.write_str("algorithm not allowed"),
            JwtError::CritHeader => f.write_str("unsupported critical header"),
            JwtError::UnknownKid => f.write_str("unknown key id"),
            JwtError::NoMatchingKey => f.write_str("no key matches the token algorithm"),
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::MissingClaim(name) => write!(f, "missing claim `{name}`"),
            JwtError::InvalidClaim(name) => write!(f, "invalid claim `{name}`"),
            JwtError::BadIssuer => f.write_str("issuer mismatch"),
            JwtError::BadAudience => f.write_str("audience mismatch"),
            JwtError::BadAzp => f.write_str("authorized party mismatch"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not yet valid"),
            JwtError::IssuedInFuture => f.write_str("token issued in the future"),
            JwtError::BadNonce => f.write_str("nonce mismatch"),
        }
    }
}

impl std::error::Error for JwtError {}
