//! The session cookie: modified, truncated, foreign and expired cookies (and cookies sealed
//! under another `cookie_secret`) are no session; a big session is split into chunks and
//! stale chunks are cleared on sign-out and at the callback; `cookie_expire` is enforced from
//! the sealed cookie, `cookie_name` renames both cookies and the app never sees ours; a bad
//! `cookie_secret` never lets traffic through.
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e sessions:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use std::time::Duration;

use serde_json::json;

// The hop-chain variant, under the name these tests have always called it by.
use crate::support::checks::session_cookies_set_in_hops as session_cookies_set;
use crate::support::checks::{
    assert_401, assert_login_redirect, authz_endpoint, find_hop, header_str,
    session_cookies_in_jar, SESSION,
};
use crate::support::http::{format_hops, Browser, Response, SetCookie};
use crate::support::stack::{App, Stack};

/// A3: modified, truncated and foreign cookies are "no session".
#[test]
fn a03_tampered_or_foreign_cookies_are_no_session() {
    let mut st = Stack::builder().start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let good = b
        .cookie(&st.origin(), SESSION)
        .unwrap_or_else(|| st.fail("no session cookie"));
    st.check(good.len() > 40, || {
        format!("session cookie suspiciously short: {good:?}")
    });

    // Control: the untouched cookie works (so the checks below can fail).
    let probe = |st: &Stack, value: &str, ctx: &str, expect_ok: bool| {
        let cookie = format!("{SESSION}={value}");
        let mut fresh = Browser::new();
        let r = fresh.get_with(&st.url("/headers"), &[("Cookie", cookie.as_str())]);
        if expect_ok {
            st.check(r.status == 200, || {
                format!("{ctx}: expected 200, got {}", r.short())
            });
            return;
        }
        assert_login_redirect(st, &r, &authz, &format!("{ctx} (browser)"));
        let r = fresh.get_with(
            &st.url("/headers"),
            &[("Cookie", cookie.as_str()), ("Accept", "application/json")],
        );
        assert_401(st, &r, &format!("{ctx} (API)"));
    };
    probe(&st, &good, "untouched cookie", true);

    let mid = good.len() / 2;
    let c = good.as_bytes()[mid] as char;
    let repl = if c == 'A' { 'B' } else { 'A' };
    let flipped = format!("{}{}{}", &good[..mid], repl, &good[mid + 1..]);
    probe(
        &st,
        &flipped,
        "cookie with one character changed in the middle",
        false,
    );
    // Flip the last character too (the GCM tag lives there).
    let last = good.len() - 2;
    let c = good.as_bytes()[last] as char;
    let repl = if c == 'A' { 'B' } else { 'A' };
    let flipped_tail = format!("{}{}{}", &good[..last], repl, &good[last + 1..]);
    probe(
        &st,
        &flipped_tail,
        "cookie with a character near the end changed",
        false,
    );
    probe(&st, &good[..good.len() / 2], "truncated cookie", false);
    probe(
        &st,
        &good[..good.len() - 1],
        "cookie missing its last character",
        false,
    );
    probe(&st, "", "empty cookie", false);
    probe(&st, "garbage!!", "garbage cookie", false);

    // A cookie sealed under another cookie_secret: restart Envoy with a new secret.
    st.cookie_secret = crate::support::random_cookie_secret();
    st.restart_envoy();
    probe(
        &st,
        &good,
        "cookie sealed with a different cookie_secret",
        false,
    );
    // And the new instance still works normally.
    let mut b2 = Browser::new();
    st.login_ok(&mut b2, "/", "john");
}

/// A6: bigjohn's session is split into chunks; later a smaller session clears stale chunks.
#[test]
fn a06_big_session_is_chunked_and_stale_chunks_cleared() {
    let st = Stack::builder().start();
    let mut b = Browser::new();
    let (resp, hops) = st.login_ok(&mut b, "/headers", "bigjohn");
    let cb = find_hop(&hops, "/oauth2/callback").unwrap_or_else(|| st.fail("no callback hop"));
    let set = session_cookies_set(std::slice::from_ref(cb));
    let names: Vec<&str> = set.iter().map(|c| c.name.as_str()).collect();
    st.check(set.len() >= 2, || {
        format!("bigjohn's session must be chunked, callback set {names:?}: {cb}")
    });
    for (i, c) in set.iter().enumerate() {
        st.check(c.name == format!("{SESSION}_{i}"), || {
            format!(
                "chunk {i} is named {}, want {SESSION}_{i} ({names:?})",
                c.name
            )
        });
        st.check(c.raw.len() < 4096, || {
            format!(
                "chunk {} Set-Cookie is {} bytes (must be < 4096)",
                c.name,
                c.raw.len()
            )
        });
        st.check(c.http_only && c.path.as_deref() == Some("/"), || {
            format!("chunk attributes: {}", c.raw)
        });
    }
    st.check(!names.contains(&SESSION), || {
        format!("unchunked {SESSION} set alongside chunks: {names:?}")
    });

    let groups_want: Vec<String> = (0..150)
        .map(|i| format!("group-with-a-fairly-long-name-{i:03}"))
        .collect();
    let check_big = |r: &Response, ctx: &str| {
        st.check(r.status == 200, || format!("{ctx}: {}", r.short()));
        let h = r.json();
        st.check(
            header_str(&h, "x-forwarded-email").as_deref() == Some("bigjohn@example.com"),
            || {
                format!(
                    "{ctx}: x-forwarded-email = {:?}",
                    header_str(&h, "x-forwarded-email")
                )
            },
        );
        let g = header_str(&h, "x-forwarded-groups").unwrap_or_default();
        let got: Vec<String> = g.split(',').map(|s| s.trim().to_string()).collect();
        st.check(got == groups_want, || {
            format!(
                "{ctx}: x-forwarded-groups has {} entries: {}…",
                got.len(),
                &g[..g.len().min(200)]
            )
        });
        let ck = header_str(&h, "cookie").unwrap_or_default();
        st.check(!ck.contains(SESSION), || {
            format!(
                "{ctx}: session chunks leaked to the app: {}…",
                &ck[..ck.len().min(200)]
            )
        });
    };
    check_big(&resp, "landing after bigjohn's login");
    let r = b.get(&st.url("/headers"));
    check_big(&r, "next request with chunked session");

    // Signing out expires every chunk (checked on a copy of the browser).
    let mut so = b.clone();
    let r = so.get(&st.url("/oauth2/sign_out"));
    let expired: Vec<String> = r
        .set_cookies()
        .into_iter()
        .filter(|c| c.is_deletion())
        .map(|c| c.name)
        .collect();
    for c in &set {
        st.check(expired.contains(&c.name), || {
            format!(
                "sign_out must expire chunk {} (expired {expired:?}): {}",
                c.name,
                r.short()
            )
        });
    }
    st.check(session_cookies_in_jar(&so, &st.origin()).is_empty(), || {
        "chunks left in the jar after sign_out".into()
    });

    // Now john logs in in the same browser (new IdP login, explicit /oauth2/start since the
    // browser still holds bigjohn's session).
    st.forget_idp_session(&mut b);
    let (resp, hops) = st.login(
        &mut b,
        &st.url("/oauth2/start?rd=%2Fheaders"),
        "john",
        "john",
    );
    st.check(resp.status == 200 && resp.url == st.url("/headers"), || {
        format!(
            "john's login via /oauth2/start:\n{}\nfinal: {}",
            format_hops(&hops),
            resp.short()
        )
    });
    let jar = session_cookies_in_jar(&b, &st.origin());
    st.check(jar == vec![SESSION.to_string()], || {
        format!(
            "after john's login the jar must hold only {SESSION}, holds {jar:?}:\n{}",
            format_hops(&hops)
        )
    });
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com")
            && header_str(&h, "x-forwarded-groups").as_deref() == Some("developers"),
        || format!("after switching to john: {h}"),
    );

    // /oauth2/start already expired the chunks above. The callback must clean up too: a
    // browser that still sends stale chunks when it comes back from the IdP (e.g. another
    // tab stored them meanwhile) must end with only the new, unchunked cookie.
    st.forget_idp_session(&mut b);
    b.pause_before = Some("/oauth2/callback".into());
    let (at_idp, hops) = st.login(
        &mut b,
        &st.url("/oauth2/start?rd=%2Fheaders"),
        "john",
        "john",
    );
    b.pause_before = None;
    let cb_url = at_idp.location().unwrap_or_else(|| {
        st.fail(&format!(
            "no redirect to the callback:\n{}",
            format_hops(&hops)
        ))
    });
    for c in &set {
        b.set(&st.origin(), &c.name, &c.value); // bigjohn's chunks are back
    }
    let (resp, hops) = b.follow_get(cb_url.as_str());
    let cleared: Vec<String> = hops
        .first()
        .map(|h| {
            h.set_cookies
                .iter()
                .map(|s| SetCookie::parse(s))
                .filter(|c| c.is_deletion())
                .map(|c| c.name)
                .collect()
        })
        .unwrap_or_default();
    for c in &set {
        st.check(cleared.contains(&c.name), || {
            format!(
                "the callback must expire the stale chunk {} the browser sent (expired {cleared:?}):\n{}",
                c.name,
                format_hops(&hops)
            )
        });
    }
    let jar = session_cookies_in_jar(&b, &st.origin());
    st.check(
        resp.status == 200 && jar == vec![SESSION.to_string()],
        || {
            format!(
                "after a callback carrying stale chunks the jar holds {jar:?}:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("after the callback with stale chunks: {h}"),
    );
}

/// A13: session lifetime is enforced from the sealed cookie, not just by the browser;
/// custom cookie_name; skip_provider_button; unknown /oauth2/* paths.
#[test]
fn a13_session_expiry_and_cookie_settings() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("cookie_expire", json!("3s"))
        .plugin("cookie_name", json!("_wop"))
        .plugin("skip_provider_button", json!(true))
        .start();
    let authz = authz_endpoint(&st);
    let rec = st.recorder.as_ref().unwrap();
    let mut b = Browser::new();
    // skip_provider_button: /oauth2/sign_in goes straight to the IdP.
    let r = b.get(&st.url("/oauth2/sign_in?rd=%2Fx"));
    assert_login_redirect(&st, &r, &authz, "/oauth2/sign_in with skip_provider_button");
    st.check(r.set_cookie("_wop_csrf").is_some(), || {
        format!(
            "CSRF cookie must follow cookie_name (`_wop_csrf`): {}",
            r.short()
        )
    });
    let (_, hops) = st.login(&mut b, &st.url("/private"), "john", "john");
    let cb = find_hop(&hops, "/oauth2/callback").unwrap_or_else(|| st.fail("no callback"));
    let sess = cb
        .set_cookies
        .iter()
        .map(|s| SetCookie::parse(s))
        .find(|c| c.name == "_wop");
    let sess = sess.unwrap_or_else(|| st.fail(&format!("no `_wop` session cookie: {cb}")));
    st.check(sess.max_age == Some(3), || {
        format!("session Max-Age must be cookie_expire (3): {}", sess.raw)
    });
    // Our cookie is hidden from the app; one named like the default is not ours any more.
    let r = b.get_with(
        &st.url("/headers"),
        &[(
            "Cookie",
            &format!("_oauth2_proxy=foreign; _wop={}; a=b", sess.value),
        )],
    );
    st.check(r.status == 200, || {
        format!("GET /headers with session: {}", r.short())
    });
    let h = r.json();
    st.check(
        header_str(&h, "cookie").as_deref() == Some("_oauth2_proxy=foreign; a=b"),
        || format!("app Cookie header: {:?}", header_str(&h, "cookie")),
    );
    // Unknown endpoint under the prefix: answered by the filter, not proxied.
    let n = rec.count();
    let r = b.get(&st.url("/oauth2/nope"));
    st.check(r.status == 404 && rec.count() == n, || {
        format!("/oauth2/nope must be a local 404: {}", r.short())
    });
    // After cookie_expire, replaying the (browser-expired) cookie is no session.
    std::thread::sleep(Duration::from_millis(4200));
    let cookie = format!("_wop={}", sess.value);
    let mut fresh = Browser::new();
    let r = fresh.get_with(&st.url("/headers"), &[("Cookie", cookie.as_str())]);
    assert_login_redirect(&st, &r, &authz, "expired session replayed (browser)");
    let r = fresh.get_with(
        &st.url("/headers"),
        &[("Cookie", cookie.as_str()), ("Accept", "application/json")],
    );
    assert_401(&st, &r, "expired session replayed (API)");
}

/// A10: a bad cookie_secret never lets traffic through.
#[test]
fn a10_bad_cookie_secret_is_refused() {
    let bad = "tooShortSecret"; // 14 chars; base64 of 10 bytes: neither is 16/24/32 bytes
    let mut st = Stack::builder()
        .app(App::Recorder)
        .inline_secrets()
        .cookie_secret(bad)
        .start_no_envoy();
    match st.spawn_envoy_and_wait(Duration::from_secs(60)) {
        None => {
            st.fail("envoy neither exited nor became ready within 60s with a bad cookie_secret")
        }
        Some(Err(status)) => {
            eprintln!("a10: envoy refused to start ({status})");
            st.check(!status.success(), || {
                format!("envoy exited with {status} (must be non-zero)")
            });
        }
        Some(Ok(())) => {
            eprintln!("a10: envoy started; every request must be answered with 5xx");
            // Give the plugin a moment to (fail to) configure, then every request is 5xx.
            std::thread::sleep(Duration::from_millis(500));
            let mut b = Browser::new();
            for (path, hs) in [
                ("/", vec![]),
                ("/headers", vec![("Accept", "application/json")]),
                ("/oauth2/start?rd=%2F", vec![]),
                ("/oauth2/callback?code=x&state=y", vec![]),
                ("/ping", vec![]),
            ] {
                let r = b.get_with(&st.url(path), &hs);
                st.check(r.status >= 500, || {
                    format!(
                        "with a bad cookie_secret, GET {path} must be 5xx, got {}",
                        r.short()
                    )
                });
            }
        }
    }
    let rec = st.recorder.as_ref().expect("recorder");
    st.check(rec.count() == 0, || {
        format!("the app received requests:\n{}", rec.summary())
    });
    let log = st.envoy_log();
    st.check(log.contains("cookie_secret"), || {
        "envoy's log does not name `cookie_secret`".into()
    });
    st.check(!log.contains(bad), || {
        "envoy's log contains the secret value".into()
    });
    st.check(!log.contains(&st.client_secret), || {
        "envoy's log contains the client secret".into()
    });
}
