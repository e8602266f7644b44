//! The proxy-wasm adapter: the only code that talks to Envoy. Contexts are thin shells that
//! forward every host event to [`plugin`], which carries out the gate's decisions.
#![allow(unsafe_code)] // `proxy_wasm::main!` exports the `#[no_mangle]` entry point.

mod host;
mod loading;
mod memcmp;
mod plugin;
mod stats;
mod steps;
mod vm;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id }) });
}}

struct Root {
    id: u32,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        plugin::on_callout_response(token, num_headers, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        plugin::configure(self.id, size)
    }

    fn on_tick(&mut self) {
        plugin::on_tick(self.id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            root: self.id,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    root: u32,
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        plugin::on_callout_response(token, num_headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        plugin::forget_stream(self.root, self.id);
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        plugin::on_request(self.root, self.id)
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        plugin::on_response(self.id);
        Action::Continue
    }
}
