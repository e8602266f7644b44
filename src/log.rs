//! The filter's log lines: one JSON object per event (`event`, `path`, and fields such as
//! `reason` or `email`), never a token, cookie or secret. The core builds them; the adapter
//! writes them through Envoy's log.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// One event's line: `{"event": …, "path": …, <fields>}`.
pub fn line(event: &str, path: &str, fields: &[(&str, &str)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), event.into());
    m.insert("path".into(), path.into());
    for (k, v) in fields {
        m.insert((*k).into(), (*v).into());
    }
    serde_json::Value::Object(m).to_string()
}

/// `line` with the request's `x-request-id` (as in Envoy's access log) added first, so the
/// two can be matched; `line` as it is without one.
pub fn with_request_id(line: &str, id: Option<&str>) -> String {
    match (id, line.strip_prefix('{')) {
        (Some(id), Some(rest)) => format!("{{\"request_id\":\"{id}\",{rest}"),
        _ => line.to_string(),
    }
}

/// Whether a request id (Envoy's `x-request-id`, which a client may set) is plain enough to
/// put in a log line or on a page: at most 128 letters, digits and `-_.:`.
pub fn plain_id(id: &str) -> bool {
    id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}
