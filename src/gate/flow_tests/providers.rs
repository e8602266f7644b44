//! Logins with each provider's own calls after the tokens, driven through the gate: GitHub
//! (no ID token, the REST API), userinfo for an ID token without email, Entra's tenants,
//! and what a denied or failed profile does to the browser.

use super::*;
use crate::refresh::{self, Plan};
use std::collections::HashMap;

const GITHUB_AUTHORIZE: &str = "https://github.com/login/oauth/authorize";
const GH_CLIENT: &str = "gh-client";
const ENTRA_COMMON: &str = "https://login.microsoftonline.com/common/v2.0";
const ENTRA_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const OTHER_TENANT: &str = "00000000-0000-0000-0000-0000000000ff";

/// `tests_support::base()` with `extra` on top (`null` removes a key), parsed.
fn parsed_config(extra: Value) -> Config {
    let mut v = crate::config::tests_support::base();
    merge(&mut v, &extra);
    match Config::parse(v.to_string().as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A world whose configuration is `config`, its provider loaded as the filter does it at
/// configure time when the endpoints are fixed and nothing is signed (`plugin::configure`),
/// else `provider`.
fn world_with(config: Config, provider: Option<Metadata>) -> World {
    let mut w = World::new();
    w.providers = Issuers::new(config.issuers.len());
    if let (Some(d), false) = (
        config.provider.endpoints().cloned(),
        config.provider.get().has_id_token(),
    ) {
        w.providers.set(MAIN, Metadata::without_keys(d));
    }
    if let Some(p) = provider {
        w.providers.set(MAIN, p);
    }
    w.config = config;
    w
}

fn github_world(extra: Value) -> World {
    let mut v = json!({
        "provider": "github",
        "oidc_issuer_url": null,
        "idp_cluster": "github",
        "idp_clusters": {"api.github.com": "github_api"},
        "client_id": GH_CLIENT,
        "set_xauthrequest": true,
    });
    merge(&mut v, &extra);
    world_with(parsed_config(v), None)
}

#[track_caller]
fn call(step: Step) -> (Callout, PendingBox) {
    match step.decision {
        Decision::Call(c, p) => (c, p),
        other => panic!("expected a callout, got {other:?}"),
    }
}

fn answer(w: &mut World, pending: PendingBox, status: u16, body: &str) -> Step {
    w.run(|cx, env| resume(cx, pending.0, Some((status, body.as_bytes())), env))
}

fn callout_header<'a>(c: &'a Callout, name: &str) -> Option<&'a str> {
    c.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A login started at `path` and come back with a code: the authorize query, and the
/// token callout with the login waiting for it.
struct AtToken {
    location: String,
    query: HashMap<String, String>,
    callout: Callout,
    pending: PendingBox,
}

fn to_token_call(w: &mut World, path: &str) -> AtToken {
    let start = respond(w.decide(&get(path, &[])));
    assert_eq!(start.status, 302, "{}", start.body);
    let location = header(&start, "location").unwrap().to_string();
    let q = query(&location);
    let csrf = set_cookies(&start);
    assert_eq!(csrf[0].0, "_oauth2_proxy_csrf");
    let cb = get(
        &format!("/oauth2/callback?code=the-code&state={}", q["state"]),
        &[("cookie", &cookie_header(&csrf))],
    );
    let (callout, pending) = call(w.decide(&cb));
    assert_eq!(callout.method, "POST");
    AtToken {
        location,
        query: q,
        callout,
        pending,
    }
}

/// The headers the app gets for a request carrying `jar`.
fn upstream(w: &mut World, jar: &str) -> Vec<(String, String)> {
    match w.decide(&get("/app", &[("cookie", jar)])).decision {
        Decision::Continue { set, .. } => set
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        other => panic!("expected the request to go on, got {other:?}"),
    }
}

fn value<'a>(set: &'a [(String, String)], name: &str) -> Option<&'a str> {
    set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// An error page that set no session and expired the login attempt's cookie.
#[track_caller]
fn assert_failed_login(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
    let cookies = set_cookies(r);
    assert!(
        cookies
            .iter()
            .any(|(n, v)| n == "_oauth2_proxy_csrf" && v.is_empty()),
        "{cookies:?}"
    );
    assert!(
        !cookies
            .iter()
            .any(|(n, v)| n.starts_with("_oauth2_proxy") && !v.is_empty()),
        "{cookies:?}"
    );
}

const GH_TOKEN: &str = r#"{"access_token":"gho_x","token_type":"bearer","scope":"user:email"}"#;

fn octocat() -> String {
    json!({"login": "octocat", "id": 583231, "name": "The Octocat"}).to_string()
}

fn octocat_emails() -> String {
    json!([
        {"email": "octocat@users.noreply.github.com", "primary": false, "verified": true},
        {"email": "octocat@github.com", "primary": true, "verified": true},
    ])
    .to_string()
}

/// A GitHub API callout with the user's token, through the API's cluster.
#[track_caller]
fn assert_github_api(w: &World, c: &Callout, path: &str) {
    assert_eq!(
        (c.method, c.authority.as_str(), c.path.as_str()),
        ("GET", "api.github.com", path)
    );
    assert_eq!(callout_header(c, "authorization"), Some("Bearer gho_x"));
    assert_eq!(
        callout_header(c, "accept"),
        Some("application/vnd.github+json")
    );
    assert!(callout_header(c, "user-agent").is_some());
    assert_eq!(w.config.cluster_for(&c.authority), Some("github_api"));
}

/// Logs in with GitHub up to the first API call, the token answered with [`GH_TOKEN`].
fn github_to_user_call(w: &mut World, path: &str) -> (Callout, PendingBox) {
    let at = to_token_call(w, path);
    call(answer(w, at.pending, 200, GH_TOKEN))
}

#[test]
fn a_whole_github_login() {
    let mut w = github_world(json!({}));
    let at = to_token_call(&mut w, "/oauth2/start?rd=%2Frepos%3Ftab%3D1");
    assert!(
        at.location.starts_with(&format!("{GITHUB_AUTHORIZE}?")),
        "{}",
        at.location
    );
    assert_eq!(at.query["client_id"], GH_CLIENT);
    assert_eq!(at.query["scope"], "user:email");
    assert_eq!(
        at.query["redirect_uri"],
        "https://app.example.com/oauth2/callback"
    );
    assert!(at.query["state"].len() >= 32);

    // The code is redeemed at github.com, through `idp_cluster`.
    let c = &at.callout;
    assert_eq!(
        (c.authority.as_str(), c.path.as_str()),
        ("github.com", "/login/oauth/access_token")
    );
    assert_eq!(w.config.cluster_for(&c.authority), Some("github"));
    // GitHub answers form-encoded unless asked for JSON.
    assert_eq!(callout_header(c, "accept"), Some("application/json"));
    let form: HashMap<String, String> = url::form_urlencoded::parse(&c.body).into_owned().collect();
    assert_eq!(form["code"], "the-code");
    assert_eq!(form["grant_type"], "authorization_code");

    // No ID token: accepted for GitHub, and the user is asked of the API.
    let (c, pending) = call(answer(&mut w, at.pending, 200, GH_TOKEN));
    assert_github_api(&w, &c, "/user");
    let (c, pending) = call(answer(&mut w, pending, 200, &octocat()));
    assert_github_api(&w, &c, "/user/emails?per_page=100&page=1");
    let done = respond(answer(&mut w, pending, 200, &octocat_emails()));
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(header(&done, "location"), Some("/repos?tab=1"));
    let cookies = set_cookies(&done);
    assert!(cookies
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    assert!(cookies
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy_csrf" && v.is_empty()));

    // The cookie alone carries who it is.
    w.sessions = Cache::new(16, 1 << 20);
    let jar = cookie_header(&cookies);
    let set = upstream(&mut w, &jar);
    assert_eq!(value(&set, "x-forwarded-user"), Some("octocat"));
    assert_eq!(value(&set, "x-forwarded-email"), Some("octocat@github.com"));
    assert_eq!(
        value(&set, "x-forwarded-preferred-username"),
        Some("octocat")
    );
    assert_eq!(value(&set, "x-auth-request-user"), Some("octocat"));
    let info = respond(w.decide(&get("/oauth2/userinfo", &[("cookie", &jar)])));
    let v: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(v["user"], "octocat");
    assert_eq!(v["email"], "octocat@github.com");
}

#[test]
fn a_github_login_with_an_organisation_passes_it_as_a_group() {
    let mut w = github_world(json!({"github_org": "acme", "github_team": ["core"]}));
    let at = to_token_call(&mut w, "/");
    assert_eq!(at.query["scope"], "user:email read:org");
    let (_, pending) = call(answer(&mut w, at.pending, 200, GH_TOKEN));
    let (_, pending) = call(answer(&mut w, pending, 200, &octocat()));
    let (c, pending) = call(answer(&mut w, pending, 200, &octocat_emails()));
    assert_github_api(&w, &c, "/user/orgs?per_page=100&page=1");
    let (c, pending) = call(answer(&mut w, pending, 200, r#"[{"login":"acme"}]"#));
    assert_github_api(&w, &c, "/user/teams?per_page=100&page=1");
    let teams = json!([{"slug": "core", "organization": {"login": "acme"}}]).to_string();
    let done = respond(answer(&mut w, pending, 200, &teams));
    assert_eq!(done.status, 302, "{}", done.body);
    let set = upstream(&mut w, &cookie_header(&set_cookies(&done)));
    assert_eq!(value(&set, "x-forwarded-groups"), Some("acme,acme:core"));
}

#[test]
fn a_denied_profile_is_a_403_that_ends_the_login_attempt() {
    let mut w = github_world(json!({"github_org": "acme"}));
    let (_, pending) = github_to_user_call(&mut w, "/");
    let (_, pending) = call(answer(&mut w, pending, 200, &octocat()));
    let (c, pending) = call(answer(&mut w, pending, 200, &octocat_emails()));
    assert_github_api(&w, &c, "/user/orgs?per_page=100&page=1");
    let step = answer(&mut w, pending, 200, r#"[{"login":"other"}]"#);
    let log = step.log.clone().expect("a log line");
    assert!(log.1.contains("github_org"), "{log:?}");
    let r = respond(step);
    assert_failed_login(&r, 403);
    assert!(r.body.contains("not allowed"), "{}", r.body);
    assert!(w.sessions.is_empty());
}

#[test]
fn a_failed_profile_is_a_502_and_never_a_retry() {
    for (status, why) in [
        (401, "token_refused"),
        (403, "rate_limited"),
        (429, "rate_limited"),
    ] {
        let mut w = github_world(json!({}));
        let (c, pending) = github_to_user_call(&mut w, "/");
        assert_github_api(&w, &c, "/user");
        let step = answer(&mut w, pending, status, r#"{"message":"Bad credentials"}"#);
        let log = step.log.clone().expect("a log line");
        assert!(log.1.contains(why), "{status}: {log:?}");
        assert_failed_login(&respond(step), 502);
    }
    // An unreachable API alike.
    let mut w = github_world(json!({}));
    let (_, pending) = github_to_user_call(&mut w, "/");
    let r = respond(w.run(|cx, env| resume(cx, pending.0, None, env)));
    assert_failed_login(&r, 502);
}

#[test]
fn the_sign_in_page_names_the_provider() {
    let mut w = github_world(json!({}));
    let page = respond(w.decide(&get("/oauth2/sign_in", &[])));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign in with GitHub"), "{}", page.body);
    let mut w = World::new();
    let page = respond(w.decide(&get("/oauth2/sign_in", &[])));
    assert!(page.body.contains("Sign in with OpenID Connect"));
    w.config = parsed_config(json!({"provider": "keycloak-oidc", "client_id": CLIENT_ID}));
    let page = respond(w.decide(&get("/oauth2/sign_in", &[])));
    assert!(page.body.contains("Sign in with Keycloak"));
}

#[test]
fn only_github_logins_may_come_without_an_id_token() {
    let mut w = World::new();
    let at = to_token_call(&mut w, "/");
    let r = respond(answer(
        &mut w,
        at.pending,
        200,
        r#"{"access_token":"AT","token_type":"Bearer"}"#,
    ));
    assert_ne!(r.status, 302, "{}", r.body);
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    // GitHub's token endpoint reports errors with a 200.
    let mut w = github_world(json!({}));
    let at = to_token_call(&mut w, "/");
    let r = respond(answer(
        &mut w,
        at.pending,
        200,
        r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
    ));
    assert!(r.status >= 400, "{}", r.body);
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
}

// OpenID Connect: userinfo before the session is sealed.

fn userinfo_world() -> World {
    let mut w = World::new();
    w.providers.set(
        MAIN,
        provider_with(
            &json!({"userinfo_endpoint": format!("{ISSUER}/userinfo")}),
            &testkeys::jwks_json(),
        ),
    );
    w
}

/// The claims of an ID token without email.
fn no_email(nonce: &str) -> Value {
    let mut c = good_claims(nonce);
    let all = c.as_object_mut().unwrap();
    all.remove("email");
    all.remove("email_verified");
    c
}

fn userinfo_answer() -> String {
    json!({"sub": "user-123", "email": "alice@example.com", "email_verified": true}).to_string()
}

#[test]
fn an_id_token_without_email_asks_userinfo_before_the_session_is_sealed() {
    let mut w = userinfo_world();
    w.config.rules.email_domains = vec!["example.com".into()];
    let at = to_token_call(&mut w, "/reports");
    let tokens = token_answer(&no_email(&at.query["nonce"]), &json!({}));
    let (c, pending) = call(answer(&mut w, at.pending, 200, &tokens));
    assert_eq!(
        (c.method, c.authority.as_str(), c.path.as_str()),
        ("GET", "idp.example.com", "/userinfo")
    );
    assert_eq!(callout_header(&c, "authorization"), Some("Bearer AT"));
    assert!(w.sessions.is_empty(), "nothing sealed yet");
    let done = respond(answer(&mut w, pending, 200, &userinfo_answer()));
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(header(&done, "location"), Some("/reports"));
    let set = upstream(&mut w, &cookie_header(&set_cookies(&done)));
    assert_eq!(value(&set, "x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(value(&set, "x-forwarded-user"), Some("alice@example.com"));
}

#[test]
fn an_id_token_with_email_needs_no_userinfo() {
    let mut w = userinfo_world();
    let at = to_token_call(&mut w, "/");
    let tokens = token_answer(&good_claims(&at.query["nonce"]), &json!({}));
    let done = respond(answer(&mut w, at.pending, 200, &tokens));
    assert_eq!(done.status, 302, "{}", done.body);
}

#[test]
fn a_userinfo_about_someone_else_is_a_502() {
    let mut w = userinfo_world();
    let at = to_token_call(&mut w, "/");
    let tokens = token_answer(&no_email(&at.query["nonce"]), &json!({}));
    let (_, pending) = call(answer(&mut w, at.pending, 200, &tokens));
    let step = answer(
        &mut w,
        pending,
        200,
        r#"{"sub":"user-999","email":"mallory@example.com"}"#,
    );
    assert!(step
        .log
        .as_ref()
        .unwrap()
        .1
        .contains("userinfo_sub_mismatch"));
    assert_failed_login(&respond(step), 502);
}

/// The app sees the user the login established, after a refresh too: a refresh's ID token
/// lacks the email exactly like the login's did.
#[test]
fn a_refresh_keeps_the_email_userinfo_gave() {
    let mut w = userinfo_world();
    w.config.rules.email_domains = vec!["example.com".into()];
    let at = to_token_call(&mut w, "/");
    let tokens = token_answer(
        &no_email(&at.query["nonce"]),
        &json!({"refresh_token": "RT-1", "expires_in": 300}),
    );
    let (_, pending) = call(answer(&mut w, at.pending, 200, &tokens));
    let done = respond(answer(&mut w, pending, 200, &userinfo_answer()));
    let jar = cookie_header(&set_cookies(&done));
    assert_eq!(
        value(&upstream(&mut w, &jar), "x-forwarded-email"),
        Some("alice@example.com")
    );

    w.now = NOW + 280;
    let mut due = match w.decide(&get("/app", &[("cookie", &jar)])).decision {
        Decision::Refresh(call) => *call,
        other => panic!("expected a refresh, got {other:?}"),
    };
    let free: Vec<Option<&[u8]>> = vec![None; due.slots.len()];
    let plan = refresh::plan(&free, &due.session_id, due.generation, w.now, 10, w.now);
    let Plan::Claim { slot, bytes } = plan else {
        panic!("a free slot is claimed");
    };
    due.pending.0.set_claim(due.slots[slot].clone(), bytes);
    let mut claims = testkeys::id_claims(w.now);
    let all = claims.as_object_mut().unwrap();
    all.remove("email");
    all.remove("email_verified");
    all.remove("nonce");
    let body = token_answer(
        &claims,
        &json!({"access_token": "AT-2", "refresh_token": "RT-2", "expires_in": 300}),
    );
    match answer(&mut w, due.pending, 200, &body).decision {
        Decision::Continue { set, .. } => {
            let set: Vec<(String, String)> = set
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(value(&set, "x-forwarded-email"), Some("alice@example.com"));
            assert_eq!(value(&set, "x-forwarded-access-token"), Some("AT-2"));
        }
        other => panic!("expected the refreshed request to go on, got {other:?}"),
    }
}

// Microsoft Entra ID's multi-tenant endpoint.

fn entra_provider() -> Metadata {
    let doc = json!({
        "issuer": ENTRA_TEMPLATE,
        "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
    });
    let d =
        crate::issuer::on_discovery(ENTRA_COMMON, Some((200, doc.to_string().as_bytes()))).unwrap();
    Metadata::new(d, testkeys::jwks_json().as_bytes(), NOW).unwrap()
}

/// The claims of an ID token from tenant `tid`, its issuer that tenant's.
fn tenant_claims(nonce: &str, tid: &str) -> Value {
    let mut c = good_claims(nonce);
    c["iss"] = format!("https://login.microsoftonline.com/{tid}/v2.0").into();
    c["tid"] = tid.into();
    c
}

/// Logs in through the multi-tenant endpoint as a user of `tid`.
fn entra_login(w: &mut World, tid: &str) -> Response {
    entra_login_with(w, tid, json!({}))
}

/// [`entra_login`] with `extra` claims in the ID token.
fn entra_login_with(w: &mut World, tid: &str, extra: Value) -> Response {
    let at = to_token_call(w, "/");
    assert!(at
        .location
        .starts_with("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"));
    assert_eq!(at.callout.authority, "login.microsoftonline.com");
    let mut claims = tenant_claims(&at.query["nonce"], tid);
    merge(&mut claims, &extra);
    let tokens = token_answer(&claims, &json!({}));
    respond(answer(w, at.pending, 200, &tokens))
}

#[test]
fn entra_multi_tenant_logins_are_limited_to_the_allowed_tenants() {
    let config = parsed_config(json!({
        "provider": "ms-entra-id",
        "oidc_issuer_url": ENTRA_COMMON,
        "client_id": CLIENT_ID,
        "entra_id_allowed_tenants": [TENANT],
    }));
    let mut w = world_with(config.clone(), Some(entra_provider()));
    let done = entra_login_with(&mut w, TENANT, json!({"xms_edov": true}));
    assert_eq!(done.status, 302, "{}", done.body);
    let set = upstream(&mut w, &cookie_header(&set_cookies(&done)));
    assert_eq!(value(&set, "x-forwarded-email"), Some("alice@example.com"));
    // Another tenant: authenticated, not allowed.
    let mut w = world_with(config, Some(entra_provider()));
    assert_failed_login(&entra_login(&mut w, OTHER_TENANT), 403);
    // A token whose issuer is not its own tenant's.
    let mut w = world_with(
        parsed_config(json!({
            "provider": "ms-entra-id",
            "oidc_issuer_url": ENTRA_COMMON,
            "client_id": CLIENT_ID,
            "entra_id_allowed_tenants": ["*"],
        })),
        Some(entra_provider()),
    );
    let at = to_token_call(&mut w, "/");
    let mut claims = tenant_claims(&at.query["nonce"], TENANT);
    claims["iss"] = format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0").into();
    let r = respond(answer(
        &mut w,
        at.pending,
        200,
        &token_answer(&claims, &json!({})),
    ));
    assert_eq!(r.status, 401, "{}", r.body);
}

/// With `provider: oidc` on the multi-tenant endpoint no provider checks the tenant:
/// refusing that configuration, the template, or the login would all do.
#[test]
fn a_multi_tenant_issuer_without_the_entra_provider_admits_no_foreign_tenant() {
    let mut v = crate::config::tests_support::base();
    merge(
        &mut v,
        &json!({"oidc_issuer_url": ENTRA_COMMON, "client_id": CLIENT_ID}),
    );
    let Ok(config) = Config::parse(v.to_string().as_bytes(), &|_| None) else {
        return; // Refused at load: fine.
    };
    let doc = json!({
        "issuer": ENTRA_TEMPLATE,
        "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
    });
    let Ok(d) = crate::issuer::on_discovery(ENTRA_COMMON, Some((200, doc.to_string().as_bytes())))
    else {
        return; // The template refused for this provider: fine.
    };
    let provider = Metadata::new(d, testkeys::jwks_json().as_bytes(), NOW).unwrap();
    let mut w = world_with(config, Some(provider));
    let r = entra_login(&mut w, OTHER_TENANT);
    assert!(
        !set_cookies(&r)
            .iter()
            .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()),
        "a user of tenant {OTHER_TENANT} got a session ({} {})",
        r.status,
        header(&r, "location").unwrap_or_default()
    );
}

// Google.

/// The doc of `ProviderSettings::google_hosted_domains` says the first domain is sent as
/// `hd` (Google's account-chooser hint).
#[test]
fn google_sends_the_hosted_domain_hint() {
    let config = parsed_config(json!({
        "provider": "google",
        "client_id": CLIENT_ID,
        "google_hosted_domains": ["corp.example", "other.example"],
    }));
    let mut w = world_with(config, Some(provider()));
    let at = to_token_call(&mut w, "/");
    assert_eq!(at.query.get("hd").map(String::as_str), Some("corp.example"));
}

#[test]
fn google_hosted_domains_are_checked_at_login() {
    let config = parsed_config(json!({
        "provider": "google",
        "client_id": CLIENT_ID,
        "google_hosted_domains": ["corp.example"],
    }));
    for (hd, admitted) in [
        (Some("corp.example"), true),
        (Some("evil.example"), false),
        (None, false),
    ] {
        let mut w = world_with(config.clone(), Some(provider()));
        let at = to_token_call(&mut w, "/");
        let mut claims = good_claims(&at.query["nonce"]);
        if let Some(hd) = hd {
            claims["hd"] = hd.into();
        }
        let r = respond(answer(
            &mut w,
            at.pending,
            200,
            &token_answer(&claims, &json!({})),
        ));
        if admitted {
            assert_eq!(r.status, 302, "{hd:?}: {}", r.body);
        } else {
            assert_failed_login(&r, 403);
        }
    }
}

// Client authentication with `private_key_jwt`.

#[test]
fn private_key_jwt_signs_every_token_endpoint_call_for_the_issuer() {
    use rsa::pkcs8::EncodePrivateKey;
    let pem = crate::oidc::testkeys::rsa_key()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let mut w = World::new();
    let mut v = crate::config::tests_support::base();
    let o = v.as_object_mut().unwrap();
    o.remove("client_secret");
    o.insert("client_id".into(), CLIENT_ID.into());
    o.insert(
        "token_endpoint_auth_method".into(),
        "private_key_jwt".into(),
    );
    o.insert("client_private_key_env".into(), "CLIENT_KEY".into());
    o.insert("client_private_key_id".into(), "client-key-1".into());
    let env = |k: &str| (k == "CLIENT_KEY").then(|| pem.to_string());
    w.config = Config::parse(v.to_string().as_bytes(), &env).unwrap();

    let start = respond(w.decide(&get("/app", &[])));
    let q = query(header(&start, "location").unwrap());
    let cb = get(
        &format!("/oauth2/callback?code=c&state={}", q["state"]),
        &[("cookie", &cookie_header(&set_cookies(&start)))],
    );
    let Decision::Call(callout, _) = w.decide(&cb).decision else {
        panic!("expected the token call");
    };
    assert!(!callout.headers.iter().any(|(n, _)| n == "authorization"));
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&callout.body)
            .into_owned()
            .collect();
    assert_eq!(form["client_id"], CLIENT_ID);
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    // Signed with the client's key, made out to the issuer, one minute, fresh jti.
    let keys = crate::oidc::Jwks::parse(
        crate::oidc::testkeys::jwks_json_for(&[crate::oidc::testkeys::rsa_jwk(
            Some("client-key-1"),
            None,
        )])
        .as_bytes(),
    )
    .unwrap();
    let claims = crate::oidc::verify(&form["client_assertion"], &keys).unwrap();
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], ISSUER);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    assert!(!claims["jti"].as_str().unwrap().is_empty());
}
