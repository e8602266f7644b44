//! Small, non-panicking wrappers over the proxy-wasm host calls we use.

use crate::gate::{Callout, Level, Request, Response};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

thread_local! {
    /// Envoy's log level for Wasm, as last read. Until the first read everything is passed
    /// on and Envoy filters it.
    static LOG_LEVEL: Cell<u32> = const { Cell::new(LogLevel::Trace as u32) };
}

/// Re-reads Envoy's log level; called on configure and every tick, so a level changed
/// through the admin interface applies within one tick.
pub fn refresh_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        LOG_LEVEL.with(|l| l.set(level as u32));
    }
}

/// Unix seconds; `None` when the host cannot say (callers must fail closed, never assume 0).
pub fn now() -> Option<u64> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .filter(|s| *s > 0)
}

/// Milliseconds since the epoch, for callout latencies; 0 when the clock cannot be read.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A header of the current request (one host call; for log lines, off the hot path).
pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

pub fn increment_metric(id: u32, by: u64) {
    let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
}

pub fn record_metric(id: u32, value: u64) {
    let _ = hostcalls::record_metric(id, value);
}

pub fn random(buf: &mut [u8]) -> bool {
    getrandom::getrandom(buf).is_ok()
}

pub fn log(level: Level, line: &str) {
    let level = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
    };
    // A line Envoy would drop anyway still costs a copy out of Wasm and a host call.
    if (level as u32) < LOG_LEVEL.with(Cell::get) {
        return;
    }
    let _ = hostcalls::log(level, line);
}

pub fn log_error(line: &str) {
    let _ = hostcalls::log(LogLevel::Error, line);
}

pub fn plugin_configuration(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
        .ok()
        .flatten()
}

/// A header map as text, and whether that text is exactly what the host holds; `None` when
/// the host would not hand it over.
fn map_lossy(map: MapType) -> Option<(Vec<(String, String)>, bool)> {
    // Header values may hold non-UTF-8 bytes; the SDK's String API would panic on them.
    hostcalls::get_map_bytes(map)
        .ok()
        .map(crate::routing::headers::lossy)
}

/// The request headers, and whether writing them back would reproduce them byte for byte.
/// `None` when they cannot be read: the caller must refuse the request, not treat it as
/// one without headers.
pub fn request_headers() -> Option<(Vec<(String, String)>, bool)> {
    map_lossy(MapType::HttpRequestHeaders)
}

pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

/// Replaces the whole request header map in one host call.
pub fn replace_request_headers(pairs: Vec<(&str, &str)>) -> bool {
    hostcalls::set_map(MapType::HttpRequestHeaders, pairs).is_ok()
}

/// Edits the request headers: no host call when there is nothing to change, one that writes
/// the whole map when the headers as read are at hand (each separate call costs a round trip
/// out of the VM, which dominated the hot path), otherwise one call per header. `false` if
/// an edit failed.
pub fn edit_request_headers(
    exact: Option<&Request>,
    remove: &[String],
    set: &[(String, String)],
) -> bool {
    if remove.is_empty() && set.is_empty() {
        return true;
    }
    if let Some(req) = exact {
        return replace_request_headers(crate::gate::edited_headers(&req.headers, remove, set));
    }
    let mut ok = true;
    for name in remove {
        ok &= set_request_header(name, None);
    }
    for (name, value) in set {
        ok &= set_request_header(name, Some(value));
    }
    ok
}

pub fn add_response_header(name: &str, value: &str) -> bool {
    hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value).is_ok()
}

pub fn send_response(r: &Response) -> bool {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    hostcalls::send_http_response(r.status as u32, headers, Some(r.body.as_bytes())).is_ok()
}

pub fn resume_request() -> bool {
    hostcalls::resume_http_request().is_ok()
}

/// Makes later host calls act on `context_id`; false when that stream is gone.
pub fn switch_to(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub fn set_tick(period: Duration) {
    let _ = hostcalls::set_tick_period(period);
}

pub fn dispatch(cluster: &str, c: &Callout, timeout_ms: u64) -> Option<u32> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", c.method),
        (":path", &c.path),
        (":authority", &c.authority),
    ];
    headers.extend(c.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let body = (!c.body.is_empty()).then_some(c.body.as_slice());
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        body,
        vec![],
        Duration::from_millis(timeout_ms),
    )
    .ok()
}

/// The answer to a callout: `None` when it failed (timeout, reset, no healthy host).
pub fn callout_response(num_headers: usize, body_size: usize) -> Option<(u16, Vec<u8>)> {
    if num_headers == 0 {
        return None;
    }
    let (headers, _) = map_lossy(MapType::HttpCallResponseHeaders)?;
    let status = headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| v.parse::<u16>().ok())?;
    let body = if body_size == 0 {
        Vec::new()
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    Some((status, body))
}

pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}
