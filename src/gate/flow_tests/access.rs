//! Who gets in and how clients are told, driven through the gate: access rules on every
//! request, skip and API routes, bearer tokens, header spellings, trusted proxy headers.

use super::*;

fn api(path: &str, extra: &[(&str, &str)]) -> Request {
    let mut r = get(path, extra);
    r.headers.retain(|n, _| n != "accept");
    r.headers.push("accept", "application/json");
    r
}

fn logged_in(w: &mut World) -> String {
    let done = login_with(w, "/", good_claims);
    assert_eq!(done.status, 302);
    cookie_header(&set_cookies(&done))
}

/// What the app would receive, or `None` when the gate answered itself.
fn at_app(w: &mut World, req: &Request) -> Option<Vec<(String, String)>> {
    match w.decide(req).decision {
        Decision::Continue { remove, set, .. } => Some(
            edited_headers(&req.headers, &remove, &set)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ),
        _ => None,
    }
}

fn bearer(claims: &Value) -> String {
    format!("Bearer {}", testkeys::sign_rs256(Some("rsa1"), claims))
}

fn bearer_claims() -> Value {
    let mut c = testkeys::id_claims(NOW);
    c.as_object_mut().unwrap().remove("nonce");
    c
}

#[test]
fn rules_apply_to_existing_sessions_on_every_request() {
    let mut w = World::new();
    let jar = logged_in(&mut w);
    assert!(at_app(&mut w, &get("/x", &[("cookie", &jar)])).is_some());
    // A new configuration (a new VM, so new caches) applies to the same cookie.
    w.config.rules.allowed_groups = vec!["ops".into()];
    w.sessions = Cache::new(16, 1 << 20);
    let r = respond(w.decide(&get("/x", &[("cookie", &jar)])));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("403 Forbidden"), "a page for browsers");
    let r = respond(w.decide(&api("/x", &[("cookie", &jar)])));
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "{\"error\":\"forbidden\"}")
    );
    // Roles widen the allowed groups.
    w.config.rules.allowed_roles = vec!["app:reader".into()];
    w.sessions = Cache::new(16, 1 << 20);
    assert_eq!(
        respond(w.decide(&get("/x", &[("cookie", &jar)]))).status,
        403
    );
}

#[test]
fn keycloak_roles_admit_at_login() {
    let mut w = World::new();
    w.config.rules.allowed_groups = vec!["ops".into()];
    w.config.rules.allowed_roles = vec!["app:reader".into()];
    assert_eq!(login_with(&mut w, "/", good_claims).status, 403);
    let done = login_with(&mut w, "/", |n| {
        let mut c = good_claims(n);
        c["resource_access"] = json!({"app": {"roles": ["reader"]}});
        c
    });
    assert_eq!(done.status, 302);
}

#[test]
fn malformed_emails_never_get_a_session() {
    for email in ["evil@x.org@example.com", "@example.com", "a b@example.com"] {
        let mut w = World::new();
        w.config.rules.email_domains = vec!["example.com".into()];
        let r = login_with(&mut w, "/", |n| {
            let mut c = good_claims(n);
            c["email"] = email.into();
            c
        });
        assert_eq!(r.status, 403, "{email}");
        assert!(!set_cookies(&r)
            .iter()
            .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    }
}

#[test]
fn api_routes_get_401_even_from_browsers() {
    let mut w = World::new();
    w.config.api_routes = vec![crate::routing::routes::ApiRoute::parse("^/api/").unwrap()];
    let r = respond(w.decide(&get("/api/items", &[])));
    assert_eq!(r.status, 401);
    assert_eq!(respond(w.decide(&get("/app/api/", &[]))).status, 302);
}

#[test]
fn skip_routes_only_on_canonical_paths_and_still_stripped() {
    let mut w = World::new();
    w.config.skip_auth_routes =
        vec![crate::routing::routes::SkipRoute::parse("GET=^/public/").unwrap()];
    let seen = at_app(
        &mut w,
        &get("/public/a.css", &[("x_forwarded_email", "evil@x")]),
    )
    .expect("skipped");
    assert!(!seen
        .iter()
        .any(|(n, _)| crate::routing::headers::is_owned(n)));
    for bypass in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public//x",
        "/public/..;/x",
    ] {
        assert_eq!(respond(w.decide(&get(bypass, &[]))).status, 302, "{bypass}");
    }
    // A session on a skipped route lends its identity, as oauth2-proxy does.
    let jar = logged_in(&mut w);
    let seen = at_app(&mut w, &get("/public/a.css", &[("cookie", &jar)])).unwrap();
    assert!(seen.contains(&("x-forwarded-email".into(), "alice@example.com".into())));
    // Unless the rules refuse that user: then it is anonymous there.
    w.config.rules.allowed_groups = vec!["ops".into()];
    w.sessions = Cache::new(16, 1 << 20);
    let seen = at_app(&mut w, &get("/public/a.css", &[("cookie", &jar)])).unwrap();
    assert!(!seen
        .iter()
        .any(|(n, _)| crate::routing::headers::is_owned(n)));
}

#[test]
fn every_spelling_of_identity_headers_is_stripped() {
    let mut w = World::new();
    let jar = logged_in(&mut w);
    let corpus = include_str!("../../../tests/corpora/identity-header-spellings.txt");
    let spellings: Vec<(&str, &str)> = corpus
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (l, "forged"))
        .collect();
    let mut extra = spellings.clone();
    extra.push(("cookie", &jar));
    let seen = at_app(&mut w, &get("/x", &extra)).unwrap();
    assert!(!seen.iter().any(|(_, v)| v == "forged"), "{seen:?}");
    let emails: Vec<_> = seen
        .iter()
        .filter(|(n, _)| n == "x-forwarded-email")
        .collect();
    assert_eq!(emails.len(), 1);
}

#[test]
fn ping_paths_and_agent_are_configurable() {
    let mut w = World::new();
    w.config.ping_path = "/healthz".into();
    w.config.ready_path = "/readyz".into();
    w.config.ping_user_agent = Some("kube-probe/1.30".into());
    for p in ["/healthz", "/readyz"] {
        assert_eq!(respond(w.decide(&api(p, &[]))).status, 200, "{p}");
    }
    assert_eq!(respond(w.decide(&api("/ping", &[]))).status, 401);
    let probe = api("/anything", &[("user-agent", "kube-probe/1.30")]);
    assert_eq!(respond(w.decide(&probe)).status, 200);
}

#[test]
fn forwarded_headers_count_only_behind_a_trusted_proxy() {
    let mut w = World::new();
    w.config.redirect_url = None;
    let spoof = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-uri", "/elsewhere"),
    ];
    let start = respond(w.decide(&get("/deep?x=1", &spoof)));
    let q = query(header(&start, "location").unwrap());
    assert_eq!(q["redirect_uri"], "https://app.example.com/oauth2/callback");
    let r = respond(w.decide(&get("/oauth2/start?rd=https://evil.example/x", &spoof)));
    let state = query(header(&r, "location").unwrap())["state"].clone();
    let csrf = set_cookies(&r);
    let login = crate::session::csrf::verify(
        &w.config.keys.current.csrf,
        &w.config.cookie.csrf_name(),
        &csrf[0].1,
        &state,
        NOW,
    )
    .unwrap();
    assert_eq!(
        login.return_to, "/",
        "an rd to the forwarded host is not ours"
    );

    w.config.reverse_proxy = true;
    let start = respond(w.decide(&get("/deep?x=1", &spoof)));
    let q = query(header(&start, "location").unwrap());
    assert_eq!(q["redirect_uri"], "http://evil.example/oauth2/callback");
}

#[test]
fn x_auth_request_redirect_is_a_return_url_through_the_same_check() {
    let mut w = World::new();
    for (sent, kept) in [("/after?x=1", "/after?x=1"), ("https://evil.example/", "/")] {
        let r = respond(w.decide(&get("/oauth2/start", &[("x-auth-request-redirect", sent)])));
        let state = query(header(&r, "location").unwrap())["state"].clone();
        let login = crate::session::csrf::verify(
            &w.config.keys.current.csrf,
            &w.config.cookie.csrf_name(),
            &set_cookies(&r)[0].1,
            &state,
            NOW,
        )
        .unwrap();
        assert_eq!(login.return_to, kept, "{sent}");
    }
}

#[test]
fn auth_endpoint_restrictions_and_headers() {
    let mut w = World::new();
    w.config.set_authorization_header = true;
    let jar = logged_in(&mut w);
    let auth = |w: &mut World, q: &str| {
        respond(w.decide(&api(&format!("/oauth2/auth{q}"), &[("cookie", &jar)])))
    };
    let ok = auth(&mut w, "");
    assert_eq!(ok.status, 202);
    assert!(header(&ok, "authorization").is_some_and(|v| v.starts_with("Bearer ")));
    assert_eq!(auth(&mut w, "?allowed_groups=devs,ops").status, 202);
    assert_eq!(auth(&mut w, "?allowed_groups=ops").status, 403);
    assert_eq!(
        auth(&mut w, "?allowed_email_domains=example.com").status,
        202
    );
    assert_eq!(auth(&mut w, "?allowed_email_domains=other.org").status, 403);
    assert_eq!(
        auth(&mut w, "?allowed_emails=alice%40example.com").status,
        202
    );
    assert_eq!(
        auth(&mut w, "?allowed_emails=bob%40example.com").status,
        403
    );
    w.config.set_xauthrequest = false;
    w.config.set_authorization_header = false;
    w.sessions = Cache::new(16, 1 << 20);
    let bare = auth(&mut w, "");
    assert_eq!(bare.status, 202);
    assert!(!bare
        .headers
        .iter()
        .any(|(n, _)| crate::routing::headers::is_owned(n)));
}

#[test]
fn bearer_tokens_stand_in_for_a_session_and_are_cached() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    let token = bearer(&bearer_claims());
    let seen = at_app(&mut w, &api("/x", &[("authorization", &token)])).unwrap();
    assert!(seen.contains(&("x-forwarded-email".into(), "alice@example.com".into())));
    assert!(seen.contains(&("authorization".into(), token.clone())));
    // Cached: without any keys loaded, the same token still passes, a new one waits.
    w.providers = Issuers::new(1);
    assert!(at_app(&mut w, &api("/x", &[("authorization", &token)])).is_some());
    let mut other = bearer_claims();
    other["sub"] = "someone-else".into();
    assert_eq!(
        w.decide(&api("/x", &[("authorization", &bearer(&other))]))
            .decision,
        Decision::NeedIssuer(MAIN)
    );
}

#[test]
fn bad_bearer_tokens_get_invalid_token() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    w.config.bearer_token_login_fallback = false;
    let good = bearer(&bearer_claims());
    let mut expired = bearer_claims();
    expired["exp"] = (NOW - 120).into();
    let mut wrong_aud = bearer_claims();
    wrong_aud["aud"] = "someone-else".into();
    let mut foreign = bearer_claims();
    foreign["iss"] = "https://evil.example".into();
    let tampered = format!("{good}x");
    for token in [
        bearer(&expired),
        bearer(&wrong_aud),
        bearer(&foreign),
        tampered,
        "Bearer not-a-jwt".into(),
        "Bearer ".into(),
    ] {
        let r = respond(w.decide(&get("/x", &[("authorization", &token)])));
        assert_eq!(r.status, 401, "{token}");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    // The endpoints say so too.
    for path in ["/oauth2/auth", "/oauth2/userinfo"] {
        let r = respond(w.decide(&api(path, &[("authorization", "Bearer x.y.z")])));
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        let r = respond(w.decide(&api(path, &[])));
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer"), "{path}");
    }
    // Two Authorization headers are ambiguous: never a credential.
    let r = respond(w.decide(&api(
        "/x",
        &[("authorization", &good), ("authorization", &good)],
    )));
    assert_eq!(r.status, 401);
    // A token the rules refuse is a 403, like a session.
    w.config.rules.email_domains = vec!["corp.example".into()];
    assert_eq!(
        respond(w.decide(&api("/x", &[("authorization", &good)]))).status,
        403
    );
}

#[test]
fn login_fallback_with_a_bad_bearer() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    let jar = logged_in(&mut w);
    let bad = "Bearer not-a-jwt";
    // Default (true): the session cookie still counts, browsers are sent to log in.
    assert!(at_app(
        &mut w,
        &api("/x", &[("authorization", bad), ("cookie", &jar)])
    )
    .is_some());
    assert_eq!(
        respond(w.decide(&get("/x", &[("authorization", bad)]))).status,
        302
    );
    let r = respond(w.decide(&api("/x", &[("authorization", bad)])));
    assert_eq!(
        header(&r, "www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let r = respond(w.decide(&api("/x", &[])));
    assert_eq!(
        (r.status, header(&r, "www-authenticate")),
        (401, Some("Bearer"))
    );
    w.config.bearer_token_login_fallback = false;
    for req in [
        api("/x", &[("authorization", bad), ("cookie", &jar)]),
        get("/x", &[("authorization", bad)]),
    ] {
        assert_eq!(respond(w.decide(&req)).status, 401);
    }
    // Without skip_jwt_bearer_tokens a bearer token is no credential at all.
    w.config.skip_jwt_bearer_tokens = false;
    let good = bearer(&bearer_claims());
    assert_eq!(
        respond(w.decide(&api("/x", &[("authorization", &good)]))).status,
        401
    );
}

#[test]
fn unknown_kid_on_a_bearer_refetches_keys_then_refuses() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    let token = format!(
        "Bearer {}",
        testkeys::sign_rs256(Some("rotated"), &bearer_claims())
    );
    let Decision::NeedKeys(MAIN, pending) =
        w.decide(&api("/x", &[("authorization", &token)])).decision
    else {
        panic!("expected a key refresh");
    };
    let r = respond(w.run(|cx, env| resume_keys(cx, pending.0, true, env)));
    assert_eq!(r.status, 401);
}

#[test]
fn extra_issuers_wait_for_their_own_metadata() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    w.config.issuers.push(crate::config::Issuer {
        url: "https://other.example".into(),
        audiences: vec!["api".into()],
    });
    w.providers = Issuers::new(2);
    let mut claims = bearer_claims();
    claims["iss"] = "https://other.example".into();
    claims["aud"] = "api".into();
    assert_eq!(
        w.decide(&api("/x", &[("authorization", &bearer(&claims))]))
            .decision,
        Decision::NeedIssuer(1)
    );
}

#[test]
fn sign_out_replays_do_not_grow_the_session_cache() {
    let mut w = World::new();
    let jar = logged_in(&mut w);
    for _ in 0..5000 {
        assert!(at_app(&mut w, &get("/x", &[("cookie", &jar)])).is_some());
        respond(w.decide(&get("/oauth2/sign_out", &[("cookie", &jar)])));
    }
    assert!(w.sessions.len() <= 1);
    assert!(w.sessions.bytes() < 64 * 1024);
}

#[test]
fn a_chunk_flood_is_ignored_and_not_echoed() {
    let mut w = World::new();
    let flood: String = (0..3000)
        .map(|i| format!("_oauth2_proxy_{i}=x"))
        .collect::<Vec<_>>()
        .join("; ");
    let r = respond(w.decide(&get("/x", &[("cookie", &flood)])));
    assert_eq!(r.status, 302);
    let cleared = set_cookies(&r)
        .into_iter()
        .filter(|(n, _)| n.starts_with("_oauth2_proxy_") && n != "_oauth2_proxy_csrf")
        .count();
    assert_eq!(cleared, crate::session::cookie::MAX_CHUNKS);
}

#[test]
fn a_failed_clock_or_header_read_is_a_500_never_a_pass() {
    let mut w = World::new();
    let jar = logged_in(&mut w);
    w.config.skip_auth_routes = vec![crate::routing::routes::SkipRoute::parse("^/").unwrap()];
    w.now = 0;
    let r = respond(w.decide(&get("/x", &[("cookie", &jar)])));
    assert_eq!(
        r.status, 500,
        "a clock at 0 must not make the session valid"
    );
    w.now = NOW;
    assert_eq!(respond(w.decide(&Request::default())).status, 500);
    let no_path = Request {
        headers: vec![(":method".into(), "GET".into())].into(),
    };
    assert_eq!(respond(w.decide(&no_path)).status, 500);
}
