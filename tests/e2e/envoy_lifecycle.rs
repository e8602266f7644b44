//! Envoy's own lifecycle with the filter in it keeps users signed in: a hot restart
//! (`--restart-epoch`, same cookie secret) and a listener update carrying a new plugin
//! configuration (a file moved into the directory Envoy watches for its listener) keep
//! sessions and logins in flight, with no request failing meanwhile; a configuration with
//! a bad value is refused and the old one keeps serving; Envoy never restarts the Wasm VM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::checks::{is_session_cookie_name, session_cookies_set};
use crate::support::http::{raw_request, Browser, Response};
use crate::support::idp::counters;
use crate::support::stack::{App, Configs, Stack};

fn api_get(st: &Stack, path: &str, cookie: &str) -> Response {
    let mut hs = vec![("Accept".to_string(), "application/json".to_string())];
    if !cookie.is_empty() {
        hs.push(("Cookie".to_string(), cookie.to_string()));
    }
    raw_request("GET", &st.url(path), &hs, None, Duration::from_secs(20))
        .unwrap_or_else(|e| st.fail(&format!("GET {path}: {e}")))
}

fn session_of(st: &Stack, b: &Browser) -> String {
    let c: Vec<String> = b
        .cookies(&st.origin())
        .iter()
        .filter(|c| is_session_cookie_name(&c.name))
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    st.check(!c.is_empty(), || "the browser holds no session".into());
    c.join("; ")
}

fn reached_app_as_john(r: &Response) -> bool {
    r.status == 200
        && serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|h| h["x-forwarded-email"].as_str().map(str::to_string))
            .as_deref()
            == Some("john@example.com")
}

/// A login as john stopped before its callback: the browser holds the CSRF cookie, and
/// the returned URL finishes the login.
fn login_until_callback(st: &Stack) -> (Browser, String) {
    let mut b = Browser::new();
    b.pause_before = Some("/oauth2/callback".into());
    let (r, _) = st.login(&mut b, &st.url("/headers"), "john", "john");
    let callback = r
        .location()
        .filter(|l| l.path() == "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("no callback redirect: {}", r.short())));
    b.pause_before = None;
    (b, callback.to_string())
}

/// The login in flight finishes: its callback sets a session and lands at the app as john.
fn finish_login(st: &Stack, b: &mut Browser, callback: &str, ctx: &str) {
    let (r, hops) = b.follow_get(callback);
    st.check(reached_app_as_john(&r), || {
        format!(
            "{ctx}: the login started before must finish: {}\n{}",
            r.short(),
            crate::support::http::format_hops(&hops)
        )
    });
}

/// API requests with `cookie` on fresh connections, one every 20 ms, from another thread
/// while `during` runs; returns every answer's status (0: no answer).
fn traffic_during(st: &mut Stack, cookie: &str, during: impl FnOnce(&mut Stack)) -> Vec<u16> {
    let url = st.url("/headers");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let hs = vec![
                ("Accept".to_string(), "application/json".to_string()),
                ("Cookie".to_string(), cookie.to_string()),
            ];
            while !stop.load(Ordering::SeqCst) {
                let status = raw_request("GET", &url, &hs, None, Duration::from_secs(10))
                    .ok()
                    .filter(reached_app_as_john)
                    .map_or(0, |r| r.status);
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(status);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        during(st);
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::SeqCst);
    });
    seen.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// A hot restart (a new Envoy process at `--restart-epoch 1` with the same config and
/// cookie secret takes the sockets over, the old one drains and exits): a session made
/// before keeps reaching the app, every request sent during the handover does too, and a
/// login started on the old process finishes on the new one. The new process's Wasm VMs are
/// its own; Envoy reloads none.
#[test]
fn e01_hot_restart_keeps_sessions_and_logins_in_flight() {
    let mut st = Stack::builder().app(App::Recorder).start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/headers", "john");
    let cookie = session_of(&st, &b);
    let (mut pending, callback) = login_until_callback(&st);
    let old_pid = st.envoy.as_ref().map_or(0, |p| p.pid());

    let statuses = traffic_during(&mut st, &cookie, |st| st.hot_restart());
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "e01: {} requests during the hot restart, {failed} failed",
        statuses.len()
    );
    st.check(statuses.len() > 20 && failed == 0, || {
        format!(
            "{failed} of {} requests during the hot restart did not reach the app as john: \
             {statuses:?}",
            statuses.len()
        )
    });
    st.check(st.envoy.as_ref().map_or(0, |p| p.pid()) != old_pid, || {
        "the hot restart kept the old process".into()
    });
    let start = Instant::now();
    while !st.retired_gone() {
        if start.elapsed() > Duration::from_secs(20) {
            st.fail("the old epoch did not exit after its drain");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only the new epoch serves now.
    let r = api_get(&st, "/headers", &cookie);
    st.check(reached_app_as_john(&r), || {
        format!("the session after the old epoch exited: {}", r.short())
    });
    finish_login(&st, &mut pending, &callback, "hot restart");
    let vms = st.vm_stats();
    st.check(
        vms.reloads == 0 && vms.active >= st.concurrency as u64,
        || format!("the new epoch's Wasm VMs: {vms:?}"),
    );
    st.assert_vm_never_restarted(vms, Configs::Same, "after the hot restart");
}

/// The listener, read from a watched file, is replaced while Envoy runs (a file moved into
/// the directory, as a control plane or configuration management does), each time with a new
/// plugin configuration: a new public route takes effect, the session made before keeps
/// reaching the app with no new login and no call to the IdP, a login started before
/// finishes, and a cookie secret rolled in the same way (the old one in
/// `cookie_secret_previous`) keeps the session and re-seals it. A configuration with a bad
/// value is refused by the filter (its log names the key), Envoy rejects the update, and the
/// configuration before keeps serving. Envoy reloads no Wasm VM and runs as many as before.
#[test]
fn e02_listener_updates_keep_sessions_and_bad_config_is_refused() {
    let mut st = Stack::builder()
        .app(App::Recorder)
        .inline_secrets()
        .dynamic_listener()
        .start();
    let vms = st.vm_stats();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/headers", "john");
    let cookie = session_of(&st, &b);
    let (mut pending, callback) = login_until_callback(&st);
    let before = counters(&st);

    let r = api_get(&st, "/public", "");
    st.check(r.status == 401, || {
        format!("/public before the update: {}", r.short())
    });
    let mut cfg = st.plugin_config.clone();
    cfg["skip_auth_routes"] = json!(["GET=^/public$"]);
    let statuses = traffic_during(&mut st, &cookie, |st| {
        let accepted = st.update_listener(cfg.clone());
        st.check(accepted, || "Envoy refused a good listener update".into());
    });
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "e02: {} requests during the listener update, {failed} failed",
        statuses.len()
    );
    st.check(failed == 0, || {
        format!(
            "{failed} of {} requests during the update failed: {statuses:?}",
            statuses.len()
        )
    });
    let start = Instant::now();
    while api_get(&st, "/public", "").status != 200 {
        if start.elapsed() > Duration::from_secs(10) {
            st.fail("the new public route never took effect");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = api_get(&st, "/headers", &cookie);
    st.check(reached_app_as_john(&r), || {
        format!("the session after the update: {}", r.short())
    });
    finish_login(&st, &mut pending, &callback, "listener update");
    let after = counters(&st);
    st.check(
        after.discovery == before.discovery && after.jwks == before.jwks,
        || format!("the update made the filter call the IdP again: {before:?} then {after:?}"),
    );

    // A cookie secret rolled by a listener update.
    let old_secret = st.cookie_secret.clone();
    let mut rolled = st.plugin_config.clone();
    rolled["cookie_secret"] = json!(crate::support::random_cookie_secret());
    rolled["cookie_secret_previous"] = json!([old_secret]);
    let accepted = st.update_listener(rolled);
    st.check(accepted, || "Envoy refused the secret roll".into());
    let start = Instant::now();
    loop {
        let r = api_get(&st, "/headers", &cookie);
        st.check(reached_app_as_john(&r), || {
            format!("the session across the secret roll: {}", r.short())
        });
        if !session_cookies_set(&r).is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            st.fail("the rolled secret never re-sealed the session");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let rejected_before = st.stat("listener_manager.lds.update_rejected");
    let bad: [(&str, &str, Value); 2] = [
        (
            "a value that is not a duration",
            "cookie_expire",
            json!("forever"),
        ),
        (
            "a key the filter does not know",
            "cookie_secure_typo",
            json!(true),
        ),
    ];
    for (i, (name, key, value)) in bad.into_iter().enumerate() {
        let mut cfg = st.plugin_config.clone();
        cfg[key] = value;
        cfg["skip_auth_routes"] = json!(["GET=^/other$"]);
        let accepted = st.update_listener(cfg);
        st.check(!accepted, || {
            format!("Envoy took a configuration with {name}")
        });
        st.check(
            st.stat("listener_manager.lds.update_rejected") == rejected_before + i as u64 + 1,
            || format!("{name}: Envoy did not count the rejection"),
        );
        let log = st.envoy_log();
        st.check(
            log.lines()
                .any(|l| l.contains("config_rejected") && l.contains(key)),
            || format!("{name}: the filter's log does not name `{key}`"),
        );
        let r = api_get(&st, "/public", "");
        st.check(r.status == 200, || {
            format!(
                "{name}: the old configuration must keep serving /public: {}",
                r.short()
            )
        });
        let r = api_get(&st, "/other", "");
        st.check(r.status == 401, || {
            format!(
                "{name}: the refused configuration took effect: {}",
                r.short()
            )
        });
        let r = api_get(&st, "/headers", &cookie);
        st.check(reached_app_as_john(&r), || {
            format!(
                "{name}: the session under the old configuration: {}",
                r.short()
            )
        });
    }
    // Envoy builds a VM for each new plugin configuration it is given (`created` grows) but
    // restarts none and keeps as many alive.
    let now = st.vm_stats();
    st.check(now.reloads == 0 && now.active == vms.active, || {
        format!("Wasm VMs across the updates: {vms:?} then {now:?}")
    });
    st.assert_vm_never_restarted(vms, Configs::Updated { refused: 2 }, "listener updates");
}
