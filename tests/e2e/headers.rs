//! Identity headers: after a login the app receives the filter's identity headers exactly
//! once, every client-supplied copy of them (any spelling, and `Authorization`) is removed,
//! also when the options that set them are off, and without a session spoofed headers get
//! nowhere; ID token claims carrying CR/LF cannot forge upstream headers (against the
//! misbehaving OP of `tests/support/bad_op.rs`).
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e headers:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use serde_json::json;

use crate::support::bad_op::{bad_op_login, bad_op_stack, BadOp, Scenario};
use crate::support::checks::{
    assert_401, assert_login_redirect, authz_endpoint, header_str, raw_count, IDENTITY_HEADERS,
};
use crate::support::http::{format_hops, Browser};
use crate::support::stack::{App, Stack};

/// A2: spoofed identity headers never reach the app.
#[test]
fn a02_spoofed_identity_headers_never_reach_the_app() {
    let st = Stack::builder().app(App::Recorder).start();
    let authz = authz_endpoint(&st);
    let rec = st.recorder.as_ref().expect("recorder");

    // Unauthenticated, with spoofed headers: browser -> login redirect, API -> 401, and the
    // app receives nothing.
    let spoof_once: Vec<(&str, &str)> = vec![
        ("X-Forwarded-Email", "evil@evil.example"),
        ("X-Forwarded-User", "evil"),
        ("X-Auth-Request-Email", "evil@evil.example"),
        ("X-Forwarded-Groups", "admins"),
    ];
    let mut anon = Browser::new();
    let r = anon.get_with(&st.url("/headers"), &spoof_once);
    assert_login_redirect(
        &st,
        &r,
        &authz,
        "unauthenticated browser request with spoofed headers",
    );
    let mut hs = spoof_once.clone();
    hs.push(("Accept", "application/json"));
    let r = anon.get_with(&st.url("/headers"), &hs);
    assert_401(&st, &r, "unauthenticated API request with spoofed headers");
    let r = anon.get_with(&st.url("/ping"), &spoof_once);
    st.check(r.status == 200, || format!("/ping: {}", r.short()));
    st.check(rec.count() == 0, || {
        format!(
            "the app received unauthenticated requests:\n{}",
            rec.summary()
        )
    });

    // Authenticated: every spoofed copy is removed, the real values set once.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let mut spoof: Vec<(String, String)> = Vec::new();
    for (i, name) in IDENTITY_HEADERS.iter().enumerate() {
        let upper = name.to_ascii_uppercase();
        let mixed: String = name
            .chars()
            .enumerate()
            .map(|(j, c)| {
                if (i + j) % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        spoof.push((upper, "evil@evil.example".into()));
        spoof.push((mixed, "spoofed-value".into()));
        spoof.push((name.to_string(), "admins,root".into()));
    }
    spoof.push(("Authorization".into(), "Bearer spoofed.jwt.value".into()));
    let refs: Vec<(&str, &str)> = spoof
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.get_with(&st.url("/headers"), &refs);
    st.check(r.status == 200, || {
        format!(
            "authenticated GET /headers with spoofed headers: {}",
            r.short()
        )
    });
    let h = r.json();
    let want = [
        ("x-forwarded-user", Some("john@example.com")),
        ("x-forwarded-email", Some("john@example.com")),
        ("x-forwarded-preferred-username", Some("john")),
        ("x-forwarded-groups", Some("developers")),
        ("x-auth-request-user", Some("john@example.com")),
        ("x-auth-request-email", Some("john@example.com")),
        ("x-auth-request-preferred-username", Some("john")),
        ("x-auth-request-groups", Some("developers")),
    ];
    for (k, v) in want {
        st.check(
            header_str(&h, k).as_deref() == v && raw_count(&h, k) == 1,
            || {
                format!(
                    "spoofed {k}: app saw {:?} ({} copies), want {v:?}",
                    header_str(&h, k),
                    raw_count(&h, k)
                )
            },
        );
    }
    for k in ["x-forwarded-access-token", "authorization"] {
        let v = header_str(&h, k).unwrap_or_default();
        st.check(
            raw_count(&h, k) == 1 && !v.contains("evil") && !v.contains("spoofed"),
            || format!("spoofed {k}: app saw {v:?} ({} copies)", raw_count(&h, k)),
        );
    }
    // x-auth-request-access-token is not configured here (oauth2-proxy sets it only with
    // pass_access_token + set_xauthrequest); whatever the app sees must not be spoofed.
    let dump = h.to_string();
    st.check(
        !dump.contains("evil") && !dump.contains("spoofed") && !dump.contains("admins"),
        || format!("a spoofed value reached the app: {dump}"),
    );
}

/// A2b: the client's copies are removed even for header groups that are switched off.
#[test]
fn a02b_spoofed_headers_removed_when_options_off() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("set_xauthrequest", json!(false))
        .plugin("pass_access_token", json!(false))
        .plugin("pass_authorization_header", json!(false))
        .plugin("pass_user_headers", json!(false))
        .start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let mut spoof: Vec<(String, String)> = Vec::new();
    for name in IDENTITY_HEADERS {
        spoof.push((name.to_ascii_uppercase(), "evil@evil.example".into()));
        spoof.push((name.to_string(), "spoofed-value".into()));
    }
    spoof.push(("Authorization".into(), "Bearer spoofed.jwt.value".into()));
    let refs: Vec<(&str, &str)> = spoof
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.get_with(&st.url("/headers"), &refs);
    st.check(r.status == 200, || format!("GET /headers: {}", r.short()));
    let h = r.json();
    for k in IDENTITY_HEADERS.iter().chain(["authorization"].iter()) {
        st.check(raw_count(&h, k) == 0, || {
            format!(
                "with every header option off, the app still received {k}: {:?}",
                header_str(&h, k)
            )
        });
    }
}

/// B4: claims carrying CR/LF or other control characters cannot forge upstream headers.
#[test]
fn b04_claims_cannot_inject_headers() {
    let op = BadOp::start(crate::support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    op.set_extra_claims(json!({
        "preferred_username": "alice\r\nx-injected: 1",
        "groups": ["g1", "g2\r\nx-injected-too: 1", "g3\nx-lf: 1"],
        "sub": "alice\r\nx-injected-sub: 1",
    }));
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(&st, &mut b);
    st.check(resp.status == 200, || {
        format!(
            "login with control characters in claims:\n{}\nfinal: {}",
            format_hops(&hops),
            resp.short()
        )
    });
    let rec = st.recorder.as_ref().unwrap();
    let last = rec.requests().pop().unwrap();
    for (k, v) in &last.headers {
        st.check(
            !k.to_ascii_lowercase().starts_with("x-injected") && !k.eq_ignore_ascii_case("x-lf"),
            || format!("a claim injected header {k}: {v}"),
        );
        st.check(!v.contains('\r') && !v.contains('\n'), || {
            format!("control characters reached the app in {k}: {v:?}")
        });
    }
    st.check(
        last.header("x-forwarded-email") == Some("alice@example.com"),
        || format!("{:?}", last.headers),
    );
}
