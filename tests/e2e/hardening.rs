//! The filter holding on its own: every stack here runs Envoy with its defaults
//! (`StackBuilder::envoy_defaults`: no `normalize_path`, no `merge_slashes`, escaped slashes
//! kept, headers with underscores allowed, as Istio's sidecars run), so nothing in front of
//! the filter cleans up what the client sends.
//!
//! - skip routes against the bypass corpus (`tests/corpora/skip-route-bypasses.txt`),
//! - identity headers in every spelling (`tests/corpora/identity-header-spellings.txt`),
//! - a flood of session chunk cookies.
//!
//! Same environment as the e2e suite (WOP_ENVOY, WOP_WASM, WOP_ROOT):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e hardening:: -- --test-threads 2
//! ```

use std::time::Instant;

use serde_json::json;

use crate::support::checks::{
    assert_gate_401, assert_login_redirect, authz_endpoint, header_str, is_gate_401,
    is_session_cookie_name, raw_headers, send_target, API, CSRF, IDENTITY_HEADERS, SESSION,
};
use crate::support::corpus::{app_view, lines};
use crate::support::http::{Browser, Response, BROWSER_ACCEPT};
use crate::support::jwt;
use crate::support::stack::{App, Stack};
use crate::support::upstream::Recorder;

fn recorder(st: &Stack) -> &Recorder {
    st.recorder
        .as_ref()
        .unwrap_or_else(|| st.fail("no recorder"))
}

/// A request Envoy answered itself before the filter ran (a malformed request line, an
/// `https` URI on a plain connection, HTTP/1.0): a 4xx without the `Cache-Control: no-store`
/// the filter puts on every answer of its own.
fn is_envoy_refusal(r: &Response) -> bool {
    (400..500).contains(&r.status) && r.header("cache-control").is_none() && !is_gate_401(r)
}

/// Envoy with its own defaults in front of the filter, `GET=^/public/` as the skip route.
fn public_skip_stack() -> Stack {
    Stack::builder()
        .envoy_defaults()
        .app(App::Recorder)
        .plugin("skip_auth_routes", json!(["GET=^/public/"]))
        .start()
}

// ================================================================ route normalization

/// Every line of the bypass corpus, as the raw request-target of an API client without a
/// session, against `skip_auth_routes: ["GET=^/public/"]`: whatever the app receives is under
/// `/public/` however carelessly it reads the path, and every line that reads as `/public`
/// but resolves elsewhere is refused. Most lines must get as far as the filter (its 401), or
/// the test would only be testing Envoy's parser.
#[test]
fn h01_skip_routes_only_on_canonical_paths() {
    let st = public_skip_stack();
    let rec = recorder(&st);
    let started = Instant::now();

    // Control: a plain public path is skipped, query and all.
    for target in ["/public/a.css", "/public/js/app.js?v=1&x=/../admin"] {
        let r = send_target(&st, "GET", target, API)
            .unwrap_or_else(|e| st.fail(&format!("GET {target}: {e}")));
        let last = rec.requests().pop();
        st.check(
            r.status == 200 && last.as_ref().is_some_and(|q| q.target == target),
            || format!("GET {target} must reach the app: {}", r.short()),
        );
    }
    let controls = rec.count();

    let lines = lines("skip-route-bypasses.txt");
    st.check(lines.len() >= 180, || {
        format!("only {} corpus lines", lines.len())
    });
    let (mut at_gate, mut proxied, mut bypass_lines) = (0, 0, 0);
    let mut by_envoy = Vec::new();
    let (mut other, mut skipped) = (Vec::new(), Vec::new());
    let mut outcomes = Vec::new();
    for line in &lines {
        let target = line.clone();
        let before = rec.count();
        let result = send_target(&st, "GET", &target, API);
        let reached_app = rec.count() - before;
        let outcome = match &result {
            Ok(r) if is_gate_401(r) => {
                at_gate += 1;
                "401".to_string()
            }
            Ok(r) if is_envoy_refusal(r) && reached_app == 0 => {
                by_envoy.push(format!("{line} ({})", r.status));
                format!("envoy {}", r.status)
            }
            Ok(r) if r.status == 200 && reached_app == 1 => {
                proxied += 1;
                skipped.push(line.clone());
                "app".to_string()
            }
            Ok(r) => {
                other.push(format!("{line} -> {}", r.short()));
                format!("{}", r.status)
            }
            Err(e) => {
                other.push(format!("{line} -> {e}"));
                "no answer".to_string()
            }
        };
        outcomes.push(format!("{line} -> {outcome}"));

        // Reads as /public but is somewhere else for an app: refused, never proxied.
        let raw_path = target.split('?').next().unwrap_or_default();
        if raw_path.starts_with("/public") && !app_view(&target).starts_with("/public/") {
            bypass_lines += 1;
            let refused = result
                .as_ref()
                .is_ok_and(|r| is_gate_401(r) || is_envoy_refusal(r));
            st.check(refused && reached_app == 0, || {
                format!(
                    "bypass line {line:?} was not refused (app got {reached_app}): {}",
                    result
                        .as_ref()
                        .map_or_else(|e| e.to_string(), |r| r.short())
                )
            });
        }
    }

    // The invariant, on what the app actually received.
    for q in rec.requests() {
        let seen = app_view(&q.target);
        st.check(
            q.target.starts_with("/public/") && seen.starts_with("/public/"),
            || {
                format!(
                    "the app received {:?} without a session, which reads as {seen:?}",
                    q.target
                )
            },
        );
    }
    eprintln!(
        "h01: {} lines in {:?}: {at_gate} refused by the filter (401), {} by Envoy itself \
         {by_envoy:?}, {proxied} skipped to the app ({skipped:?}), {} other; {bypass_lines} \
         lines read as /public and resolve elsewhere, all refused",
        lines.len(),
        started.elapsed(),
        by_envoy.len(),
        other.len()
    );
    st.check(other.is_empty(), || {
        format!("unexpected answers:\n{}", other.join("\n"))
    });
    st.check(at_gate >= 100, || {
        format!(
            "only {at_gate} lines reached the filter; the rest proves nothing:\n{}",
            outcomes.join("\n")
        )
    });
    st.check(bypass_lines >= 100, || {
        format!("only {bypass_lines} genuine bypass lines")
    });
    st.check(rec.count() == controls + proxied, || rec.summary());
}

// ==================================================================== header spellings

/// Every header the filter owns: client copies must never reach the app. The identity
/// headers, and those it sets or strips for the upstream beside them.
fn owned() -> impl Iterator<Item = &'static str> {
    IDENTITY_HEADERS
        .iter()
        .copied()
        .chain(["authorization", "gap-auth", "gap-signature"])
}

/// The owned header an app server could read `name` as (case folded, every character that
/// is not a letter or digit read as `-`, as CGI-style servers and nginx do).
fn owned_as(name: &str) -> Option<&'static str> {
    let folded: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    owned().find(|o| *o == folded)
}

/// Envoy refuses a request with more than 100 headers by default.
const NAMES_PER_REQUEST: usize = 40;

/// Every spelling in the corpus with a forged value, (a) on john's authenticated requests
/// and (b) on a skipped route without a session: no forged value arrives under any name,
/// and in (a) each header the gate sets arrives once, under its own name, with john's value.
/// Then the second wall: with the template's Envoy settings, an underscore header is a 400.
#[test]
fn h02_identity_headers_in_every_spelling() {
    let st = public_skip_stack();
    let rec = recorder(&st);
    let names = lines("identity-header-spellings.txt");
    let names: Vec<&str> = names.iter().map(|n| n.trim()).collect();
    st.check(names.len() >= 100, || {
        format!("only {} header spellings", names.len())
    });
    for n in &names {
        st.check(owned_as(n).is_some(), || {
            format!("corpus name {n:?} is not a spelling of an owned header")
        });
    }
    let mut john = Browser::new();
    st.login_ok(&mut john, "/", "john");
    let john_values = [
        ("x-forwarded-user", "john@example.com"),
        ("x-forwarded-email", "john@example.com"),
        ("x-forwarded-preferred-username", "john"),
        ("x-forwarded-groups", "developers"),
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-preferred-username", "john"),
        ("x-auth-request-groups", "developers"),
    ];

    let (mut sent, mut requests) = (0, 0);
    for (chunk_no, chunk) in names.chunks(NAMES_PER_REQUEST).enumerate() {
        let forged: Vec<(String, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    format!("forged-{chunk_no}-{i}-evil@evil.example"),
                )
            })
            .collect();
        let headers: Vec<(&str, &str)> = forged
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        sent += chunk.len();

        // (a) john, authenticated, on the echo endpoint.
        let mut a = headers.clone();
        a.push(("Accept", "application/json"));
        let r = john.get_with(&st.url("/headers"), &a);
        st.check(r.status == 200, || {
            format!("authenticated GET /headers with {chunk:?}: {}", r.short())
        });
        let got = raw_headers(&r.json());
        // (b) no session, a skipped route.
        let mut b = headers.clone();
        b.push(("Accept", "application/json"));
        let before = rec.count();
        let r = send_target(&st, "GET", "/public/x", &b)
            .unwrap_or_else(|e| st.fail(&format!("GET /public/x: {e}")));
        st.check(r.status == 200 && rec.count() == before + 1, || {
            format!("skipped GET /public/x with {chunk:?}: {}", r.short())
        });
        let skipped = rec.requests().pop().map(|q| q.headers).unwrap_or_default();
        requests += 2;

        for (case, got) in [("authenticated", &got), ("skipped route", &skipped)] {
            for (n, v) in got {
                st.check(!v.contains("forged-"), || {
                    format!("{case}: a forged value reached the app as {n}: {v}")
                });
                if let Some(owned) = owned_as(n) {
                    st.check(case == "authenticated" && n == owned, || {
                        format!("{case}: the app received {n}: {v}")
                    });
                }
            }
        }
        for owned in owned() {
            let copies: Vec<&String> = got
                .iter()
                .filter(|(n, _)| owned_as(n) == Some(owned))
                .map(|(_, v)| v)
                .collect();
            let want = john_values
                .iter()
                .find(|(k, _)| *k == owned)
                .map(|(_, v)| *v);
            let ok = match owned {
                // Set from the session (pass_access_token, pass_authorization_header).
                "x-forwarded-access-token" | "x-auth-request-access-token" => {
                    copies.len() == 1 && !copies[0].is_empty()
                }
                "authorization" => {
                    copies.len() == 1
                        && copies[0]
                            .strip_prefix("Bearer ")
                            .and_then(jwt::payload)
                            .is_some_and(|c| c["email"] == "john@example.com")
                }
                "gap-auth" | "gap-signature" => copies.is_empty(),
                _ => copies.len() == 1 && Some(copies[0].as_str()) == want,
            };
            st.check(ok, || {
                format!("authenticated: the app got {owned} = {copies:?}, want {want:?} once")
            });
        }
    }
    eprintln!("h02: {sent} header spellings in {requests} requests, none reached the app");

    // The template's Envoy settings refuse underscore headers before the filter runs.
    let walled = Stack::builder()
        .app(App::Recorder)
        .plugin("skip_auth_routes", json!(["GET=^/public/"]))
        .start();
    let rec = recorder(&walled);
    let r = send_target(&walled, "GET", "/public/x", API)
        .unwrap_or_else(|e| walled.fail(&format!("GET /public/x: {e}")));
    walled.check(r.status == 200 && rec.count() == 1, || {
        format!("control GET /public/x: {}", r.short())
    });
    for name in ["X_Forwarded_Email", "x-auth-request_user"] {
        let r = send_target(
            &walled,
            "GET",
            "/public/x",
            &[
                (name, "forged@evil.example"),
                ("Accept", "application/json"),
            ],
        )
        .unwrap_or_else(|e| walled.fail(&format!("GET /public/x with {name}: {e}")));
        walled.check(
            r.status == 400 && !is_gate_401(&r) && rec.count() == 1,
            || format!("{name} must be refused by Envoy with 400: {}", r.short()),
        );
    }
}

// ================================================================== cookie chunk flood

/// `_oauth2_proxy_0` … `_oauth2_proxy_1999`: the normal unauthenticated answer, a login
/// redirect that clears at most the 1 + 16 names we could have written, and an authenticated
/// request that still works with none of our cookies reaching the app.
#[test]
fn h03_cookie_chunk_flood() {
    let st = Stack::builder().envoy_defaults().app(App::Recorder).start();
    let rec = recorder(&st);
    let authz = authz_endpoint(&st);
    let junk: Vec<String> = (0..2000)
        .map(|i| format!("{SESSION}_{i}=j{}", i % 10))
        .collect();
    // Several Cookie headers of ~11 KB each, well under Envoy's 96 KB.
    let cookie_headers: Vec<String> = junk.chunks(500).map(|c| c.join("; ")).collect();
    let total: usize = cookie_headers.iter().map(String::len).sum();
    st.check(total < 60 * 1024, || format!("{total} bytes of cookies"));
    let with = |extra: &[(&'static str, &str)], cookies: &[String]| -> Vec<(String, String)> {
        let mut hs: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        hs.extend(cookies.iter().map(|c| ("Cookie".to_string(), c.clone())));
        hs
    };

    // An API client: the bare 401.
    let started = Instant::now();
    let hs = with(&[("Accept", "application/json")], &cookie_headers);
    let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = send_target(&st, "GET", "/private", &hs)
        .unwrap_or_else(|e| st.fail(&format!("flooded API request: {e}")));
    let api_time = started.elapsed();
    assert_gate_401(&st, &r, "API client with 2000 chunk cookies");

    // A browser: a login redirect, clearing only names we could have written.
    let hs = with(&[("Accept", BROWSER_ACCEPT)], &cookie_headers);
    let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = send_target(&st, "GET", "/private", &hs)
        .unwrap_or_else(|e| st.fail(&format!("flooded browser request: {e}")));
    assert_login_redirect(&st, &r, &authz, "browser with 2000 chunk cookies");
    let sets = r.set_cookies();
    let session_sets: Vec<_> = sets
        .iter()
        .filter(|c| is_session_cookie_name(&c.name))
        .collect();
    let writable = |n: &str| {
        n == SESSION
            || n.strip_prefix("_oauth2_proxy_")
                .and_then(|d| d.parse::<usize>().ok())
                .is_some_and(|i| i < 16 && n == format!("{SESSION}_{i}"))
    };
    st.check(
        session_sets.len() <= 17
            && session_sets
                .iter()
                .all(|c| writable(&c.name) && c.is_deletion()),
        || {
            format!(
                "{} session Set-Cookies (at most 17 deletions of names we write): {:?}",
                session_sets.len(),
                session_sets.iter().map(|c| &c.name).collect::<Vec<_>>()
            )
        },
    );
    let csrf: Vec<_> = sets.iter().filter(|c| c.name == CSRF).collect();
    st.check(
        csrf.len() == 1 && !csrf[0].is_deletion() && sets.len() == session_sets.len() + 1,
        || format!("want one CSRF cookie and nothing else: {}", r.short()),
    );
    st.check(rec.count() == 0, || {
        format!("a flooded request reached the app:\n{}", rec.summary())
    });

    // john's real cookie among 2000 junk chunks: it wins, and none of ours reach the app.
    let mut john = Browser::new();
    st.login_ok(&mut john, "/", "john");
    let real = john
        .cookie(&st.origin(), SESSION)
        .unwrap_or_else(|| st.fail("john's session is not one unchunked cookie"));
    let mut cookies = cookie_headers.clone();
    if let Some(last) = cookies.last_mut() {
        last.push_str(&format!("; theme=dark; {SESSION}={real}; lang=en"));
    }
    let hs = with(&[("Accept", "application/json")], &cookies);
    let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = send_target(&st, "GET", "/headers", &hs)
        .unwrap_or_else(|e| st.fail(&format!("flooded authenticated request: {e}")));
    st.check(r.status == 200, || {
        format!("john with 2000 junk chunks: {}", r.short())
    });
    let h = r.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("john with 2000 junk chunks is not john: {h}"),
    );
    let app_cookies: Vec<String> = raw_headers(&h)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v)
        .collect();
    st.check(
        app_cookies.len() == 1 && app_cookies[0] == "theme=dark; lang=en",
        || format!("the app's cookies: {app_cookies:?}"),
    );
    eprintln!(
        "h03: {} bytes of junk chunk cookies; API request answered in {api_time:?}; the login \
         redirect set {} cookies: {} session deletions and the CSRF cookie",
        total,
        sets.len(),
        session_sets.len()
    );
}
