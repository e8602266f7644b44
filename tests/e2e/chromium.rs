//! Real-browser end-to-end tests: Debian's Chromium (headless), driven by playwright-core
//! (`tests/browser/rp_logout.mjs`), against real Envoy + the optimized filter + the
//! oidc-provider IdP + the demo app.
//!
//! Needs what `just setup` installs: `/usr/bin/chromium` (Debian's `chromium`) and
//! `tests/browser/node_modules` (`npm ci` in tests/browser). A missing one FAILS the tests.
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e chromium:: -- --test-threads 1
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::proc::Proc;
use crate::support::stack::Stack;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The script's own steps time out after 15 s each; this bounds a hung browser.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// `tests/browser/` under WOP_ROOT (or this crate), with its prerequisites checked: a
/// missing Chromium or node_modules fails the test, it never passes silently.
fn browser_dir() -> PathBuf {
    let root = std::env::var_os("WOP_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let dir = root.join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium: {CHROMIUM} is missing: run `just setup` (installs Debian's chromium)"
    );
    let pw = dir.join("node_modules/playwright-core/package.json");
    assert!(
        pw.exists(),
        "chromium: {} is missing: run `just setup` (npm ci in tests/browser)",
        pw.display()
    );
    dir
}

/// The stack every scenario runs against: `/signed-out` is public (where the IdP sends
/// the browser back after sign-out), plus `extra` plugin options.
fn stack(extra: &[(&str, Value)]) -> Stack {
    let mut b = Stack::builder().plugin("skip_auth_routes", json!(["GET=^/signed-out$"]));
    for (k, v) in extra {
        b = b.plugin(k, v.clone());
    }
    b.start()
}

/// Runs `rp_logout.mjs --scenario <scenario>` (and `extra` arguments) against the stack;
/// returns its JSON result. Fails (with the script's output and the stack's logs) unless it
/// reports success.
fn run_scenario(st: &Stack, dir: &Path, scenario: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("rp_logout.mjs"))
        .args(["--app", &st.base(), "--idp", &st.issuer()])
        .args(["--scenario", scenario, "--chromium", CHROMIUM])
        .args(extra)
        .current_dir(dir);
    let started = Instant::now();
    let mut p = Proc::spawn(&format!("browser-{scenario}"), cmd, &st.dir.path);
    let status = loop {
        if let Some(s) = p.exited() {
            break Some(s);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            p.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = p.log_text();
    let result = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("ok").is_some());
    let ok = status.is_some_and(|s| s.success())
        && result.as_ref().and_then(|v| v["ok"].as_bool()) == Some(true);
    if !ok {
        let status = match status {
            Some(s) => s.to_string(),
            None => format!("killed after {SCRIPT_TIMEOUT:?}"),
        };
        let error = result
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .unwrap_or("no JSON result line");
        st.fail(&format!(
            "chromium scenario {scenario} failed ({status}): {error}\n\
             ----- rp_logout.mjs output ({}) -----\n{out}",
            p.log.display()
        ));
    }
    let result = result.unwrap_or(Value::Null);
    eprintln!(
        "chromium scenario {scenario}: ok in {:.1}s: {result}",
        started.elapsed().as_secs_f64()
    );
    result
}

/// C1: sign in through the IdP's login form in a real browser, sign out (the filter sends
/// the browser to the IdP's RP-initiated logout, the user confirms, the IdP sends it back
/// to `/signed-out`), and `/` asks for the IdP's login form again: the IdP session ended.
#[test]
fn c01_login_then_rp_initiated_logout_ends_the_idp_session() {
    let dir = browser_dir();
    let st = stack(&[]);
    let r = run_scenario(&st, &dir, "logout", &[]);
    let final_url = r["scenarios"]["logout"]["final_url"].as_str().unwrap_or("");
    st.check(final_url.starts_with(&st.issuer()), || {
        format!("logout: expected to end on the IdP's login form, ended at {final_url}: {r}")
    });
    // The filter logged the sign-out.
    let envoy = st.envoy_log();
    st.check(envoy.contains("sign_out"), || {
        "logout: Envoy logged no sign_out line".into()
    });
}

/// C2: two tabs start a login at the same time (both reach the IdP's login form), then
/// tab 2 signs in before tab 1; with `cookie_csrf_per_request` both end on the app,
/// logged in.
#[test]
fn c02_two_tabs_concurrent_logins_with_csrf_per_request() {
    let dir = browser_dir();
    let st = stack(&[("cookie_csrf_per_request", json!(true))]);
    let r = run_scenario(&st, &dir, "two-tabs", &[]);
    let urls = &r["scenarios"]["two-tabs"]["final_urls"];
    st.check(
        urls.as_array().is_some_and(|a| {
            a.len() == 2 && a.iter().all(|u| u.as_str() == Some(st.url("/").as_str()))
        }),
        || format!("two-tabs: both tabs must end on {}: {r}", st.url("/")),
    );
}

/// A 96x32 PNG: the logo of the branding test, inlined as oauth2-proxy's
/// `custom_sign_in_logo` takes it here (a data URL).
const LOGO_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAGAAAAAgCAIAAABiouoDAAAAXElEQVR42u3ZoQ0AIAwEwO5BUCzAJOwv2QQ8AkUIIfd5WXXyG0O2CQSAAF0D6i0dKSBAgAC9BZRLXfr+DSBAgAABAgQIECBAgAABAgQIECCDGSBAgDwOAQEC9FEmWRxANl3629MAAAAASUVORK5CYII=";
const BANNER: &str = "ACME Corp staff only <use your work account>";
const FOOTER: &str = "ACME IT help desk, extension 1234";

/// Where the branding test's screenshots go: `target/tmp/artifacts/pages/`.
fn shots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts/pages")
}

/// C3 (issue 19): the pages with a company's branding, on a phone. The sign-in page shows the
/// logo (a data URL), banner, footer and `provider_display_name`, all escaped; an error page
/// and the 403 page show Envoy's `x-request-id`; the 403 page names the rule that refused
/// (`email_domains`) without its contents; no page needs sideways scrolling at 390 px.
/// Screenshots: `target/tmp/artifacts/pages/{sign-in,error,forbidden}.png`.
#[test]
fn c03_branded_pages_on_a_phone() {
    let dir = browser_dir();
    let st = stack(&[
        (
            "custom_sign_in_logo",
            json!(format!("data:image/png;base64,{LOGO_PNG}")),
        ),
        ("banner", json!(BANNER)),
        ("footer", json!(FOOTER)),
        ("provider_display_name", json!("ACME SSO")),
        ("email_domains", json!(["example.com"])),
    ]);
    let shots = shots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let shots_arg = shots.to_string_lossy().into_owned();
    let extra = [
        "--user",
        "jane",
        "--password",
        "jane",
        "--shots",
        &shots_arg,
    ];
    let r = run_scenario(&st, &dir, "pages", &extra);
    let pages = &r["scenarios"]["pages"];
    for (name, status) in [("sign_in", 200), ("error", 400), ("forbidden", 403)] {
        let p = &pages[name];
        let text = p["text"].as_str().unwrap_or("");
        st.check(p["status"] == json!(status), || {
            format!("{name}: expected {status}: {p}")
        });
        st.check(p["logo_loaded"] == json!(true), || {
            format!("{name}: the logo must load (CSP img-src data:): {p}")
        });
        st.check(p["overflows"] == json!(false), || {
            format!("{name}: the page must fit a phone's width: {p}")
        });
        st.check(text.contains(FOOTER), || {
            format!("{name}: no footer: {text}")
        });
        let shot = PathBuf::from(p["shot"].as_str().unwrap_or(""));
        let png = std::fs::read(&shot).unwrap_or_default();
        st.check(png.starts_with(b"\x89PNG"), || {
            format!("{name}: no screenshot at {}", shot.display())
        });
        if name != "sign_in" {
            st.check(text.contains("Request ID:"), || {
                format!("{name}: the page must show the request id: {text}")
            });
        }
    }
    let sign_in = pages["sign_in"]["text"].as_str().unwrap_or("");
    st.check(sign_in.contains(BANNER), || {
        format!("sign-in: the banner, as text: {sign_in}")
    });
    st.check(sign_in.contains("Sign in with ACME SSO"), || {
        format!("sign-in: provider_display_name: {sign_in}")
    });
    let forbidden = pages["forbidden"]["text"].as_str().unwrap_or("");
    st.check(
        forbidden.contains("Your email address is not allowed to use this application."),
        || format!("403: the rule that refused, in words: {forbidden}"),
    );
    st.check(!forbidden.contains("example.com"), || {
        format!("403: the rule's contents must not show: {forbidden}")
    });
    eprintln!("c03 screenshots: {}", shots.display());
}
