//! The filter's own endpoints and how it answers without a session: `/ping` and `/ready`
//! need no login and are never proxied; API-style requests get a 401, browsers a redirect to
//! the IdP; `/oauth2/userinfo`, `/oauth2/auth` and the `/oauth2/sign_in` page; `sign_out`
//! ends the session; `rd` on `/oauth2/start` and `sign_out` only ever leads to our own
//! origin or a `whitelist_domains` entry.
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e endpoints:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use serde_json::json;
use url::Url;

use crate::support::checks::{
    assert_401, assert_login_redirect, authz_endpoint, is_session_cookie_name,
    session_cookies_in_jar, API, SESSION,
};
use crate::support::http::{format_hops, origin_of, Browser, Hop};
use crate::support::stack::{App, Stack};

/// A5: /ping and /ready need no login; API-style requests get 401, not a redirect.
#[test]
fn a05_ping_ready_and_api_requests() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    let r = b.get(&st.url("/ping"));
    st.check(r.status == 200, || format!("GET /ping: {}", r.short()));
    st.check(rec.count() == 0, || {
        format!("/ping must be answered by the filter:\n{}", rec.summary())
    });
    let r = b.get_with(&st.url("/ping"), API);
    st.check(r.status == 200, || {
        format!("GET /ping (json): {}", r.short())
    });
    let r = b.get(&st.url("/ready"));
    st.check(r.status == 200, || format!("GET /ready: {}", r.short()));

    for (ctx, hs) in [
        (
            "Accept: application/json",
            vec![("Accept", "application/json")],
        ),
        (
            "X-Requested-With with Accept text/html",
            vec![("X-Requested-With", "XMLHttpRequest")],
        ),
        ("Accept: */*", vec![("Accept", "*/*")]),
    ] {
        for path in ["/", "/api/items?x=1"] {
            let r = b.get_with(&st.url(path), &hs);
            assert_401(&st, &r, &format!("GET {path} ({ctx}) without session"));
        }
        let r = b.send("POST", &st.url("/api/items"), &hs, Some(b"{}"));
        assert_401(&st, &r, &format!("POST /api/items ({ctx}) without session"));
    }
    // Without a session nothing reaches the app (/ping and /ready are answered by the filter).
    st.check(rec.count() == 0, || {
        format!(
            "unauthenticated requests reached the app:\n{}",
            rec.summary()
        )
    });
    // With a session the same API request goes through.
    st.login_ok(&mut b, "/", "john");
    let r = b.get_with(&st.url("/api/items?x=1"), API);
    st.check(
        r.status == 200 && r.json()["path"] == "/api/items?x=1",
        || format!("API request with session: {}", r.short()),
    );
    // Request bodies pass through intact.
    let body = br#"{"name":"widget","qty":3}"#;
    let r = b.send(
        "POST",
        &st.url("/api/items"),
        &[
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    );
    let last = rec.requests().pop();
    st.check(
        r.status == 200
            && last
                .as_ref()
                .map(|q| q.body == body && q.method == "POST")
                .unwrap_or(false),
        || {
            format!(
                "authenticated POST body did not reach the app intact: {}",
                r.short()
            )
        },
    );
}

/// A7: /oauth2/userinfo and /oauth2/auth.
#[test]
fn a07_userinfo_and_auth_endpoints() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    for p in ["/oauth2/userinfo", "/oauth2/auth"] {
        let r = b.get_with(&st.url(p), API);
        assert_401(&st, &r, &format!("{p} without session"));
        let r = b.get(&st.url(p));
        st.check(r.status == 401, || {
            format!(
                "{p} without session (browser Accept) must be 401: {}",
                r.short()
            )
        });
    }
    st.login_ok(&mut b, "/", "john");
    let n = rec.count();
    let r = b.get_with(&st.url("/oauth2/userinfo"), API);
    st.check(r.status == 200, || {
        format!("/oauth2/userinfo: {}", r.short())
    });
    let u = r.json();
    st.check(
        u["email"] == "john@example.com"
            && u["user"] == "john@example.com"
            && u["preferredUsername"] == "john"
            && u["groups"] == json!(["developers"]),
        || format!("/oauth2/userinfo body: {u}"),
    );
    let r = b.get_with(&st.url("/oauth2/auth"), API);
    st.check(r.status == 202, || {
        format!("/oauth2/auth with session: {}", r.short())
    });
    for (k, v) in [
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-preferred-username", "john"),
        ("x-auth-request-groups", "developers"),
    ] {
        st.check(r.header(k) == Some(v), || {
            format!(
                "/oauth2/auth response header {k} = {:?}, want {v}: {}",
                r.header(k),
                r.short()
            )
        });
    }
    st.check(rec.count() == n, || {
        format!(
            "/oauth2/* endpoints must not be proxied:\n{}",
            rec.summary()
        )
    });
    // The sign-in page.
    let mut anon = Browser::new();
    let r = anon.get(&st.url("/oauth2/sign_in"));
    st.check(
        r.status == 200 && r.header("content-type").unwrap_or("").contains("text/html"),
        || format!("/oauth2/sign_in: {}", r.short()),
    );
    let page = r.text();
    let has_start = crate::support::html::hrefs(&page)
        .iter()
        .any(|h| h.contains("/oauth2/start"))
        || crate::support::html::forms(&page)
            .iter()
            .any(|f| f.action.contains("/oauth2/start"));
    st.check(has_start, || {
        format!("/oauth2/sign_in has no link/form to /oauth2/start: {page}")
    });
}

/// A4: sign_out ends the session and only follows safe rd values.
#[test]
fn a04_sign_out() {
    // The `rd` rule on its own; RP-initiated logout is tests/e2e/lifecycle.rs's.
    let st = Stack::builder()
        .plugin("oidc_rp_initiated_logout", json!(false))
        .start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");

    let r = b.get(&st.url("/oauth2/sign_out?rd=%2Fafter%3Fx%3D1"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| l.as_str() == st.url("/after?x=1"))
                .unwrap_or(false),
        || format!("sign_out?rd=/after?x=1: {}", r.short()),
    );
    st.check(
        r.set_cookies()
            .iter()
            .any(|c| c.name == SESSION && c.is_deletion()),
        || format!("sign_out must expire {SESSION}: {}", r.short()),
    );
    st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
        "session still in jar after sign_out".into()
    });
    let r = b.get(&st.url("/"));
    assert_login_redirect(&st, &r, &authz, "GET / after sign_out");

    for (rd, ctx) in [
        ("https%3A%2F%2Fevil.example%2F", "absolute foreign URL"),
        ("%2F%2Fevil.example", "protocol-relative //evil.example"),
        ("%2F%5Cevil.example", "/\\evil.example"),
        ("https%3Aevil.example", "https:evil.example"),
    ] {
        st.login_ok(&mut b, "/", "john"); // IdP session still alive: no login form
        let r = b.get(&st.url(&format!("/oauth2/sign_out?rd={rd}")));
        let loc = r.location();
        st.check(r.status == 302, || {
            format!("sign_out rd={ctx}: {}", r.short())
        });
        st.check(
            loc.as_ref()
                .map(|l| origin_of(l) == st.origin() && l.path() == "/")
                .unwrap_or(false)
                && !r.header("location").unwrap_or("").contains("evil"),
            || {
                format!(
                    "sign_out with unsafe rd ({ctx}) must go to `/`: {}",
                    r.short()
                )
            },
        );
        st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
            format!("sign_out rd={ctx}: session kept")
        });
    }
    // No rd: back to "/".
    st.login_ok(&mut b, "/", "john");
    let r = b.get(&st.url("/oauth2/sign_out"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| l.as_str() == st.url("/"))
                .unwrap_or(false),
        || format!("sign_out without rd: {}", r.short()),
    );
}

/// A11: open-redirect attempts through `rd` end on our own origin.
#[test]
fn a11_open_redirects_are_neutralised() {
    // `rd` on its own: RP-initiated logout would send sign-out to the IdP first.
    let st = Stack::builder()
        .plugin("whitelist_domains", json!(["trusted.example"]))
        .plugin("oidc_rp_initiated_logout", json!(false))
        .start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john"); // IdP session for the rest
    let attempts = [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "///evil.example",
        "https:evil.example",
        "http://127.0.0.1.evil.example/",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "http://evil.example@127.0.0.1/",
        " //evil.example",
        "/\t/evil.example",
        "https://trusted.example.evil.example/",
    ];
    for rd in attempts {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let mut bb = b.clone();
        bb.jar.retain(|c| !is_session_cookie_name(&c.name)); // keep the IdP session only
        let (resp, hops) = bb.follow_get(&st.url(&format!("/oauth2/start?rd={enc}")));
        let after_cb: Vec<&Hop> = hops
            .iter()
            .skip_while(|h| !h.url.contains("/oauth2/callback"))
            .collect();
        st.check(!after_cb.is_empty(), || {
            format!(
                "rd={rd:?}: the flow never reached the callback:\n{}",
                format_hops(&hops)
            )
        });
        for h in &after_cb {
            if let Some(l) = &h.location {
                let abs = Url::parse(&h.url).unwrap().join(l).ok();
                // url::Url::join follows the WHATWG URL rules a browser applies to Location
                // (backslashes, tabs, scheme-relative forms), so this is where a browser goes.
                st.check(
                    abs.as_ref()
                        .map(|a| origin_of(a) == st.origin())
                        .unwrap_or(false),
                    || {
                        format!(
                            "rd={rd:?}: redirect off-site after the callback: {h}\n{}",
                            format_hops(&hops)
                        )
                    },
                );
            }
        }
        st.check(
            resp.status == 200 && origin_of(&Url::parse(&resp.url).unwrap()) == st.origin(),
            || {
                format!(
                    "rd={rd:?}: must end on our origin with 200:\n{}\nfinal: {}",
                    format_hops(&hops),
                    resp.short()
                )
            },
        );
    }
    // A whitelisted domain is honoured (sign_out), a look-alike is not.
    let r = b.get(&st.url("/oauth2/sign_out?rd=https%3A%2F%2Ftrusted.example%2Fbye"));
    st.check(
        r.status == 302 && r.header("location") == Some("https://trusted.example/bye"),
        || format!("sign_out to a whitelisted domain: {}", r.short()),
    );
    st.login_ok(&mut b, "/", "john");
    let r = b.get(&st.url("/oauth2/sign_out?rd=https%3A%2F%2Ftrusted.example.evil.example%2F"));
    st.check(
        r.status == 302 && !r.header("location").unwrap_or("").contains("evil"),
        || format!("sign_out to a look-alike domain: {}", r.short()),
    );
}
