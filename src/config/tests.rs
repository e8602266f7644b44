//! Option parsing: defaults, every key's errors, and a whole oauth2-proxy-style config.

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
    let machines = Some("outbound|443||machines.example");
    assert_eq!(c.cluster_for(1, "machines.example"), machines);
    assert_eq!(c.cluster_for(1, "machines.example:443"), machines);
    assert_eq!(c.cluster_for(0, "idp.example.com"), Some("idp"));
    assert_eq!(
        c.cluster_for(2, "idp.example.com"),
        Some("idp"),
        "the login issuer's host"
    );
    assert_eq!(
        c.cluster_for(0, "keys.example.net"),
        Some("idp"),
        "login IdP: any host"
    );
    assert_eq!(
        c.cluster_for(1, "keys.example.net"),
        None,
        "not the login IdP's cluster"
    );
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

#[test]
fn session_lifecycle_options() {
    let c = parse(&base()).unwrap();
    let l = &c.lifecycle;
    assert_eq!(l.cookie_refresh, 0);
    assert!(!l.session_cookie_minimal && !l.csrf_per_request && l.rp_initiated_logout);
    assert_eq!(l.csrf_per_request_limit, MAX_CSRF_COOKIES);
    assert!(l.previous_keys.is_empty() && l.token_exchange.is_none());

    let mut v = base();
    v["cookie_refresh"] = "5m".into();
    v["cookie_csrf_per_request"] = true.into();
    v["cookie_csrf_per_request_limit"] = 3.into();
    v["backend_logout_url"] = "https://idp.example.com/logout?id_token_hint={id_token}".into();
    v["oidc_rp_initiated_logout"] = false.into();
    v["cookie_secret_previous"] = serde_json::json!(["fedcba9876543210fedcba9876543210"]);
    v["cookie_secret_previous_env"] = "OLD1".into();
    v["upstream_token_exchange"] = serde_json::json!({"audience": "api", "scope": "read"});
    let env = |k: &str| (k == "OLD1").then(|| "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb".to_string());
    let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
    let l = &c.lifecycle;
    assert_eq!(l.cookie_refresh, 300);
    assert!(l.csrf_per_request && !l.rp_initiated_logout);
    assert_eq!(l.csrf_per_request_limit, 3);
    assert_eq!(l.previous_keys.len(), 3);
    assert!(l.previous_keys.iter().all(|(s, _)| *s != c.session_key));
    assert_eq!(
        l.token_exchange,
        Some(TokenExchange {
            audience: "api".into(),
            scope: Some("read".into()),
            resource: None
        })
    );
    assert_eq!(
        c.cookie.csrf_name_for("abcdefghijklmnopqrstuvwxyz"),
        "_oauth2_proxy_csrf_abcdefghijklmnop"
    );
    // A client's `state` is attacker input: nothing but base64url reaches a cookie name.
    assert_eq!(
        c.cookie.csrf_name_for("a;b\r\nc=d e"),
        "_oauth2_proxy_csrf_abcde"
    );
}

#[test]
fn session_lifecycle_errors_name_their_key() {
    for (key, value) in [
        ("cookie_refresh", serde_json::json!("soon")),
        ("cookie_refresh", serde_json::json!("168h")),
        ("cookie_csrf_per_request_limit", serde_json::json!("3")),
        ("cookie_csrf_per_request_limit", serde_json::json!(-1)),
        ("backend_logout_url", serde_json::json!("not a url")),
        (
            "backend_logout_url",
            serde_json::json!("https://other.example/logout"),
        ),
        ("cookie_secret_previous", serde_json::json!(["short"])),
        ("cookie_secret_previous_env", serde_json::json!("UNSET")),
        ("upstream_token_exchange", serde_json::json!("api")),
        ("upstream_token_exchange", serde_json::json!({"scope": "x"})),
        (
            "upstream_token_exchange",
            serde_json::json!({"audience": "a", "aud": "b"}),
        ),
        (
            "upstream_token_exchange",
            serde_json::json!({"audience": "a", "resource": "x"}),
        ),
    ] {
        let mut v = base();
        v[key] = value.clone();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.key, key, "{key}={value}: {e}");
    }
}

#[test]
fn a_minimal_cookie_refuses_options_that_need_tokens() {
    for key in [
        "pass_access_token",
        "pass_authorization_header",
        "set_authorization_header",
    ] {
        let mut v = base();
        v["session_cookie_minimal"] = true.into();
        v[key] = true.into();
        assert_eq!(parse(&v).unwrap_err().key, key);
    }
    let mut v = base();
    v["session_cookie_minimal"] = true.into();
    v["cookie_refresh"] = "1m".into();
    assert_eq!(parse(&v).unwrap_err().key, "cookie_refresh");
    v["cookie_refresh"] = "0s".into();
    assert!(parse(&v).is_ok());
}
