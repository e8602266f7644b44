//! Several Envoy workers share one view of the IdP: at `--concurrency 4` the filter fetches
//! the discovery document and the JWKS once per Envoy, not once per worker (the IdP counts
//! them). The login, refresh, sign-out and bearer modules run again at `--concurrency 4`
//! with `just e2e-workers` (`WOP_ENVOY_CONCURRENCY=4`).

use serde_json::json;

use crate::support::http::{burst, Browser, BROWSER_ACCEPT};
use crate::support::idp::{counters, reset_counters, Counters};
use crate::support::stack::{App, Stack};

const WORKERS: usize = 4;

/// A stack at `--concurrency 4`, a login as john, and 40 requests over fresh connections
/// (spread over the workers, each of which needs the metadata); returns the IdP's counts and
/// the connections each worker took.
fn four_workers_busy() -> (Stack, Counters, Vec<u64>) {
    let mut st = Stack::builder()
        .app(App::Recorder)
        .plugin("skip_jwt_bearer_tokens", json!(true))
        .concurrency(WORKERS)
        .start_no_envoy();
    // The harness itself asked for discovery while waiting for the IdP.
    reset_counters(&st);
    if let Err(e) = st.start_envoy() {
        st.fail(&format!("envoy did not become ready: {e}"));
    }
    let mut b = Browser::new();
    st.login_ok(&mut b, "/headers", "john");
    let requests: Vec<(String, Vec<(String, String)>)> = (0..40)
        .map(|i| {
            (
                st.url(&format!("/private?n={i}")),
                vec![("Accept".to_string(), BROWSER_ACCEPT.to_string())],
            )
        })
        .collect();
    for (i, r) in burst(&requests, std::time::Duration::from_secs(20))
        .into_iter()
        .enumerate()
    {
        let r = r.unwrap_or_else(|e| st.fail(&format!("request {i}: {e}")));
        st.check(r.status == 302, || {
            format!("request {i} must be sent to log in: {}", r.short())
        });
    }
    let workers = st.worker_connections();
    st.check(
        workers.len() == WORKERS && workers.iter().all(|n| *n > 0),
        || format!("connections per worker: {workers:?} (want all {WORKERS} busy)"),
    );
    let c = counters(&st);
    (st, c, workers)
}

/// Today's bound, which must hold whatever else changes: every Wasm VM (one per worker,
/// one on Envoy's main thread) loads the metadata once at start, and nothing a request does
/// makes it load again.
#[test]
fn w01_metadata_loads_at_most_once_per_vm() {
    let (st, c, _) = four_workers_busy();
    let vms = WORKERS as u64 + 1;
    st.check(
        (1..=vms).contains(&c.discovery) && (1..=vms).contains(&c.jwks),
        || format!("discovery and JWKS at most once per VM ({vms}): {c:?}"),
    );
}

/// Discovery and JWKS are fetched once per Envoy: the first VM to load shares its copy
/// (proxy-wasm shared data) and the others adopt it instead of calling the IdP.
#[test]
fn w02_metadata_fetched_once_per_envoy() {
    let (st, c, _) = four_workers_busy();
    st.check(c.discovery == 1 && c.jwks == 1, || {
        format!("one discovery and one JWKS fetch per Envoy at --concurrency {WORKERS}: {c:?}")
    });
}
