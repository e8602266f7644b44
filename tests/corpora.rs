//! The attack corpora of `tests/corpora/`, checked natively against the core's public API.
//! The same files go through real Envoy in `tests/e2e/hardening.rs` and `tests/e2e/redirects.rs`;
//! a new attack variant goes into a corpus file, not into a test.

mod support;

use std::collections::HashSet;

use support::corpus::{app_view, decode_once, lines};
use wasm_oauth2_proxy::{routing::headers, routing::path, routing::redirect};

#[test]
fn route_bypasses_cannot_skip_into_public() {
    let lines = lines("skip-route-bypasses.txt");
    assert!(lines.len() >= 120, "only {} corpus lines", lines.len());
    let distinct: HashSet<_> = lines.iter().collect();
    assert_eq!(distinct.len(), lines.len(), "duplicate corpus lines");
    let mut bypasses = 0;
    for line in &lines {
        let skip = path::skippable(line);
        if let Some(p) = skip {
            // The app acts on exactly the path that matched.
            assert_eq!(app_view(line), decode_once(p), "{line:?}");
            let public = app_view(p).starts_with("/public/");
            assert_eq!(p.starts_with("/public/"), public, "{line:?}");
        }
        let raw_path = line.split('?').next().unwrap_or_default();
        if raw_path.starts_with("/public") && !app_view(line).starts_with("/public/") {
            bypasses += 1;
            assert!(skip.is_none_or(|p| !p.starts_with("/public")), "{line:?}");
        }
    }
    assert!(bypasses >= 100, "only {bypasses} genuine bypasses");
}

/// Whatever `redirect::allowed` returns, a browser following it (the WHATWG URL parser,
/// which the `url` crate implements: tabs and newlines dropped, `\` read as `/`) stays on
/// our host.
#[test]
fn open_redirects_never_leave_our_host() {
    let host = "app.example.com";
    let base = url::Url::parse("https://app.example.com/start").unwrap();
    let payloads = lines("open-redirects.txt");
    assert!(
        payloads.len() >= 150,
        "corpus too small: {}",
        payloads.len()
    );
    let mut kept = 0;
    for rd in &payloads {
        if let Some(target) = redirect::allowed(rd, host, &[]) {
            let landed = base.join(&target).unwrap();
            assert_eq!(landed.host_str(), Some(host), "{rd:?} -> {target:?}");
            assert!(!target.bytes().any(|b| b < 0x20), "{rd:?} -> {target:?}");
            kept += 1;
        }
    }
    assert!(kept >= 5, "the local paths of the corpus must survive");
}

#[test]
fn every_identity_header_spelling_is_owned() {
    let names = lines("identity-header-spellings.txt");
    assert!(names.len() >= 60, "corpus too small: {}", names.len());
    for name in &names {
        assert!(headers::is_owned(name), "{name}");
    }
    for other in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-auth-request-redirect",
        "x-forwarded-users",
        "x-forwarded-emai",
        "xforwarded-email",
        "x-forwarded-email ",
        "authorizations",
        "proxy-authorization",
    ] {
        assert!(!headers::is_owned(other), "{other}");
    }
}

#[test]
fn the_careless_reader_is_careless_enough() {
    for (target, read) in [
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/..;/admin", "/admin"),
        ("/public\\..\\admin", "/admin"),
        ("/public/%252e%252e/admin", "/admin"),
        ("/public/%c0%ae%c0%ae/admin", "/admin"),
        ("/public/%u002e%u002e/admin", "/admin"),
        ("/public/\u{FF0E}\u{FF0E}/admin", "/admin"),
        ("/public/..%20/admin", "/admin"),
        ("//public///x", "/public/x"),
        ("/public/x?/../../admin", "/public/x"),
    ] {
        assert_eq!(app_view(target), read, "{target:?}");
    }
}
