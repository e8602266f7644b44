//! Operators can see what the gate does: its counters, gauges and callout latency histogram
//! in Envoy's `/stats/prometheus` under `wasm_oauth2_proxy`, figures matching what was done,
//! and its log lines carrying Envoy's `x-request-id`. Also checks that every metric the
//! shipped Grafana dashboard (`grafana/wasm-oauth2-proxy.json`) queries exists.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::checks::API;
use crate::support::http::{raw_request, Browser};
use crate::support::stack::Stack;
use serde_json::json;

/// `name -> value` of every sample line of `/stats/prometheus` (labels kept in the name).
fn prometheus(st: &Stack) -> BTreeMap<String, f64> {
    let url = format!("http://127.0.0.1:{}/stats/prometheus", st.admin_port);
    let r = raw_request("GET", &url, &[], None, Duration::from_secs(5))
        .unwrap_or_else(|e| st.fail(&format!("GET {url}: {e}")));
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The gate's own series, without the namespace Envoy puts in front.
fn ours(all: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    all.iter()
        .filter_map(|(k, v)| {
            let at = k.find("wasm_oauth2_proxy_")?;
            let name = &k[at + "wasm_oauth2_proxy_".len()..];
            Some((name.trim_end_matches("{}").to_string(), *v))
        })
        .collect()
}

/// Counters are pushed on the filter's tick (every 5 s): wait until `ready` holds.
fn metrics_when(
    st: &Stack,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = ours(&prometheus(st));
        if ready(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sum(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn prometheus_shows_what_the_gate_did() {
    let st = Stack::builder()
        .plugin("email_domains", json!(["example.com"]))
        .start();
    // One login that completes, one the domain rule refuses.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let mut m = Browser::new();
    let (resp, _) = st.login(&mut m, &st.url("/"), "mallory", "mallory");
    st.check(resp.status == 403, || format!("mallory: {}", resp.short()));
    // Three API requests without a session, one with a forged cookie, one with john's.
    for _ in 0..3 {
        let r = Browser::new().get_with(&st.url("/api/x"), API);
        st.check(r.status == 401, || r.short());
    }
    let mut forged = Browser::new();
    forged.set(&st.origin(), "_oauth2_proxy", "Zm9yZ2Vk");
    let r = forged.get_with(&st.url("/api/x"), API);
    st.check(r.status == 401, || r.short());
    let r = b.get_with(
        &st.url("/headers"),
        &[("x-request-id", "metrics-test-request-1")],
    );
    st.check(r.status == 200, || r.short());

    let m = metrics_when(&st, |m| sum(m, "requests_unauthenticated") >= 4.0);
    let show = || format!("{m:#?}");
    st.check(sum(&m, "logins_started") >= 2.0, show);
    st.check(sum(&m, "logins_completed") == 1.0, show);
    st.check(sum(&m, "logins_failed_email_not_allowed") == 1.0, show);
    st.check(sum(&m, "requests_unauthenticated") == 4.0, show);
    st.check(sum(&m, "sessions_rejected_invalid") == 1.0, show);
    st.check(sum(&m, "sessions_accepted") >= 1.0, show);
    st.check(sum(&m, "metadata_loads") >= 1.0, show);
    st.check(sum(&m, "callout_discovery_2xx") >= 1.0, show);
    st.check(sum(&m, "callout_jwks_2xx") >= 1.0, show);
    st.check(sum(&m, "callout_token_2xx") == 2.0, show);
    st.check(sum(&m, "callout_latency_ms_count") >= 4.0, show);
    st.check(
        m.keys().any(|k| k.starts_with("callout_latency_ms_bucket")),
        show,
    );
    st.check(m.contains_key("sessions_cached"), show);

    // The log line of a decision carries the request id; none carries a cookie or token.
    let log = st.envoy_log();
    st.check(
        log.lines()
            .any(|l| l.contains("\"request_id\":\"") && l.contains("\"event\":\"login\"")),
        || format!("no login line with a request_id:\n{}", st.tails()),
    );
    let cookie = b.cookie(&st.origin(), "_oauth2_proxy").unwrap_or_default();
    st.check(!cookie.is_empty() && !log.contains(&cookie), || {
        "a session cookie in the log".into()
    });
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let st = Stack::builder()
        .plugin("email_domains", json!(["example.com"]))
        .start();
    // Something for every panel: a login, a refused one, a 401, a forged cookie.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let _ = st.login(&mut Browser::new(), &st.url("/"), "mallory", "mallory");
    let r = Browser::new().get_with(&st.url("/api/x"), API);
    st.check(r.status == 401, || r.short());
    let mut forged = Browser::new();
    forged.set(&st.origin(), "_oauth2_proxy", "Zm9yZ2Vk");
    let _ = forged.get_with(&st.url("/api/x"), API);
    let m = metrics_when(&st, |m| {
        sum(m, "logins_completed") >= 1.0 && sum(m, "sessions_rejected_invalid") >= 1.0
    });
    let dashboard = std::fs::read_to_string(st.env.root.join("grafana/wasm-oauth2-proxy.json"))
        .expect("grafana/wasm-oauth2-proxy.json");
    let v: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut queried = Vec::new();
    let re =
        regex::Regex::new(r"wasm_oauth2_proxy_([a-z0-9_]+?)(?:_(?:bucket|count|sum))?\b").unwrap();
    for panel in v["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for c in re.captures_iter(expr) {
                queried.push(c[1].to_string());
            }
        }
    }
    st.check(!queried.is_empty(), || {
        "the dashboard queries nothing".into()
    });
    for q in &queried {
        let exists = m.keys().any(|k| k.starts_with(q.as_str()));
        st.check(exists, || {
            format!("dashboard queries `{q}`, not in /stats/prometheus:\n{m:#?}")
        });
    }
}
