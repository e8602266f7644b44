//! Option parsing: defaults, every key's errors, and a whole oauth2-proxy-style config.

use super::*;
use crate::oidc::ClientAuth;
use crate::providers::entra::is_multi_tenant;
use crate::providers::Kind;

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
    assert_ne!(c.keys.current.session, c.keys.current.csrf);
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
            serde_json::json!("client_secret_jwt"),
        ),
        ("provider", serde_json::json!("okta")),
        ("oidc_issuer_url", serde_json::json!("idp.example.com")),
        (
            "oidc_issuer_url",
            serde_json::json!("https://user:pw@idp.example.com"),
        ),
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
    assert_eq!(c.cluster_for("machines.example"), machines);
    assert_eq!(c.cluster_for("machines.example:443"), machines);
    assert_eq!(c.cluster_for("idp.example.com"), Some("idp"));
    assert_eq!(
        c.cluster_for("keys.example.net"),
        None,
        "no host but the login issuer's goes to its cluster"
    );
    assert_eq!(
        (c.user_id_claim.as_str(), c.email_claim.as_str()),
        ("sub", "mail")
    );
    assert!(c.reverse_proxy && c.skip_jwt_bearer_tokens && !c.bearer_token_login_fallback);
    assert_eq!(c.ping_user_agent.as_deref(), Some("kube-probe/1.30"));
}

/// No Unicode IDNA in the build (Cargo.toml pins `idna_adapter` 1.0): a configured URL on a
/// non-ASCII host is refused at load, naming its key; its punycode form is accepted.
#[test]
fn non_ascii_hosts_are_refused() {
    for (key, url) in [
        ("oidc_issuer_url", "https://idp.ex\u{e4}mple.com"),
        ("oidc_issuer_url", "https://\u{ff49}dp.example.com"),
        (
            "redirect_url",
            "https://app\u{3002}example.com/oauth2/callback",
        ),
    ] {
        let mut v = base();
        v[key] = url.into();
        assert_eq!(parse(&v).unwrap_err().key, key, "{url}");
    }
    let mut v = base();
    v["redirect_url"] = "https://xn--bcher-kva.example/oauth2/callback".into();
    assert!(parse(&v).is_ok());
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
    assert!(c.keys.previous.is_empty() && l.token_exchange.is_none());

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
    assert_eq!(c.keys.previous.len(), 3);
    assert!(c
        .keys
        .previous
        .iter()
        .all(|k| k.session != c.keys.current.session));
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

// Providers (`provider` and each provider's options).

/// `base()` with `extra` on top; a `null` removes the key.
fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut v = base();
    let all = v.as_object_mut().unwrap();
    for (k, val) in extra.as_object().unwrap() {
        if val.is_null() {
            all.remove(k);
        } else {
            all.insert(k.clone(), val.clone());
        }
    }
    v
}

/// A GitHub configuration: no issuer, a cluster for the REST API, and `extra` on top.
fn github(extra: serde_json::Value) -> serde_json::Value {
    let mut v = with(serde_json::json!({
        "provider": "github",
        "oidc_issuer_url": null,
        "idp_cluster": "github",
        "idp_clusters": {"api.github.com": "github_api"},
    }));
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

#[test]
fn github_parses_with_its_options_and_scopes() {
    let c = parse(&github(serde_json::json!({}))).unwrap();
    let p = &c.provider;
    assert_eq!(p.kind, Kind::GitHub);
    assert!(!p.get().has_id_token());
    assert_eq!(c.scope, "user:email");
    let e = p.endpoints().unwrap();
    assert_eq!(
        e.authorization_endpoint,
        "https://github.com/login/oauth/authorize"
    );
    assert_eq!(
        e.token_endpoint,
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(p.github().unwrap().api, "https://api.github.com");
    // No issuer: the token endpoint's origin stands for it, and `idp_cluster` serves it.
    assert_eq!(c.issuer(), "https://github.com");
    assert_eq!(c.cluster_for("github.com"), Some("github"));
    assert_eq!(c.cluster_for("api.github.com"), Some("github_api"));
    assert_eq!(c.cluster_for("evil.example"), None);

    let c = parse(&github(serde_json::json!({
        "github_org": "acme",
        "github_team": "core, ops",
        "github_users": ["octocat"],
        "prefer_email_to_user": true,
    })))
    .unwrap();
    assert_eq!(c.scope, "user:email read:org");
    let gh = c.provider.github().unwrap();
    assert_eq!(gh.org.as_deref(), Some("acme"));
    assert_eq!(gh.teams, ["core", "ops"]);
    assert_eq!(gh.users, ["octocat"]);
    assert!(c.provider.prefer_email_to_user);

    let c = parse(&github(
        serde_json::json!({"github_repo": "acme/app", "github_token": "ghp_x", "scope": "repo user:email"}),
    ))
    .unwrap();
    assert_eq!(c.scope, "repo user:email", "an explicit scope wins");
    assert_eq!(
        c.provider.github().unwrap().repo.as_deref(),
        Some("acme/app")
    );
    assert_eq!(c.provider.github().unwrap().token.as_deref(), Some("ghp_x"));
    assert!(
        !format!("{c:?}").contains("ghp_x"),
        "the token stays out of Debug"
    );

    let env = |k: &str| (k == "GH").then(|| "ghp_env".to_string());
    let v = github(serde_json::json!({"github_repo": "acme/app", "github_token_env": "GH"}));
    let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
    assert_eq!(
        c.provider.github().unwrap().token.as_deref(),
        Some("ghp_env")
    );
}

#[test]
fn github_enterprise_endpoints() {
    let c = parse(&github(serde_json::json!({
        "idp_cluster": "ghe",
        "idp_clusters": null,
        "login_url": "https://ghe.corp.example/login/oauth/authorize",
        "redeem_url": "https://ghe.corp.example/login/oauth/access_token",
        "validate_url": "https://ghe.corp.example/api/v3/",
    })))
    .unwrap();
    assert_eq!(c.issuer(), "https://ghe.corp.example");
    assert_eq!(
        c.provider.github().unwrap().api,
        "https://ghe.corp.example/api/v3"
    );
    assert_eq!(c.cluster_for("ghe.corp.example"), Some("ghe"));
    assert_eq!(c.cluster_for("github.com"), None);
}

#[test]
fn github_refuses_an_issuer_and_needs_a_cluster_for_its_api() {
    let v = github(serde_json::json!({"oidc_issuer_url": "https://github.com"}));
    assert_eq!(parse(&v).unwrap_err().key, "oidc_issuer_url");
    // api.github.com is not github.com: `idp_cluster` does not serve it.
    let v = github(serde_json::json!({"idp_clusters": null}));
    let e = parse(&v).unwrap_err();
    assert_eq!(e.key, "validate_url");
    assert!(e.to_string().contains("api.github.com"), "{e}");
    // An API elsewhere, likewise.
    let v = github(serde_json::json!({"validate_url": "https://api.other.example"}));
    assert_eq!(parse(&v).unwrap_err().key, "validate_url");
    // A token endpoint on a host no cluster serves is not possible: it is the issuer.
    let v = github(serde_json::json!({"redeem_url": "https://elsewhere.example/token"}));
    assert_eq!(
        parse(&v).unwrap().cluster_for("elsewhere.example"),
        Some("github")
    );
}

#[test]
fn github_option_errors_name_their_key() {
    for (key, value) in [
        ("github_team", serde_json::json!("core")),
        ("github_repo", serde_json::json!("app")),
        ("github_repo", serde_json::json!("acme/app/x")),
        ("github_repo", serde_json::json!("acme/")),
        ("github_token_env", serde_json::json!("UNSET")),
        ("validate_url", serde_json::json!("api.github.com")),
        ("login_url", serde_json::json!("not a url")),
    ] {
        let v = github(serde_json::json!({ key: value }));
        let e = parse(&v).unwrap_err();
        assert_eq!(e.key, key, "{key}={value}: {e}");
    }
    let v = github(serde_json::json!({"github_token": "a", "github_token_env": "GH"}));
    assert_eq!(parse(&v).unwrap_err().key, "github_token");
}

#[test]
fn gitlab_parses_with_its_options_and_scope() {
    let c = parse(&with(serde_json::json!({
        "provider": "gitlab",
        "oidc_issuer_url": "https://gitlab.example.com/",
        "gitlab_group": "team-a,team-b",
        "gitlab_projects": ["grp/app", "grp/sub/tool=40"],
    })))
    .unwrap();
    assert_eq!(c.provider.kind, Kind::GitLab);
    assert_eq!(c.scope, "openid email read_api");
    let gl = c.provider.gitlab().unwrap();
    assert_eq!(gl.groups, ["team-a", "team-b"]);
    assert_eq!(
        gl.projects,
        [
            ("grp/app".to_string(), 20),
            ("grp/sub/tool".to_string(), 40)
        ]
    );
    assert_eq!(gl.api, "https://gitlab.example.com/api/v4");
    assert!(c.provider.endpoints().is_none(), "discovered");
}

/// GitLab's projects API refuses a token with only `openid email` (403
/// `insufficient_scope`), which the project check reads as "not a member": oauth2-proxy
/// adds `read_api` to the scope whenever `gitlab_projects` is set.
#[test]
fn gitlab_projects_ask_for_read_api() {
    let c = parse(&with(serde_json::json!({
        "provider": "gitlab",
        "gitlab_projects": ["grp/app"],
    })))
    .unwrap();
    assert_eq!(c.scope, "openid email read_api");
    let c = parse(&with(
        serde_json::json!({"provider": "gitlab", "gitlab_group": ["g"]}),
    ))
    .unwrap();
    assert_eq!(c.scope, "openid email", "groups alone need no API");
}

#[test]
fn gitlab_projects_syntax_errors() {
    for bad in [
        "app",
        "/grp/app",
        "grp/app/",
        "grp/app=25",
        "grp/app=0",
        "grp/app=x",
        "grp/app=",
        "grp/app=300",
    ] {
        let v = with(serde_json::json!({"provider": "gitlab", "gitlab_projects": [bad]}));
        assert_eq!(parse(&v).unwrap_err().key, "gitlab_projects", "{bad}");
    }
}

#[test]
fn google_keycloak_and_entra_parse() {
    let c = parse(&with(serde_json::json!({
        "provider": "google",
        "oidc_issuer_url": "https://accounts.google.com",
        "google_hosted_domains": ["Corp.Example", "other.example"],
    })))
    .unwrap();
    assert_eq!(c.provider.kind, Kind::Google);
    assert_eq!(c.scope, "openid email profile");
    assert_eq!(
        c.provider.google().unwrap().hosted_domains,
        ["corp.example", "other.example"]
    );

    let c = parse(&with(serde_json::json!({"provider": "keycloak-oidc"}))).unwrap();
    assert_eq!(c.provider.kind, Kind::KeycloakOidc);
    assert_eq!(c.scope, "openid email profile");
    assert_eq!(parse(&base()).unwrap().provider.kind, Kind::Oidc);

    for name in ["ms-entra-id", "entra-id", "azure"] {
        let c = parse(&with(serde_json::json!({
            "provider": name,
            "oidc_issuer_url": "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
        })))
        .unwrap();
        assert_eq!(c.provider.kind, Kind::EntraId, "{name}");
        assert_eq!(
            c.provider.entra().unwrap().graph,
            "https://graph.microsoft.com"
        );
        assert!(c.provider.entra().unwrap().allowed_tenants.is_empty());
    }
}

#[test]
fn provider_options_are_refused_with_another_provider() {
    let gitlab = serde_json::json!({"provider": "gitlab"});
    let oidc = serde_json::json!({});
    let google = serde_json::json!({"provider": "google"});
    let entra = serde_json::json!({"provider": "ms-entra-id"});
    let cases = [
        (&oidc, "github_org", serde_json::json!("acme")),
        (&oidc, "github_users", serde_json::json!(["octocat"])),
        (&gitlab, "github_token", serde_json::json!("t")),
        (&google, "github_repo", serde_json::json!("acme/app")),
        (&oidc, "gitlab_group", serde_json::json!(["team"])),
        (&google, "gitlab_projects", serde_json::json!(["grp/app"])),
        (
            &oidc,
            "google_hosted_domains",
            serde_json::json!(["corp.example"]),
        ),
        (
            &entra,
            "google_hosted_domains",
            serde_json::json!(["corp.example"]),
        ),
        (
            &gitlab,
            "entra_id_allowed_tenants",
            serde_json::json!(["*"]),
        ),
        (&oidc, "entra_id_allowed_tenants", serde_json::json!(["*"])),
    ];
    for (provider, key, value) in cases {
        let mut v = with(provider.clone());
        v[key] = value;
        let e = parse(&v).unwrap_err();
        assert_eq!(e.key, key, "{provider} {key}: {e}");
    }
    // And the other way round: GitHub refuses the others' options.
    for (key, value) in [
        ("gitlab_group", serde_json::json!(["team"])),
        ("google_hosted_domains", serde_json::json!(["corp.example"])),
        ("entra_id_allowed_tenants", serde_json::json!(["*"])),
    ] {
        let v = github(serde_json::json!({ key: value }));
        assert_eq!(parse(&v).unwrap_err().key, key);
    }
}

#[test]
fn skip_oidc_discovery_takes_the_endpoints_from_the_config() {
    let endpoints = serde_json::json!({
        "skip_oidc_discovery": true,
        "login_url": "https://idp.example.com/auth",
        "redeem_url": "https://idp.example.com/token",
        "oidc_jwks_url": "https://idp.example.com/keys",
        "profile_url": "https://idp.example.com/me",
    });
    let c = parse(&with(endpoints.clone())).unwrap();
    let e = c.provider.endpoints().unwrap();
    assert_eq!(e.issuer, "https://idp.example.com");
    assert_eq!(e.authorization_endpoint, "https://idp.example.com/auth");
    assert_eq!(e.token_endpoint, "https://idp.example.com/token");
    assert_eq!(e.jwks_uri, "https://idp.example.com/keys");
    assert_eq!(
        e.userinfo_endpoint.as_deref(),
        Some("https://idp.example.com/me")
    );
    // Each one required, named.
    for key in ["login_url", "redeem_url", "oidc_jwks_url"] {
        let mut v = with(endpoints.clone());
        v.as_object_mut().unwrap().remove(key);
        assert_eq!(parse(&v).unwrap_err().key, key);
    }
    // `profile_url` is not: no userinfo.
    let mut v = with(endpoints.clone());
    v.as_object_mut().unwrap().remove("profile_url");
    assert_eq!(
        parse(&v)
            .unwrap()
            .provider
            .endpoints()
            .unwrap()
            .userinfo_endpoint,
        None
    );
    // Without `skip_oidc_discovery` discovery says where they are: refused, named.
    for key in ["login_url", "redeem_url", "oidc_jwks_url"] {
        let mut v = base();
        v[key] = endpoints[key].clone();
        assert_eq!(parse(&v).unwrap_err().key, key);
        v["skip_oidc_discovery"] = false.into();
        assert_eq!(parse(&v).unwrap_err().key, key);
    }
}

#[test]
fn skip_oidc_discovery_endpoints_need_a_cluster() {
    let endpoints = serde_json::json!({
        "skip_oidc_discovery": true,
        "login_url": "https://login.other.example/auth",
        "redeem_url": "https://idp.example.com/token",
        "oidc_jwks_url": "https://idp.example.com/keys",
    });
    // The browser goes to `login_url`: no cluster needed.
    assert!(parse(&with(endpoints.clone())).is_ok());
    for key in ["redeem_url", "oidc_jwks_url", "profile_url"] {
        let mut v = with(endpoints.clone());
        v[key] = "https://keys.other.example/x".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        v["idp_clusters"] = serde_json::json!({"keys.other.example": "other"});
        assert!(parse(&v).is_ok(), "{key}");
    }
}

#[test]
fn a_multi_tenant_entra_issuer_needs_allowed_tenants() {
    for issuer in [
        "https://login.microsoftonline.com/common/v2.0",
        "https://login.microsoftonline.com/organizations/v2.0",
        "https://login.microsoftonline.com/consumers/v2.0/",
    ] {
        let mut v = with(serde_json::json!({"provider": "ms-entra-id", "oidc_issuer_url": issuer}));
        assert_eq!(
            parse(&v).unwrap_err().key,
            "entra_id_allowed_tenants",
            "{issuer}"
        );
        v["entra_id_allowed_tenants"] = serde_json::json!(["*"]);
        assert!(parse(&v).is_ok(), "{issuer}");
        v["entra_id_allowed_tenants"] = "9188040d-6c67-4c5b-b112-36a304b66dad".into();
        let c = parse(&v).unwrap();
        assert_eq!(
            c.provider.entra().unwrap().allowed_tenants,
            ["9188040d-6c67-4c5b-b112-36a304b66dad"]
        );
    }
    assert!(is_multi_tenant(
        "https://login.microsoftonline.com/common/v2.0"
    ));
    assert!(!is_multi_tenant(
        "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    ));
}

#[test]
fn entra_groups_need_a_cluster_for_graph() {
    let tenant = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
    let mut v = with(serde_json::json!({"provider": "ms-entra-id", "oidc_issuer_url": tenant}));
    assert!(parse(&v).is_ok(), "no groups, no Graph");
    v["allowed_groups"] = serde_json::json!(["g1"]);
    let e = parse(&v).unwrap_err();
    assert_eq!(e.key, "allowed_groups");
    assert!(e.to_string().contains("graph.microsoft.com"), "{e}");
    v["idp_clusters"] = serde_json::json!({"graph.microsoft.com": "graph"});
    assert_eq!(
        parse(&v).unwrap().cluster_for("graph.microsoft.com"),
        Some("graph")
    );
    // Other providers' groups need no Graph.
    let v = with(serde_json::json!({"allowed_groups": ["g1"]}));
    assert!(parse(&v).is_ok());
}

#[test]
fn idp_cluster_serves_only_the_login_issuers_host() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.cluster_for("idp.example.com"), Some("idp"));
    assert_eq!(c.cluster_for("IDP.example.com"), Some("idp"));
    for other in [
        "www.googleapis.com",
        "graph.microsoft.com",
        "api.github.com",
        "example.com",
        "idp.example.com.evil.example",
    ] {
        assert_eq!(c.cluster_for(other), None, "{other}");
    }
    let mut v = base();
    v["idp_clusters"] = serde_json::json!({"keys.example.net": "keys"});
    let c = parse(&v).unwrap();
    assert_eq!(c.cluster_for("keys.example.net"), Some("keys"));
    assert_eq!(c.cluster_for("keys.example.net:8443"), Some("keys"));
    assert_eq!(c.cluster_for("idp.example.com"), Some("idp"));
    assert_eq!(c.cluster_for("other.example.net"), None);
}

#[test]
fn github_sends_its_client_credentials_in_the_form_by_default() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("oidc_issuer_url");
    v["provider"] = "github".into();
    v["idp_clusters"] = serde_json::json!({"api.github.com": "api"});
    assert_eq!(parse(&v).unwrap().client_auth, ClientAuth::Post);
    v["token_endpoint_auth_method"] = "client_secret_basic".into();
    assert_eq!(parse(&v).unwrap().client_auth, ClientAuth::Basic);
}

#[test]
fn private_key_jwt_takes_a_key_and_no_secret() {
    use rsa::pkcs8::EncodePrivateKey;
    let pem = crate::oidc::testkeys::rsa_key()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string();
    let mut v = base();
    v.as_object_mut().unwrap().remove("client_secret");
    v["token_endpoint_auth_method"] = "private_key_jwt".into();
    v["client_private_key_env"] = "KEY".into();
    let env = |k: &str| (k == "KEY").then(|| pem.clone());
    let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
    assert_eq!(c.client_auth, ClientAuth::PrivateKeyJwt);
    assert!(c.client_key.is_some() && c.client_secret.is_empty());
    // A secret beside it, a key without the method, a key that is no key: each named.
    let mut with_secret = v.clone();
    with_secret["client_secret"] = "s".into();
    let e = Config::parse(with_secret.to_string().as_bytes(), &env).unwrap_err();
    assert_eq!(e.key, "client_secret");
    let mut no_method = base();
    no_method["client_private_key"] = pem.clone().into();
    assert_eq!(parse(&no_method).unwrap_err().key, "client_private_key");
    let mut junk = v.clone();
    junk.as_object_mut()
        .unwrap()
        .remove("client_private_key_env");
    junk["client_private_key"] =
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into();
    let e = parse(&junk).unwrap_err();
    assert_eq!(e.key, "client_private_key");
    assert!(!e.problem.contains("AAAA"));
}
