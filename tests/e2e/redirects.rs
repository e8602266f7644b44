//! Open-redirect corpus through real Envoy: every payload of
//! `tests/corpora/open-redirects.txt`, as `rd` and as `X-Auth-Request-Redirect`, sends the
//! browser nowhere but our own origin (or `/`). `src/redirect.rs` checks the same corpus
//! natively; this proves the filter as deployed does too.
//!
//! Run with `just e2e` (needs WOP_ENVOY, WOP_WASM and WOP_ROOT, see tests/support/mod.rs).

use url::Url;

use crate::support::http::{origin_of, Browser};
use crate::support::stack::{App, Stack};

/// The corpus, with our origin for `app.example.com`.
fn corpus(origin: &str) -> Vec<String> {
    crate::support::corpus::lines("open-redirects.txt")
        .into_iter()
        .map(|l| l.replace("app.example.com", origin))
        .collect()
}

#[test]
fn r01_no_payload_leaves_our_origin() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("whitelist_domains", serde_json::json!(["trusted.example"]))
        .start();
    let payloads = corpus(&st.origin());
    assert!(payloads.len() >= 150, "corpus too small");
    let base = Url::parse(&st.base()).unwrap();
    let mut kept = 0;
    let mut via_header = 0;
    for rd in &payloads {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let mut tries = vec![(format!("/oauth2/sign_out?rd={enc}"), None)];
        // A header value cannot hold CR, LF or NUL: those only travel in the query.
        if !rd.bytes().any(|b| b < 0x20 || b == 0x7f) && rd.is_ascii() {
            tries.push(("/oauth2/sign_out".to_string(), Some(rd.as_str())));
            via_header += 1;
        }
        for (path, header) in tries {
            let mut b = Browser::new();
            let headers: Vec<(&str, &str)> = header
                .map(|h| vec![("X-Auth-Request-Redirect", h)])
                .unwrap_or_default();
            let r = b.get_with(&st.url(&path), &headers);
            st.check(r.status == 302, || {
                format!("{path} {header:?}: {}", r.short())
            });
            let location = r.header("location").unwrap_or("");
            let landed = base.join(location);
            st.check(
                landed.as_ref().is_ok_and(|u| origin_of(u) == st.origin()),
                || {
                    format!(
                        "rd {rd:?} ({path}, header {header:?}) sent the browser to {location:?}"
                    )
                },
            );
            if location != "/" {
                kept += 1;
            }
        }
    }
    // The corpus holds local paths and our own origin too: some must survive, or the
    // check proves only that everything is dropped.
    st.check(kept >= 10, || {
        format!("only {kept} payloads were kept as return URLs")
    });
    st.check(via_header >= 100, || {
        format!("only {via_header} sent as a header")
    });
    // A whitelisted domain is still honoured.
    let r = Browser::new().get(&st.url("/oauth2/sign_out?rd=https%3A%2F%2Ftrusted.example%2Fbye"));
    st.check(
        r.header("location") == Some("https://trusted.example/bye"),
        || format!("whitelisted rd: {}", r.short()),
    );
    assert_eq!(
        st.recorder.as_ref().unwrap().count(),
        0,
        "nothing reaches the app"
    );
}
