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
