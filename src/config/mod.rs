//! The filter's JSON configuration: oauth2-proxy option names, strict parsing, and
//! errors that name the key, so a typo fails the deployment instead of weakening it.

mod reader;

pub use reader::parse_duration_ms;
use reader::{check_url, decode_cookie_secret, derive_key, is_cookie_name_byte, Reader};
use serde_json::Value;
use std::fmt;

pub use crate::oidc::ClientAuth;
use crate::policy::Rules;
use crate::routes::{ApiRoute, SkipRoute};

/// Every key the filter understands. Anything else is rejected: a misspelt security
/// option silently falling back to its default is worse than refusing to start.
const KNOWN_KEYS: &[&str] = &[
    "provider",
    "oidc_issuer_url",
    "idp_cluster",
    "idp_clusters",
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
    "authenticated_emails",
    "allowed_groups",
    "allowed_roles",
    "whitelist_domains",
    "set_xauthrequest",
    "set_authorization_header",
    "pass_access_token",
    "pass_authorization_header",
    "pass_user_headers",
    "skip_provider_button",
    "oidc_email_claim",
    "oidc_groups_claim",
    "oidc_extra_audiences",
    "user_id_claim",
    "insecure_oidc_allow_unverified_email",
    "token_endpoint_auth_method",
    "skip_auth_routes",
    "skip_auth_regex",
    "skip_auth_preflight",
    "skip_auth_strip_headers",
    "api_routes",
    "reverse_proxy",
    "ping_path",
    "ready_path",
    "ping_user_agent",
    "skip_jwt_bearer_tokens",
    "extra_jwt_issuers",
    "bearer_token_login_fallback",
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

/// An issuer whose tokens the filter verifies: the login issuer first, then each of
/// `extra_jwt_issuers` (bearer tokens only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// As configured; discovery is read from `<url>/.well-known/openid-configuration`.
    pub url: String,
    /// A token must name one of these in `aud`.
    pub audiences: Vec<String>,
}

#[derive(Clone)]
pub struct Config {
    /// The login issuer first, then the extra JWT issuers; index = issuer id.
    pub issuers: Vec<Issuer>,
    pub idp_cluster: String,
    /// Host (`host` or `host:port`) -> Envoy cluster, for IdP hosts `idp_cluster` does not serve.
    pub idp_clusters: Vec<(String, String)>,
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
    pub rules: Rules,
    pub whitelist_domains: Vec<String>,
    pub set_xauthrequest: bool,
    pub set_authorization_header: bool,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub pass_user_headers: bool,
    pub skip_provider_button: bool,
    pub email_claim: String,
    pub groups_claim: String,
    pub user_id_claim: String,
    pub skip_auth_routes: Vec<SkipRoute>,
    pub skip_auth_preflight: bool,
    pub api_routes: Vec<ApiRoute>,
    pub reverse_proxy: bool,
    pub ping_path: String,
    pub ready_path: String,
    pub ping_user_agent: Option<String>,
    pub skip_jwt_bearer_tokens: bool,
    pub bearer_token_login_fallback: bool,
}

// Secrets stay out of Debug output so a stray `{:?}` can never log them.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("issuers", &self.issuers)
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

    /// The login issuer's URL.
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", |i| i.url.as_str())
    }

    /// The Envoy cluster that reaches `authority` (`host` or `host:port`).
    pub fn cluster_for(&self, authority: &str) -> &str {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        self.idp_clusters
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(authority) || h.eq_ignore_ascii_case(host))
            .map_or(self.idp_cluster.as_str(), |(_, c)| c.as_str())
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

        let provider = r.string_or("provider", "oidc")?;
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
        let proxy_prefix = r.string_or("proxy_prefix", "/oauth2")?;
        if !proxy_prefix.starts_with('/') || proxy_prefix.ends_with('/') || proxy_prefix.len() < 2 {
            return Err(err(
                "proxy_prefix",
                "must start with `/` and not end with `/`",
            ));
        }

        let cookie = cookie_settings(&r)?;
        let rules = rules(&r)?;

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
        // Skipped routes always lose client-sent identity headers; there is no way to
        // turn that off (it would let any client forge an identity on those routes).
        if !r.bool("skip_auth_strip_headers", true)? {
            return Err(err(
                "skip_auth_strip_headers",
                "only `true` is supported: identity headers are always stripped",
            ));
        }

        let mut audiences = vec![client_id.clone()];
        audiences.extend(r.string_list("oidc_extra_audiences")?.unwrap_or_default());
        let mut issuers = vec![Issuer {
            url: issuer,
            audiences,
        }];
        issuers.extend(r.parsed_list("extra_jwt_issuers", parse_extra_issuer)?);
        let idp_clusters = r.string_map("idp_clusters")?;
        check_issuer_clusters(&issuers, &idp_clusters)?;

        Ok(Config {
            issuers,
            idp_cluster,
            idp_clusters,
            idp_timeout_ms: r.duration_ms("idp_timeout", 5000)?,
            client_id,
            client_secret,
            client_auth,
            session_key: derive_key(&secret_bytes, b"wasm-oauth2-proxy session v1"),
            csrf_key: derive_key(&secret_bytes, b"wasm-oauth2-proxy csrf v1"),
            redirect_url,
            proxy_prefix,
            scope: r.string_or("scope", "openid email profile")?,
            cookie,
            rules,
            whitelist_domains: r.string_list("whitelist_domains")?.unwrap_or_default(),
            set_xauthrequest: r.bool("set_xauthrequest", false)?,
            set_authorization_header: r.bool("set_authorization_header", false)?,
            pass_access_token: r.bool("pass_access_token", false)?,
            pass_authorization_header: r.bool("pass_authorization_header", false)?,
            pass_user_headers: r.bool("pass_user_headers", true)?,
            skip_provider_button: r.bool("skip_provider_button", false)?,
            email_claim: r.string_or("oidc_email_claim", "email")?,
            groups_claim: r.string_or("oidc_groups_claim", "groups")?,
            user_id_claim: r.string_or("user_id_claim", "email")?,
            // JSON lists only: regexes may hold commas. oauth2-proxy's older
            // `skip_auth_regex` (paths, any method) adds to them.
            skip_auth_routes: [
                r.parsed_list("skip_auth_routes", SkipRoute::parse)?,
                r.parsed_list("skip_auth_regex", SkipRoute::any_method)?,
            ]
            .concat(),
            skip_auth_preflight: r.bool("skip_auth_preflight", false)?,
            api_routes: r.parsed_list("api_routes", ApiRoute::parse)?,
            reverse_proxy: r.bool("reverse_proxy", false)?,
            ping_path: r.local_path("ping_path", "/ping")?,
            ready_path: r.local_path("ready_path", "/ready")?,
            ping_user_agent: r.string("ping_user_agent")?.filter(|s| !s.is_empty()),
            skip_jwt_bearer_tokens: r.bool("skip_jwt_bearer_tokens", false)?,
            bearer_token_login_fallback: r.bool("bearer_token_login_fallback", true)?,
        })
    }
}

fn cookie_settings(r: &Reader) -> Result<CookieSettings, ConfigError> {
    let name = r.string_or("cookie_name", "_oauth2_proxy")?;
    if name.is_empty() || !name.bytes().all(is_cookie_name_byte) {
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
    let secure = r.bool("cookie_secure", true)?;
    if samesite == SameSite::None && !secure {
        return Err(err(
            "cookie_samesite",
            "`none` requires `cookie_secure: true`",
        ));
    }
    let cookie = CookieSettings {
        name,
        secure,
        samesite,
        domains: r.string_list("cookie_domains")?.unwrap_or_default(),
        path: r.string_or("cookie_path", "/")?,
        expire: r.duration("cookie_expire", 168 * 3600)?,
        csrf_expire: r.duration("cookie_csrf_expire", 15 * 60)?,
    };
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
    Ok(cookie)
}

fn rules(r: &Reader) -> Result<Rules, ConfigError> {
    let lower = |l: Option<Vec<String>>| -> Vec<String> {
        l.unwrap_or_default()
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect()
    };
    let email_domains = lower(r.string_list("email_domains")?);
    let authenticated_emails = lower(r.string_list("authenticated_emails")?);
    if email_domains.is_empty() && authenticated_emails.is_empty() {
        return Err(err(
            "email_domains",
            "required unless `authenticated_emails` is set (use [\"*\"] to allow every email domain)",
        ));
    }
    if let Some(bad) = authenticated_emails
        .iter()
        .find(|e| !crate::policy::valid_email(e))
    {
        return Err(err(
            "authenticated_emails",
            format!("`{bad}` is not an email address"),
        ));
    }
    if email_domains
        .iter()
        .any(|d| d.contains('@') || d.chars().any(char::is_whitespace))
    {
        return Err(err(
            "email_domains",
            "entries are domains (`example.com`, `.example.com`, `*.example.com`) or `*`",
        ));
    }
    Ok(Rules {
        email_domains,
        authenticated_emails,
        allowed_groups: r.string_list("allowed_groups")?.unwrap_or_default(),
        allowed_roles: r.string_list("allowed_roles")?.unwrap_or_default(),
        allow_unverified_email: r.bool("insecure_oidc_allow_unverified_email", false)?,
    })
}

/// oauth2-proxy's `extra_jwt_issuers` entry: `issuer=audience`.
fn parse_extra_issuer(entry: &str) -> Result<Issuer, String> {
    let (url, audience) = entry
        .rsplit_once('=')
        .filter(|(u, a)| !u.is_empty() && !a.is_empty())
        .ok_or_else(|| format!("`{entry}` is not `issuer=audience`"))?;
    check_url("extra_jwt_issuers", url).map_err(|e| e.problem)?;
    Ok(Issuer {
        url: url.to_string(),
        audiences: vec![audience.to_string()],
    })
}

/// Each extra issuer must be reachable through a cluster the configuration names for its
/// host: sending its discovery to the login IdP's cluster would ask the wrong server.
fn check_issuer_clusters(
    issuers: &[Issuer],
    clusters: &[(String, String)],
) -> Result<(), ConfigError> {
    let authority = |u: &str| {
        url::Url::parse(u).ok().map(|u| {
            let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
            (host.clone(), u.port().map(|p| format!("{host}:{p}")))
        })
    };
    let main = issuers.first().and_then(|i| authority(&i.url));
    for extra in issuers.iter().skip(1) {
        let Some((host, with_port)) = authority(&extra.url) else {
            continue;
        };
        let same_as_main = main
            .as_ref()
            .is_some_and(|(h, p)| *h == host && *p == with_port);
        let named = clusters.iter().any(|(h, _)| {
            h.eq_ignore_ascii_case(&host) || with_port.as_deref().is_some_and(|p| h == p)
        });
        if !same_as_main && !named {
            return Err(err(
                "extra_jwt_issuers",
                format!("no Envoy cluster for `{host}`: add it to `idp_clusters`"),
            ));
        }
    }
    Ok(())
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
            ("skip_auth_routes", serde_json::json!(["GET!="])),
            ("skip_auth_regex", serde_json::json!(["("])),
            ("api_routes", serde_json::json!(["("])),
            ("api_routes", serde_json::json!("^/api/")),
            ("skip_auth_strip_headers", serde_json::json!(false)),
            ("authenticated_emails", serde_json::json!(["not-an-email"])),
            ("authenticated_emails", serde_json::json!(["a@b@c.d"])),
            ("email_domains", serde_json::json!(["user@example.com"])),
            ("allowed_groups", serde_json::json!({"a": 1})),
            ("allowed_roles", serde_json::json!(5)),
            ("user_id_claim", serde_json::json!(["sub"])),
            ("oidc_extra_audiences", serde_json::json!(true)),
            ("reverse_proxy", serde_json::json!("true")),
            ("ping_path", serde_json::json!("ping")),
            ("ping_path", serde_json::json!("/a/../ping")),
            ("ready_path", serde_json::json!("/ready?x")),
            ("ping_user_agent", serde_json::json!(1)),
            ("skip_jwt_bearer_tokens", serde_json::json!(1)),
            ("bearer_token_login_fallback", serde_json::json!("no")),
            (
                "extra_jwt_issuers",
                serde_json::json!(["https://other.example"]),
            ),
            ("extra_jwt_issuers", serde_json::json!(["not a url=aud"])),
            (
                "extra_jwt_issuers",
                serde_json::json!(["https://other.example=aud"]),
            ),
            ("idp_clusters", serde_json::json!(["x"])),
            ("idp_clusters", serde_json::json!({"host": ""})),
            ("set_authorization_header", serde_json::json!("yes")),
            ("idp_timeout", serde_json::json!("0s")),
            ("cookie_expire", serde_json::json!("500ms")),
        ] {
            let mut v = base();
            v[key] = value;
            assert_eq!(parse(&v).unwrap_err().key, key, "{key}");
        }
    }

    /// Every option of the access, route and bearer groups at once, as an oauth2-proxy
    /// user would write them (lists also as comma-separated strings).
    #[test]
    fn a_full_oauth2_proxy_style_config_is_accepted() {
        let mut v = base();
        for (k, val) in [
            (
                "email_domains",
                serde_json::json!("example.com, .corp.net,*.sub.org"),
            ),
            (
                "authenticated_emails",
                serde_json::json!(["Jane@Other.org"]),
            ),
            ("allowed_groups", serde_json::json!("developers,ops")),
            ("allowed_roles", serde_json::json!(["admin", "app:viewer"])),
            ("oidc_email_claim", serde_json::json!("mail")),
            ("oidc_groups_claim", serde_json::json!("realm_access.roles")),
            ("user_id_claim", serde_json::json!("sub")),
            ("oidc_extra_audiences", serde_json::json!(["aud2"])),
            (
                "skip_auth_routes",
                serde_json::json!(["GET=^/public/", "POST!=^/hook$", "^/a,b$"]),
            ),
            ("skip_auth_regex", serde_json::json!(["^/legacy/"])),
            ("skip_auth_preflight", serde_json::json!(true)),
            ("skip_auth_strip_headers", serde_json::json!(true)),
            ("api_routes", serde_json::json!(["^/api/"])),
            ("reverse_proxy", serde_json::json!(true)),
            ("ping_path", serde_json::json!("/healthz")),
            ("ready_path", serde_json::json!("/readyz")),
            ("ping_user_agent", serde_json::json!("kube-probe/1.30")),
            ("skip_jwt_bearer_tokens", serde_json::json!(true)),
            (
                "extra_jwt_issuers",
                serde_json::json!([
                    "https://machines.example/realms/x=api",
                    "https://idp.example.com=other"
                ]),
            ),
            (
                "idp_clusters",
                serde_json::json!({"machines.example": "outbound|443||machines.example"}),
            ),
            ("bearer_token_login_fallback", serde_json::json!(false)),
            ("set_authorization_header", serde_json::json!(true)),
        ] {
            v[k] = val;
        }
        let c = parse(&v).unwrap();
        assert_eq!(
            c.rules.email_domains,
            ["example.com", ".corp.net", "*.sub.org"]
        );
        assert_eq!(c.rules.authenticated_emails, ["jane@other.org"]);
        assert_eq!(c.rules.allowed_groups, ["developers", "ops"]);
        assert_eq!(c.skip_auth_routes.len(), 4);
        assert_eq!(c.issuers.len(), 3);
        assert_eq!(c.issuers[0].audiences, ["app", "aud2"]);
        assert_eq!(c.issuers[1].url, "https://machines.example/realms/x");
        assert_eq!(c.issuers[1].audiences, ["api"]);
        assert_eq!(
            c.cluster_for("machines.example"),
            "outbound|443||machines.example"
        );
        assert_eq!(
            c.cluster_for("machines.example:443"),
            "outbound|443||machines.example"
        );
        assert_eq!(c.cluster_for("idp.example.com"), "idp");
        assert_eq!(
            (c.user_id_claim.as_str(), c.email_claim.as_str()),
            ("sub", "mail")
        );
        assert!(c.reverse_proxy && c.skip_jwt_bearer_tokens && !c.bearer_token_login_fallback);
        assert_eq!(c.ping_user_agent.as_deref(), Some("kube-probe/1.30"));
    }

    #[test]
    fn defaults_of_the_new_options() {
        let c = parse(&base()).unwrap();
        assert_eq!(
            c.user_id_claim, "email",
            "oauth2-proxy's user_id_claim default"
        );
        assert_eq!(
            (c.ping_path.as_str(), c.ready_path.as_str()),
            ("/ping", "/ready")
        );
        assert!(!c.reverse_proxy && !c.skip_jwt_bearer_tokens && c.bearer_token_login_fallback);
        assert!(c.api_routes.is_empty() && c.rules.allowed_groups.is_empty());
        assert_eq!(c.issuers.len(), 1);
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
        // oauth2-proxy: authenticated emails alone are enough.
        v["authenticated_emails"] = serde_json::json!(["a@b.c"]);
        assert!(parse(&v).unwrap().rules.email_domains.is_empty());
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
