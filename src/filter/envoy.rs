//! [`Host`] over the proxy-wasm ABI: the only calls into Envoy, each a thin wrapper that
//! never panics. Header maps go through the raw ABI calls, serialised and parsed by
//! `crate::routing::wire`, not the SDK's (which panics on bytes it does not expect).

use super::host::{Host, Metric};
use crate::callout::Callout;
use crate::gate::Response;
use crate::log::Level;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::ptr::null_mut;
use std::time::{Duration, UNIX_EPOCH};

// Statuses as the integers the ABI returns (0 is `Ok`): an enum would be undefined
// behaviour for a value it does not list.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: MapType, map_data: *const u8, map_size: usize) -> u32;
}

pub struct Envoy {
    /// Envoy's log level for Wasm, as last read. Until the first read everything is passed
    /// on and Envoy filters it.
    log_level: u32,
}

impl Envoy {
    pub const fn new() -> Envoy {
        Envoy {
            log_level: LogLevel::Trace as u32,
        }
    }
}

pub fn random(buf: &mut [u8]) -> bool {
    getrandom::getrandom(buf).is_ok()
}

impl Host for Envoy {
    fn now_ms(&mut self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn env(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn plugin_configuration(&mut self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
    }

    fn refresh_log_level(&mut self) {
        if let Ok(level) = hostcalls::get_log_level() {
            self.log_level = level as u32;
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        // A line Envoy would drop anyway still costs a copy out of Wasm and a host call.
        if (level as u32) >= self.log_level {
            let _ = hostcalls::log(level, line);
        }
    }

    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated with this module's
        // `proxy_on_memory_allocate` (the SDK's, a `Vec<u8>` of that capacity), which the
        // `Vec` below takes ownership of.
        unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                0 if data.is_null() => Some(Vec::new()),
                0 => Some(Vec::from_raw_parts(data, size, size)),
                _ => None,
            }
        }
    }

    fn set_request_header_map(&mut self, map: &[u8]) -> bool {
        // SAFETY: the host only reads `map.len()` bytes at `map.as_ptr()`.
        let status = unsafe {
            proxy_set_header_map_pairs(MapType::HttpRequestHeaders, map.as_ptr(), map.len())
        };
        status == 0
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> bool {
        hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value).is_ok()
    }

    fn send_response(&mut self, r: &Response) -> bool {
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        hostcalls::send_http_response(u32::from(r.status), headers, Some(r.body.as_bytes())).is_ok()
    }

    fn resume_request(&mut self) -> bool {
        hostcalls::resume_http_request().is_ok()
    }

    fn switch_to(&mut self, stream: u32) -> bool {
        hostcalls::set_effective_context(stream).is_ok()
    }

    fn set_tick_ms(&mut self, period: u64) {
        let _ = hostcalls::set_tick_period(Duration::from_millis(period));
    }

    fn dispatch(&mut self, cluster: &str, c: &Callout, timeout_ms: u64) -> Option<u32> {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", c.method),
            (":path", &c.path),
            (":authority", &c.authority),
        ];
        headers.extend(c.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let body = (!c.body.is_empty()).then_some(c.body.as_slice());
        let timeout = Duration::from_millis(timeout_ms);
        hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout).ok()
    }

    fn callout_response(&mut self, num_headers: usize, body_size: usize) -> Option<(u16, Vec<u8>)> {
        if num_headers == 0 {
            return None;
        }
        let status: u16 =
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())?;
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

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn define_metric(&mut self, kind: Metric, name: &str) -> Option<u32> {
        let kind = match kind {
            Metric::Counter => MetricType::Counter,
            Metric::Gauge => MetricType::Gauge,
            Metric::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&mut self, id: u32, by: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}
