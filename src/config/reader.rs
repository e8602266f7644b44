//! Typed reads of the JSON configuration, each failing with an error that names its key,
//! and the small value parsers (durations, URLs, the cookie secret) they rely on.

use super::error::{err, ConfigError};
use crate::oidc;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

pub struct Reader<'a> {
    pub map: &'a Map<String, Value>,
}

impl Reader<'_> {
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(key, "must be a string")),
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(err(key, "required")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(err(key, "must be true or false")),
        }
    }

    /// A list of strings; oauth2-proxy's flags also take one comma-separated string.
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            Some(_) => self.json_list(key).map(Some),
        }
    }

    /// A JSON list of strings only, for entries that may hold commas (regexes).
    pub fn json_list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(err(key, format!("entry {i} must be a non-empty string"))),
                })
                .collect(),
            Some(_) => Err(err(key, "must be a list of strings")),
        }
    }

    /// Each entry of a JSON list parsed by `parse`, errors naming the entry.
    pub fn parsed_list<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        self.json_list(key)?
            .iter()
            .enumerate()
            .map(|(i, entry)| parse(entry).map_err(|e| err(key, format!("entry {i}: {e}"))))
            .collect()
    }

    /// A JSON object of strings, in the order written.
    pub fn string_map(&self, key: &str) -> Result<Vec<(String, String)>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) if !s.is_empty() && !k.is_empty() => {
                        Ok((k.clone(), s.clone()))
                    }
                    _ => Err(err(key, format!("`{k}` must map to a non-empty string"))),
                })
                .collect(),
            Some(_) => Err(err(key, "must be an object of strings")),
        }
    }

    pub fn duration_ms(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        let ms = match self.string(key)? {
            None => default,
            Some(s) => parse_duration_ms(&s).ok_or_else(|| {
                err(
                    key,
                    format!("`{s}` is not a duration like `168h`, `15m` or `30s`"),
                )
            })?,
        };
        if ms == 0 {
            return Err(err(key, "must be greater than zero"));
        }
        Ok(ms)
    }

    /// A duration where `0` (or absent) means "off".
    pub fn duration_or_zero(&self, key: &str) -> Result<u64, ConfigError> {
        match self.string(key)? {
            None => Ok(0),
            Some(s) => parse_duration_ms(&s).map(|ms| ms / 1000).ok_or_else(|| {
                err(
                    key,
                    format!("`{s}` is not a duration like `1h`, `5m` or `0s`"),
                )
            }),
        }
    }

    pub fn duration(&self, key: &str, default_secs: u64) -> Result<u64, ConfigError> {
        let secs = self.duration_ms(key, default_secs.saturating_mul(1000))? / 1000;
        if secs == 0 {
            return Err(err(key, "must be at least one second"));
        }
        Ok(secs)
    }

    /// A secret given inline as `key` or by environment variable name as `key_env`, never both.
    pub fn secret(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let env_key = format!("{key}_env");
        match (self.string(key)?, self.string(&env_key)?) {
            (Some(_), Some(_)) => Err(err(
                key,
                format!("set either `{key}` or `{env_key}`, not both"),
            )),
            (Some(v), None) if !v.is_empty() => Ok(v),
            (Some(_), None) => Err(err(key, "must not be empty")),
            (None, Some(var)) => match env(&var) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(err(
                    &env_key,
                    format!("environment variable `{var}` is not set or empty"),
                )),
            },
            (None, None) => Err(err(key, format!("required (or `{env_key}`)"))),
        }
    }

    /// A path the filter answers itself: absolute, no query, no dot segments.
    pub fn local_path(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        let p = self.string_or(key, default)?;
        if crate::routing::path::normalize(&p).as_deref() != Some(p.as_str()) || p.contains('?') {
            return Err(err(key, "must be a plain absolute path like `/ping`"));
        }
        Ok(p)
    }
}

/// A configured URL: [`oidc::http_url`]. Credentials in it are refused at load: no URL the
/// filter calls or redirects to has a use for them, and they would end up in logs.
pub fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match oidc::http_url(url, oidc::Credentials::Refused) {
        Some(_) => Ok(()),
        None => Err(err(
            key,
            "must be an absolute http(s) URL without credentials",
        )),
    }
}

pub(super) fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// oauth2-proxy accepts a cookie secret of 16, 24 or 32 bytes, either as the raw string or
/// base64 (standard or URL alphabet, padded or not) of that many bytes.
pub(super) fn decode_cookie_secret(secret: &str) -> Result<Vec<u8>, ConfigError> {
    let valid = |n: usize| n == 16 || n == 24 || n == 32;
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    for engine in engines {
        if let Ok(bytes) = engine.decode(secret) {
            if valid(bytes.len()) {
                return Ok(bytes);
            }
        }
    }
    if valid(secret.len()) {
        return Ok(secret.as_bytes().to_vec());
    }
    Err(err(
        "cookie_secret",
        format!(
            "must be 16, 24 or 32 bytes, raw or base64-encoded (got {} characters)",
            secret.len()
        ),
    ))
}

pub(super) fn derive_key(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    // HMAC-SHA256 as a PRF keyed by the secret: independent 256-bit keys per purpose,
    // whatever the secret's length.
    let mut key = [0u8; 32];
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) {
        mac.update(purpose);
        key.copy_from_slice(&mac.finalize().into_bytes());
    }
    key
}

/// Go-style durations as oauth2-proxy writes them: `168h`, `1h30m`, `15m`, `30s`, `500ms`.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (num, tail) = rest.split_at_checked(digits)?;
        let n: u64 = num.parse().ok()?;
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at_checked(unit_len)?;
        let ms = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
        rest = tail;
    }
    Some(total)
}
