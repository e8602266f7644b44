//! The cheapest useful proxy-wasm HTTP filter: read one header, add one. Whatever this
//! costs per request is the price of entering Wasm at all, the floor for any filter. With
//! feature `hostcalls`, the host calls of the gate's hot path and nothing else.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

#[cfg(not(feature = "hostcalls"))]
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Bytes, not String: the String API panics on non-UTF-8 values.
        let seen = self.get_http_request_header_bytes("x-bench").is_some();
        self.set_http_request_header("x-bench-seen", Some(if seen { "1" } else { "0" }));
        Action::Continue
    }
}

/// The gate's hot path without its decisions: read the whole header map, read the clock,
/// write the map back without the cookie and with four identity headers. What this costs
/// is the floor for any filter that must see every header and set several.
#[cfg(feature = "hostcalls")]
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        let _now = self.get_current_time();
        let mut out: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(n, _)| n != "cookie")
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        out.extend([
            ("x-forwarded-user", &b"john@example.com"[..]),
            ("x-forwarded-email", &b"john@example.com"[..]),
            ("x-forwarded-preferred-username", &b"john"[..]),
            ("x-forwarded-groups", &b"developers"[..]),
        ]);
        self.set_http_request_headers_bytes(out);
        Action::Continue
    }
}
