//! The cheapest useful proxy-wasm HTTP filter: read one header, add one. Whatever this
//! costs per request is the price of entering Wasm at all, the floor for any filter.

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

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Bytes, not String: the String API panics on non-UTF-8 values.
        let seen = self.get_http_request_header_bytes("x-bench").is_some();
        self.set_http_request_header("x-bench-seen", Some(if seen { "1" } else { "0" }));
        Action::Continue
    }
}
