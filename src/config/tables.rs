//! Each option group's validator on its own, as tables (oauth2-proxy's `pkg/validation`
//! style): options in, and either what the group made of them or the key an error names and
//! what it says. A group sees only its own options here; the checks across groups are
//! `parse.rs`'s, tested in `tests.rs`.

use super::error::ConfigError;
use super::reader::Reader;
use super::{access, bearer, cookie, headers, keys, lifecycle, pages, routes};
use serde_json::{json, Map, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A row: the group's options, and `Ok(())` or the key an error names and words of it.
type Row<'a> = (Value, Result<(), (&'a str, &'a str)>);

/// Runs `check` on each row: `Ok(())` rows must parse and pass `check`; `Err((key, words))`
/// rows must fail with an error naming `key` whose problem contains `words`.
fn table<T>(
    group: &str,
    rows: &[Row],
    parse: impl Fn(&Reader) -> Result<T, Vec<ConfigError>>,
    check: impl Fn(&T, &Value),
) {
    for (options, want) in rows {
        let m = map(options.clone());
        let got = parse(&Reader { map: &m });
        match (want, got) {
            (Ok(()), Ok(parsed)) => check(&parsed, options),
            (Ok(()), Err(e)) => panic!("{group}: {options} must parse, got {e:?}"),
            (Err((key, words)), Ok(_)) => {
                panic!("{group}: {options} must fail on `{key}` ({words})")
            }
            (Err((key, words)), Err(errs)) => assert!(
                errs.iter()
                    .any(|e| e.key == *key && e.problem.contains(words)),
                "{group}: {options}: want `{key}`: …{words}…, got {errs:?}"
            ),
        }
    }
}

fn one<T>(r: Result<T, ConfigError>) -> Result<T, Vec<ConfigError>> {
    r.map_err(|e| vec![e])
}

#[test]
fn access_group() {
    table(
        "access",
        &[
            (json!({"email_domains": ["*"]}), Ok(())),
            (
                json!({"email_domains": ["example.com", "*.corp.example"]}),
                Ok(()),
            ),
            (
                json!({"email_domains": ["*"], "allowed_groups": "a,b"}),
                Ok(()),
            ),
            (json!({"authenticated_emails": ["a@example.com"]}), Ok(())),
            // oauth2-proxy refuses to start without a rule on emails.
            (json!({}), Err(("email_domains", "required"))),
            (json!({"email_domains": 3}), Err(("email_domains", ""))),
            (
                json!({"email_domains": ["*"], "allowed_roles": [1]}),
                Err(("allowed_roles", "")),
            ),
            (
                json!({"email_domains": ["*"], "oidc_email_claim": 7}),
                Err(("oidc_email_claim", "string")),
            ),
            (
                json!({"email_domains": ["*"], "insecure_oidc_allow_unverified_email": "no"}),
                Err(("insecure_oidc_allow_unverified_email", "")),
            ),
        ],
        access::parse,
        |_, _| {},
    );
}

#[test]
fn bearer_group() {
    table(
        "bearer",
        &[
            (json!({}), Ok(())),
            (json!({"skip_jwt_bearer_tokens": true}), Ok(())),
            (
                json!({"skip_jwt_bearer_tokens": "yes"}),
                Err(("skip_jwt_bearer_tokens", "")),
            ),
            (
                json!({"extra_jwt_issuers": ["no-equals-sign"]}),
                Err(("extra_jwt_issuers", "")),
            ),
            (
                json!({"oidc_extra_audiences": 5}),
                Err(("oidc_extra_audiences", "")),
            ),
        ],
        bearer::parse,
        |b, o| {
            let want = o.get("skip_jwt_bearer_tokens") == Some(&json!(true));
            assert_eq!(b.skip_jwt_bearer_tokens, want, "{o}");
        },
    );
}

#[test]
fn cookie_group() {
    table(
        "cookie",
        &[
            (json!({}), Ok(())),
            (
                json!({"cookie_expire": "12h", "cookie_samesite": "strict"}),
                Ok(()),
            ),
            (
                json!({"cookie_samesite": "sometimes"}),
                Err(("cookie_samesite", "")),
            ),
            (
                json!({"cookie_expire": "a week"}),
                Err(("cookie_expire", "")),
            ),
            (
                json!({"cookie_samesite": "none", "cookie_secure": false}),
                Err(("cookie_samesite", "")),
            ),
            (
                json!({"cookie_name": "bad name;"}),
                Err(("cookie_name", "")),
            ),
        ],
        |r| one(cookie::parse(r)),
        |c, o| {
            if o.get("cookie_expire").is_some() {
                assert_eq!(c.expire, 12 * 3600);
            }
        },
    );
}

#[test]
fn headers_group() {
    table(
        "headers",
        &[
            (json!({}), Ok(())),
            (
                json!({"set_xauthrequest": true, "pass_access_token": true}),
                Ok(()),
            ),
            (
                json!({"pass_user_headers": "true"}),
                Err(("pass_user_headers", "")),
            ),
            (
                json!({"set_authorization_header": 1}),
                Err(("set_authorization_header", "")),
            ),
        ],
        headers::parse,
        |_, _| {},
    );
}

#[test]
fn keys_group_one_key_set_for_current_and_previous_secrets() {
    let env = |k: &str| (k == "COOKIE_SECRET").then(|| SECRET.to_string());
    table(
        "keys",
        &[
            (json!({"cookie_secret": SECRET}), Ok(())),
            (json!({"cookie_secret_env": "COOKIE_SECRET"}), Ok(())),
            (
                json!({"cookie_secret": SECRET, "cookie_secret_previous": "fedcba9876543210fedcba9876543210"}),
                Ok(()),
            ),
            (json!({}), Err(("cookie_secret", ""))),
            (
                json!({"cookie_secret": "short"}),
                Err(("cookie_secret", "16, 24 or 32")),
            ),
            (
                json!({"cookie_secret_env": "UNSET"}),
                Err(("cookie_secret_env", "")),
            ),
            (
                json!({"cookie_secret": SECRET, "cookie_secret_previous": "short"}),
                Err(("cookie_secret_previous", "")),
            ),
        ],
        |r| keys::parse(r, &env),
        |k, o| {
            let previous = usize::from(o.get("cookie_secret_previous").is_some());
            assert_eq!(k.previous.len(), previous, "{o}");
            assert_ne!(
                k.current.session, k.current.csrf,
                "session and CSRF keys differ"
            );
        },
    );
}

#[test]
fn lifecycle_group() {
    table(
        "lifecycle",
        &[
            (json!({}), Ok(())),
            (
                json!({"cookie_refresh": "1h", "session_max_lifetime": "24h"}),
                Ok(()),
            ),
            (
                json!({"cookie_refresh": "forever"}),
                Err(("cookie_refresh", "")),
            ),
            // oauth2-proxy: `cookie_refresh` must be less than `cookie_expire` (a week here).
            (
                json!({"cookie_refresh": "168h"}),
                Err(("cookie_refresh", "")),
            ),
            (
                json!({"backend_logout_url": "ftp://x"}),
                Err(("backend_logout_url", "")),
            ),
            (
                json!({"upstream_token_exchange": {"audience": 3}}),
                Err(("upstream_token_exchange", "")),
            ),
        ],
        |r| one(lifecycle::parse(r, 7 * 24 * 3600)),
        |l, o| {
            if o.get("session_max_lifetime").is_some() {
                assert_eq!(l.session_max_lifetime, 24 * 3600);
            }
        },
    );
}

#[test]
fn routes_group() {
    table(
        "routes",
        &[
            (json!({}), Ok(())),
            (
                json!({"skip_auth_routes": ["GET=^/public/"], "api_routes": ["^/api/"]}),
                Ok(()),
            ),
            (
                json!({"skip_auth_routes": "^/public"}),
                Err(("skip_auth_routes", "")),
            ),
            (
                json!({"skip_auth_routes": ["^/(unclosed"]}),
                Err(("skip_auth_routes", "")),
            ),
            (json!({"proxy_prefix": "oauth2"}), Err(("proxy_prefix", ""))),
            (
                json!({"whitelist_domains": [5]}),
                Err(("whitelist_domains", "")),
            ),
        ],
        routes::parse,
        |_, _| {},
    );
}

/// oauth2-proxy's page options (`pkg/apis/options`: `custom_sign_in_logo`, `banner`,
/// `footer`, `provider_display_name`; `-` turns the default off). A logo is an `https://`
/// URL or a data URL here: a file cannot be read inside Envoy.
#[test]
fn pages_group() {
    let png = "data:image/png;base64,iVBORw0KGgo=";
    let big = format!(
        "data:image/png;base64,{}",
        "A".repeat(pages::MAX_LOGO_BYTES / 3 * 4 + 8)
    );
    table(
        "pages",
        &[
            (json!({}), Ok(())),
            (
                json!({"custom_sign_in_logo": "https://cdn.example.com/logo.svg", "banner": "Staff only", "footer": "-"}),
                Ok(()),
            ),
            (
                json!({"custom_sign_in_logo": png, "provider_display_name": "ACME SSO"}),
                Ok(()),
            ),
            (json!({"custom_sign_in_logo": "-", "banner": "-"}), Ok(())),
            (
                json!({"custom_sign_in_logo": "/etc/logo.png"}),
                Err(("custom_sign_in_logo", "data URL")),
            ),
            (
                json!({"custom_sign_in_logo": "http://cdn.example.com/l.png"}),
                Err(("custom_sign_in_logo", "https://")),
            ),
            (
                json!({"custom_sign_in_logo": "https://u:p@cdn.example.com/l.png"}),
                Err(("custom_sign_in_logo", "https://")),
            ),
            (
                json!({"custom_sign_in_logo": "data:image/bmp;base64,AAAA"}),
                Err(("custom_sign_in_logo", "not supported")),
            ),
            (
                json!({"custom_sign_in_logo": "data:image/png;base64,***"}),
                Err(("custom_sign_in_logo", "base64")),
            ),
            (
                json!({"custom_sign_in_logo": "data:text/html;base64,AAAA"}),
                Err(("custom_sign_in_logo", "https://")),
            ),
            (
                json!({"custom_sign_in_logo": big}),
                Err(("custom_sign_in_logo", "at most")),
            ),
            (
                json!({"banner": "a".repeat(pages::MAX_TEXT + 1)}),
                Err(("banner", "at most")),
            ),
            (json!({"footer": "two\nlines"}), Err(("footer", "one line"))),
            (
                json!({"provider_display_name": "x".repeat(pages::MAX_NAME + 1)}),
                Err(("provider_display_name", "at most")),
            ),
        ],
        pages::parse,
        |p, o| {
            assert_eq!(
                p.logo.is_some(),
                o.get("custom_sign_in_logo").is_some_and(|l| l != "-"),
                "{o}"
            );
            if o.get("footer") == Some(&json!("-")) {
                assert_eq!(p.footer, pages::Text::Off);
            }
            if let Some(pages::Logo::Url { origin, .. }) = &p.logo {
                assert_eq!(origin, "https://cdn.example.com");
            }
        },
    );
}
