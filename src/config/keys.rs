//! The cookie secrets, as one key set: `cookie_secret` (with `cookie_secret_env`) seals and
//! opens, and `cookie_secret_previous` (with `cookie_secret_previous_env`, ours) only opens,
//! so a secret can be rotated without signing anyone out. Each secret yields a session key
//! and a separate login-attempt (CSRF) key, so one cookie can never be replayed as the other.

use super::error::{err, ConfigError, Errors};
use super::reader::{decode_cookie_secret, derive_key, Reader};

pub(super) const KEYS: &[&str] = &[
    "cookie_secret",
    "cookie_secret_env",
    "cookie_secret_previous",
    "cookie_secret_previous_env",
];

/// One secret's keys.
#[derive(Clone, Copy)]
pub struct Keys {
    /// AES-256-GCM key for the session cookie.
    pub session: [u8; 32],
    /// AES-256-GCM key for the login-attempt (CSRF) cookie.
    pub csrf: [u8; 32],
}

#[derive(Clone)]
pub struct KeySet {
    pub current: Keys,
    /// Earlier secrets' keys: they open cookies, never seal one.
    pub previous: Vec<Keys>,
}

impl KeySet {
    /// Every session key, the current one first.
    pub fn sessions(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.current.session).chain(self.previous.iter().map(|k| &k.session))
    }

    /// Every login-attempt key, the current one first.
    pub fn csrfs(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.current.csrf).chain(self.previous.iter().map(|k| &k.csrf))
    }
}

/// The session and CSRF keys a cookie secret yields.
pub(super) fn keys_of(secret: &[u8]) -> Keys {
    Keys {
        session: derive_key(secret, b"wasm-oauth2-proxy session v1"),
        csrf: derive_key(secret, b"wasm-oauth2-proxy csrf v1"),
    }
}

/// The key-set group's validator.
pub(super) fn parse(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeySet, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let current = errs
        .ok(r
            .secret("cookie_secret", env)
            .and_then(|s| decode_cookie_secret(&s)))
        .map(|b| keys_of(&b));
    let previous = errs.or(previous_secrets(r, env), Vec::new());
    let set = KeySet {
        current: current.unwrap_or(Keys {
            session: [0; 32],
            csrf: [0; 32],
        }),
        previous: previous.iter().map(|s| keys_of(s)).collect(),
    };
    errs.done(set)
}

/// `cookie_secret_previous` (secrets) and `cookie_secret_previous_env` (names of
/// environment variables holding them), each a list or one comma-separated string.
fn previous_secrets(
    r: &Reader,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    let key = "cookie_secret_previous";
    let env_key = "cookie_secret_previous_env";
    let mut secrets = Vec::new();
    for s in r.string_list(key)?.unwrap_or_default() {
        secrets.push(decode_cookie_secret(&s).map_err(|e| err(key, e.problem))?);
    }
    for var in r.string_list(env_key)?.unwrap_or_default() {
        let Some(value) = env(&var).filter(|v| !v.is_empty()) else {
            return Err(err(
                env_key,
                format!("environment variable `{var}` is not set or empty"),
            ));
        };
        for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            secrets.push(decode_cookie_secret(s).map_err(|e| err(env_key, e.problem))?);
        }
    }
    Ok(secrets)
}
