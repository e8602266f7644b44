//! Which paths get past the gate without a session: path tricks around the unauthenticated
//! endpoints (`/ping`, `/ready`, `/oauth2/...`) never reach the app, and `skip_auth_routes`
//! let exactly their method and path through, without any client-supplied identity or our
//! session cookie.
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e routes:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use std::time::Duration;

use serde_json::json;

use crate::support::checks::{assert_401, IDENTITY_HEADERS, SESSION};
use crate::support::http::Browser;
use crate::support::stack::{App, Stack};

/// A15: path tricks around the unauthenticated endpoints never reach the app without a
/// session (Envoy normalises paths; /ping and /ready are answered, never proxied).
#[test]
fn a15_path_tricks_do_not_bypass_the_gate() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().unwrap();
    let mut seen = Vec::new();
    for target in [
        "/ping/../headers",
        "/ping/%2e%2e/headers",
        "/ready/..%2fheaders",
        "/ping%2f..%2fheaders",
        "/./ping/../headers",
        "/oauth2/callback/../../headers",
        "/oauth2/../headers",
        "/ping;/../headers",
        "/ping%00/../headers",
        "/PING",
        "/ping/",
        "/headers#/ping",
        "/headers?/ping",
    ] {
        let r = crate::support::http::raw_request_target(
            false,
            "GET",
            "127.0.0.1",
            st.listen_port,
            target,
            &st.url(target),
            &[("Accept".into(), "application/json".into())],
            None,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| st.fail(&format!("GET {target}: {e}")));
        seen.push(format!("{target} -> {}", r.status));
        st.check(r.status != 200 || !r.text().contains("\"host\""), || {
            format!("GET {target} without session was proxied: {}", r.short())
        });
        st.check(rec.count() == 0, || {
            format!(
                "GET {target} without session reached the app:\n{}",
                rec.summary()
            )
        });
    }
    eprintln!("a15 statuses: {}", seen.join("; "));
}

/// A16: skip_auth_routes let their method and path through without a login, and without
/// the client's identity headers, `Authorization` or our session cookie.
#[test]
fn a16_skip_auth_routes_pass_without_login_and_without_spoofed_identity() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("skip_auth_routes", json!(["GET=^/public/", "^/status$"]))
        .start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    b.set(&st.origin(), SESSION, "forged-session-value");
    let mut spoof: Vec<(&str, &str)> = IDENTITY_HEADERS
        .iter()
        .map(|n| (*n, "admin@evil.example"))
        .collect();
    spoof.push(("Authorization", "Bearer spoofed.jwt.value"));
    let r = b.get_with(&st.url("/public/app.css?v=2"), &spoof);
    st.check(r.status == 200, || {
        format!("a skipped route must reach the app: {}", r.short())
    });
    let seen = rec.requests();
    st.check(
        seen.len() == 1 && seen[0].target == "/public/app.css?v=2",
        || rec.summary(),
    );
    for name in IDENTITY_HEADERS.iter().chain(["authorization"].iter()) {
        st.check(seen[0].header(name).is_none(), || {
            format!(
                "{name} reached the app on a skipped route: {:?}",
                seen[0].headers
            )
        });
    }
    st.check(
        seen[0]
            .header("cookie")
            .is_none_or(|c| !c.contains(SESSION)),
        || format!("the session cookie reached the app: {:?}", seen[0].headers),
    );

    // The method is part of the rule, the query is not part of the path, and other paths
    // still need a session.
    let api = [("Accept", "application/json")];
    for (method, path) in [
        ("POST", "/public/app.css"),
        ("GET", "/private?x=/status"),
        ("GET", "/status/x"),
    ] {
        let r = Browser::new().send(method, &st.url(path), &api, None);
        assert_401(&st, &r, &format!("{method} {path}"));
    }
    let r = Browser::new().get_with(&st.url("/status"), &api);
    st.check(r.status == 200, || format!("GET /status: {}", r.short()));
    st.check(rec.count() == 2, || rec.summary());
}
