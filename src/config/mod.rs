//! The filter's JSON configuration: oauth2-proxy option names, strict parsing, and
//! errors that name the key, so a typo fails the deployment instead of weakening it.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

pub use crate::oidc::ClientAuth;
use crate::routes::SkipRoute;

/// Every key the filter understands. Anything else is rejected: a misspelt security
/// option silently falling back to its default is worse than refusing to start.
const KNOWN_KEYS: &[&str] = &[
    "provider",
    "oidc_issuer_url",
    "idp_cluster",
    "idp_timeout",
    "client_id",
    "client_secret",
    "client_secret_env",
    "cookie_secret",
    "cookie_secret_env",
    "redirect_url",
    "proxy_prefix",
    "scope",
    "cookie_name",
    "cookie_secure",
    "cookie_samesite",
    "cookie_domains",
    "cookie_path",
    "cookie_expire",
    "cookie_csrf_expire",
    "email_domains",
    "whitelist_domains",
    "set_xauthrequest",
    "pass_access_token",
    "pass_authorization_header",
    "pass_user_headers",
    "skip_provider_button",
    "oidc_email_claim",
    "oidc_groups_claim",
    "insecure_oidc_allow_unverified_email",
    "token_endpoint_auth_method",
    "skip_auth_routes",
    "skip_auth_preflight",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.problem)
    }
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
    /// oauth2-proxy's `""`: the attribute is left out and the browser default applies.
    Unset,
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub samesite: SameSite,
    pub domains: Vec<String>,
    pub path: String,
    /// Session lifetime in seconds.
    pub expire: u64,
    /// Lifetime of the login-in-progress (CSRF) cookie in seconds.
    pub csrf_expire: u64,
}

impl CookieSettings {
    pub fn csrf_name(&self) -> String {
        format!("{}_csrf", self.name)
    }
}

#[derive(Clone)]
pub struct Config {
    pub issuer: String,
    pub idp_cluster: String,
    pub idp_timeout_ms: u64,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    /// AES-256-GCM key for the session cookie, derived from `cookie_secret`.
    pub session_key: [u8; 32],
    /// Separate key for the CSRF cookie, so one can never be replayed as the other.
    pub csrf_key: [u8; 32],
    pub redirect_url: Option<String>,
    pub proxy_prefix: String,
    pub scope: String,
    pub cookie: CookieSettings,
    pub email_domains: Vec<String>,
    pub whitelist_domains: Vec<String>,
    pub set_xauthrequest: bool,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub pass_user_headers: bool,
    pub skip_provider_button: bool,
    pub email_claim: String,
    pub groups_claim: String,
    pub allow_unverified_email: bool,
    pub skip_auth_routes: Vec<SkipRoute>,
    pub skip_auth_preflight: bool,
}

// Secrets stay out of Debug output so a stray `{:?}` can never log them.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("idp_cluster", &self.idp_cluster)
            .field("client_id", &self.client_id)
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn callback_path(&self) -> String {
        format!("{}/callback", self.proxy_prefix)
    }

    /// Parses the JSON configuration. `env` looks up environment variables of the Envoy
    /// process (for the `*_env` keys); it is a parameter so tests need no real environment.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| err("(document)", format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err("(document)", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(err(unknown, "unknown option"));
        }
        let r = Reader { map: &map };

        let provider = r.string("provider")?.unwrap_or_else(|| "oidc".to_string());
        if provider != "oidc" {
            return Err(err("provider", "only `oidc` is supported"));
        }
        let issuer = r.required_string("oidc_issuer_url")?;
        check_url("oidc_issuer_url", &issuer)?;
        let idp_cluster = r.required_string("idp_cluster")?;
        let client_id = r.required_string("client_id")?;
        let client_secret = r.secret("client_secret", env)?;
        let cookie_secret = r.secret("cookie_secret", env)?;
        let secret_bytes = decode_cookie_secret(&cookie_secret)?;

        let redirect_url = r.string("redirect_url")?;
        if let Some(url) = &redirect_url {
            check_url("redirect_url", url)?;
        }
        let proxy_prefix = r
            .string("proxy_prefix")?
            .unwrap_or_else(|| "/oauth2".into());
        if !proxy_prefix.starts_with('/') || proxy_prefix.ends_with('/') || proxy_prefix.len() < 2 {
            return Err(err(
                "proxy_prefix",
                "must start with `/` and not end with `/`",
            ));
        }

        let cookie_name = r
            .string("cookie_name")?
            .unwrap_or_else(|| "_oauth2_proxy".into());
        if cookie_name.is_empty() || !cookie_name.bytes().all(is_cookie_name_byte) {
            return Err(err("cookie_name", "must be a non-empty cookie token"));
        }
        let samesite = match r.string("cookie_samesite")?.as_deref() {
            None | Some("lax") => SameSite::Lax,
            Some("strict") => SameSite::Strict,
            Some("none") => SameSite::None,
            Some("") => SameSite::Unset,
            Some(other) => {
                return Err(err(
                    "cookie_samesite",
                    format!("`{other}` is not one of `lax`, `strict`, `none`, `\"\"`"),
                ))
            }
        };
        let secure = r.bool("cookie_secure")?.unwrap_or(true);
        if samesite == SameSite::None && !secure {
            return Err(err(
                "cookie_samesite",
                "`none` requires `cookie_secure: true`",
            ));
        }
        let cookie = CookieSettings {
            name: cookie_name,
            secure,
            samesite,
            domains: r.string_list("cookie_domains")?.unwrap_or_default(),
            path: r.string("cookie_path")?.unwrap_or_else(|| "/".into()),
            expire: r.duration("cookie_expire")?.unwrap_or(168 * 3600),
            csrf_expire: r.duration("cookie_csrf_expire")?.unwrap_or(15 * 60),
        };
        if cookie.expire == 0 {
            return Err(err("cookie_expire", "must be greater than zero"));
        }
        if cookie.csrf_expire == 0 {
            return Err(err("cookie_csrf_expire", "must be greater than zero"));
        }
        if cookie
            .domains
            .iter()
            .any(|d| d.is_empty() || d.contains(';'))
        {
            return Err(err(
                "cookie_domains",
                "entries must be non-empty domain names",
            ));
        }
        if !cookie.path.starts_with('/') || cookie.path.contains(';') {
            return Err(err("cookie_path", "must be a path starting with `/`"));
        }

        let email_domains = r.string_list("email_domains")?.ok_or_else(|| {
            err(
                "email_domains",
                "required (use [\"*\"] to allow every email domain)",
            )
        })?;
        if email_domains.is_empty() || email_domains.iter().any(|d| d.is_empty()) {
            return Err(err(
                "email_domains",
                "must list at least one non-empty domain or \"*\"",
            ));
        }

        let client_auth = match r.string("token_endpoint_auth_method")?.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::Basic,
            Some("client_secret_post") => ClientAuth::Post,
            Some(other) => {
                return Err(err(
                    "token_endpoint_auth_method",
                    format!("`{other}` is not `client_secret_basic` or `client_secret_post`"),
                ))
            }
        };
        // A list only: regexes may hold commas, so the comma-separated form does not apply.
        let skip_auth_routes = match map.get("skip_auth_routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let entry = v.as_str().ok_or_else(|| {
                        err("skip_auth_routes", format!("entry {i} must be a string"))
                    })?;
                    SkipRoute::parse(entry)
                        .map_err(|e| err("skip_auth_routes", format!("entry {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(err("skip_auth_routes", "must be a list of strings")),
        };
        let idp_timeout_ms = r.duration_ms("idp_timeout")?.unwrap_or(5000);
        if idp_timeout_ms == 0 {
            return Err(err("idp_timeout", "must be greater than zero"));
        }

        Ok(Config {
            issuer,
            idp_cluster,
            idp_timeout_ms,
            client_id,
            client_secret,
            client_auth,
            session_key: derive_key(&secret_bytes, b"wasm-oauth2-proxy session v1"),
            csrf_key: derive_key(&secret_bytes, b"wasm-oauth2-proxy csrf v1"),
            redirect_url,
            proxy_prefix,
            scope: r
                .string("scope")?
                .unwrap_or_else(|| "openid email profile".into()),
            cookie,
            email_domains,
            whitelist_domains: r.string_list("whitelist_domains")?.unwrap_or_default(),
            set_xauthrequest: r.bool("set_xauthrequest")?.unwrap_or(false),
            pass_access_token: r.bool("pass_access_token")?.unwrap_or(false),
            pass_authorization_header: r.bool("pass_authorization_header")?.unwrap_or(false),
            pass_user_headers: r.bool("pass_user_headers")?.unwrap_or(true),
            skip_provider_button: r.bool("skip_provider_button")?.unwrap_or(false),
            email_claim: r
                .string("oidc_email_claim")?
                .unwrap_or_else(|| "email".into()),
            groups_claim: r
                .string("oidc_groups_claim")?
                .unwrap_or_else(|| "groups".into()),
            allow_unverified_email: r
                .bool("insecure_oidc_allow_unverified_email")?
                .unwrap_or(false),
            skip_auth_routes,
            skip_auth_preflight: r.bool("skip_auth_preflight")?.unwrap_or(false),
        })
    }
}

struct Reader<'a> {
    map: &'a Map<String, Value>,
}

impl Reader<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(key, "must be a string")),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(err(key, "required")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(err(key, "must be true or false")),
        }
    }

    fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(err(key, "must be a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            // oauth2-proxy's flags also take a comma-separated string.
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            Some(_) => Err(err(key, "must be a list of strings")),
        }
    }

    fn duration_ms(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => parse_duration_ms(&s).map(Some).ok_or_else(|| {
                err(
                    key,
                    format!("`{s}` is not a duration like `168h`, `15m` or `30s`"),
                )
            }),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        Ok(self.duration_ms(key)?.map(|ms| ms / 1000))
    }

    /// A secret given inline as `key` or by environment variable name as `key_env`, never both.
    fn secret(
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
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => {
            Ok(())
        }
        _ => Err(err(key, "must be an absolute http(s) URL")),
    }
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// oauth2-proxy accepts a cookie secret of 16, 24 or 32 bytes, either as the raw string or
/// base64 (standard or URL alphabet, padded or not) of that many bytes.
fn decode_cookie_secret(secret: &str) -> Result<Vec<u8>, ConfigError> {
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

fn derive_key(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    use super::tests_support::base;

    fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes(), &no_env)
    }

    #[test]
    fn defaults_follow_oauth2_proxy() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.cookie.name, "_oauth2_proxy");
        assert_eq!(c.cookie.expire, 168 * 3600);
        assert_eq!(c.scope, "openid email profile");
        assert!(c.cookie.secure);
        assert!(c.pass_user_headers);
        assert!(!c.set_xauthrequest);
        assert_eq!(c.client_auth, ClientAuth::Basic);
        assert_eq!(c.callback_path(), "/oauth2/callback");
        assert_ne!(c.session_key, c.csrf_key);
    }

    #[test]
    fn unknown_key_is_named() {
        let mut v = base();
        v["cookie_secrte"] = "x".into();
        assert_eq!(parse(&v).unwrap_err().key, "cookie_secrte");
    }

    #[test]
    fn wrong_types_are_named() {
        for (key, value) in [
            ("cookie_secure", serde_json::json!("yes")),
            ("email_domains", serde_json::json!(3)),
            ("cookie_expire", serde_json::json!("a week")),
            ("cookie_samesite", serde_json::json!("sometimes")),
            (
                "token_endpoint_auth_method",
                serde_json::json!("private_key_jwt"),
            ),
            ("provider", serde_json::json!("github")),
            ("oidc_issuer_url", serde_json::json!("idp.example.com")),
            ("skip_auth_routes", serde_json::json!("^/public")),
            ("skip_auth_routes", serde_json::json!(["^/(unclosed"])),
            ("skip_auth_routes", serde_json::json!([7])),
            ("skip_auth_preflight", serde_json::json!("yes")),
        ] {
            let mut v = base();
            v[key] = value;
            assert_eq!(parse(&v).unwrap_err().key, key, "{key}");
        }
    }

    #[test]
    fn cookie_secret_lengths() {
        for ok in [
            "0123456789abcdef",
            "0123456789abcdef01234567",
            "0123456789abcdef0123456789abcdef",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        ] {
            let mut v = base();
            v["cookie_secret"] = ok.into();
            assert!(parse(&v).is_ok(), "{ok}");
        }
        for bad in ["short", "0123456789abcdef0", "AAECAwQFBgcICQ="] {
            let mut v = base();
            v["cookie_secret"] = bad.into();
            let e = parse(&v).unwrap_err();
            assert_eq!(e.key, "cookie_secret", "{bad}");
            assert!(!e.to_string().contains(bad), "secret leaked into error");
        }
    }

    #[test]
    fn secrets_from_environment() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("client_secret");
        v["client_secret_env"] = "CS".into();
        let env = |k: &str| (k == "CS").then(|| "from-env".to_string());
        let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
        assert_eq!(c.client_secret, "from-env");
        assert_eq!(parse(&v).unwrap_err().key, "client_secret_env");
        v["client_secret"] = "both".into();
        assert_eq!(parse(&v).unwrap_err().key, "client_secret");
    }

    #[test]
    fn email_domains_required() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("email_domains");
        assert_eq!(parse(&v).unwrap_err().key, "email_domains");
    }

    #[test]
    fn samesite_none_needs_secure() {
        let mut v = base();
        v["cookie_samesite"] = "none".into();
        v["cookie_secure"] = false.into();
        assert_eq!(parse(&v).unwrap_err().key, "cookie_samesite");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("168h"), Some(168 * 3_600_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("15"), None);
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(parse_duration_ms(""), None);
        assert_eq!(parse_duration_ms("99999999999999999999h"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = parse(&base()).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret"));
        assert!(!s.contains("0123456789abcdef"));
    }
}

/// A valid configuration for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Config;

    /// The smallest valid configuration, as JSON.
    pub(crate) fn base() -> serde_json::Value {
        serde_json::json!({
            "oidc_issuer_url": "https://idp.example.com",
            "idp_cluster": "idp",
            "client_id": "app",
            "client_secret": "s3cret",
            "cookie_secret": "0123456789abcdef0123456789abcdef",
            "email_domains": ["*"]
        })
    }

    pub(crate) fn config() -> Config {
        match Config::parse(base().to_string().as_bytes(), &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }
}
