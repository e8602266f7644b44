//! What the gate counts: every decision that writes a log line is counted by its `event`
//! (and, for refusals, a bounded form of its `reason`), and the hot path's outcomes, which
//! write none, by name. Counting is a few integer additions per request; the adapter hands
//! the totals to the host's metric API on its tick, so the hot path makes no host call for
//! them.
//!
//! Every name is `<event>` or `<event>.<reason>`, under the prefix [`PREFIX`]; reasons are
//! cut to their first word (`id_token: bad signature` counts as `id_token`), and at most
//! [`MAX_NAMES`] distinct names are kept, the rest counted as `<event>.other`.

/// The prefix of every metric (Envoy shows them as `wasmcustom.wasm_oauth2_proxy.*`).
pub const PREFIX: &str = "wasm_oauth2_proxy";
pub const MAX_NAMES: usize = 96;

/// Log events and the counter each one adds to; `true`: with its reason.
const COUNTERS: &[(&str, &str, bool)] = &[
    ("login_redirect", "logins_started", false),
    ("login", "logins_completed", false),
    ("login_failed", "logins_failed", true),
    ("unauthenticated", "requests_unauthenticated", false),
    ("forbidden", "requests_denied", true),
    ("bearer_rejected", "bearer_tokens_rejected", true),
    ("session_refreshed", "sessions_refreshed", false),
    ("refresh_failed", "refreshes_failed", true),
    ("session_ended", "sessions_ended", true),
    ("sign_out", "sign_outs", false),
    ("token_exchange_failed", "token_exchanges_failed", true),
    ("jwks_refresh", "key_refetches", false),
    ("provider_loaded", "metadata_loads", false),
    ("provider_load_failed", "metadata_load_failures", false),
    ("provider_unavailable", "requests_unavailable", false),
    ("error", "errors", true),
];

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// The hot path's own outcomes.
    pub session_accepted: u64,
    pub bearer_accepted: u64,
    pub skipped_route: u64,
    /// Everything else, by name.
    named: Vec<(String, u64)>,
}

impl Metrics {
    /// Counts one occurrence of `name`.
    pub fn count(&mut self, name: &str) {
        if let Some((_, n)) = self.named.iter_mut().find(|(k, _)| k == name) {
            *n += 1;
        } else if self.named.len() < MAX_NAMES {
            self.named.push((name.to_string(), 1));
        } else if let Some((_, n)) = self.named.iter_mut().find(|(k, _)| k == "other") {
            *n += 1;
        } else {
            // The last slot is kept for this.
            if let Some(last) = self.named.last_mut() {
                *last = ("other".to_string(), last.1 + 1);
            }
        }
    }

    /// Counts a decision by its log line (the JSON `event`, and `reason` for refusals).
    pub fn count_log(&mut self, line: &str) {
        let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            return;
        };
        let Some(event) = m.get("event").and_then(|e| e.as_str()) else {
            return;
        };
        let Some((_, name, with_reason)) = COUNTERS.iter().find(|(e, _, _)| *e == event) else {
            return;
        };
        if !with_reason {
            return self.count(name);
        }
        let reason = m.get("reason").and_then(|r| r.as_str()).unwrap_or("none");
        self.count(&format!("{name}.{}", word(reason)));
    }

    /// Every counter and its total, fixed ones first.
    pub fn totals(&self) -> impl Iterator<Item = (&str, u64)> {
        [
            ("sessions_accepted", self.session_accepted),
            ("bearer_tokens_accepted", self.bearer_accepted),
            ("skipped_routes", self.skipped_route),
        ]
        .into_iter()
        .chain(self.named.iter().map(|(k, n)| (k.as_str(), *n)))
    }
}

/// The first word of a reason, lower-case letters, digits and `_` only, at most 40 long: a
/// bounded metric name whatever the reason carries (an IdP's error code, an error text).
fn word(reason: &str) -> String {
    let w: String = reason
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if w.is_empty() {
        "other".to_string()
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(m: &Metrics, name: &str) -> u64 {
        m.totals().find(|(k, _)| *k == name).map_or(0, |(_, n)| n)
    }

    #[test]
    fn log_lines_count_by_event_and_bounded_reason() {
        let mut m = Metrics::default();
        m.count_log(r#"{"event":"login","path":"/oauth2/callback","email":"a@b.c"}"#);
        m.count_log(r#"{"event":"login_failed","reason":"id_token: bad signature"}"#);
        m.count_log(r#"{"event":"login_failed","reason":"idp_error:access_denied"}"#);
        m.count_log(r#"{"event":"login_failed","reason":"csrf_state_mismatch"}"#);
        m.count_log(r#"{"event":"forbidden","reason":"email_domain","email":"x"}"#);
        m.count_log("not json");
        assert_eq!(total(&m, "logins_completed"), 1);
        assert_eq!(total(&m, "logins_failed.id_token"), 1);
        assert_eq!(total(&m, "logins_failed.idp_error"), 1);
        assert_eq!(total(&m, "logins_failed.csrf_state_mismatch"), 1);
        assert_eq!(total(&m, "requests_denied.email_domain"), 1);
    }

    #[test]
    fn names_are_bounded() {
        let mut m = Metrics::default();
        for i in 0..1000 {
            m.count_log(&format!(r#"{{"event":"login_failed","reason":"r{i}"}}"#));
        }
        assert_eq!(m.totals().count(), 3 + MAX_NAMES);
        assert_eq!(m.totals().map(|(_, n)| n).sum::<u64>(), 1000);
        assert!(total(&m, "other") > 0);
    }
}
