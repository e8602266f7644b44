//! The proxy-wasm adapter: the only code that talks to Envoy. Contexts are thin shells that
//! forward every host callback to the [`driver`], which hands it to the plugin's
//! `crate::coordinator::Coordinator` as an event and carries out the actions it returns
//! through the [`host::Host`] seam. Only the contexts and `envoy` (the seam over the
//! proxy-wasm ABI) are Wasm-only; the rest runs under `cargo test` against a fake host.
#![allow(unsafe_code)] // `proxy_wasm::main!` exports the `#[no_mangle]` entry point; raw ABI calls.

mod driver;
mod host;
mod stats;

#[cfg(target_arch = "wasm32")]
mod envoy;
#[cfg(target_arch = "wasm32")]
mod memcmp;

#[cfg(test)]
mod tests;

#[cfg(target_arch = "wasm32")]
mod contexts {
    use super::driver::{Verdict, Vm};
    use super::envoy::{self, Envoy};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};
    use std::cell::RefCell;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id }) });
    }}

    thread_local! {
        static VM: RefCell<(Vm, Envoy)> = RefCell::new((Vm::default(), Envoy::new()));
    }

    /// Runs `f` on the VM state. Host calls never call back into the VM synchronously
    /// (Envoy defers local replies and resumptions), so a nested borrow means a bug; we
    /// fail closed.
    fn with_vm<R>(fallback: R, f: impl FnOnce(&mut Vm, &mut Envoy) -> R) -> R {
        VM.with(|vm| match vm.try_borrow_mut() {
            Ok(mut state) => {
                let (vm, host) = &mut *state;
                f(vm, host)
            }
            Err(_) => {
                let line = "{\"event\":\"error\",\"reason\":\"reentrant_call\"}";
                let _ = proxy_wasm::hostcalls::log(LogLevel::Error, line);
                fallback
            }
        })
    }

    struct Root {
        id: u32,
    }

    impl Context for Root {
        fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
            with_vm((), |vm, host| {
                vm.on_callout_response(host, token, headers, body)
            });
        }
    }

    impl RootContext for Root {
        fn on_configure(&mut self, size: usize) -> bool {
            with_vm(false, |vm, host| {
                vm.configure(host, self.id, size, envoy::random)
            })
        }

        fn on_tick(&mut self) {
            with_vm((), |vm, host| vm.on_tick(host, self.id));
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
        fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
            with_vm((), |vm, host| {
                vm.on_callout_response(host, token, headers, body)
            });
        }

        fn on_done(&mut self) -> bool {
            with_vm((), |vm, host| vm.on_done(host, self.root, self.id));
            true
        }
    }

    impl HttpContext for Stream {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            let verdict = with_vm(Verdict::Refused, |vm, host| {
                vm.on_request(host, self.root, self.id)
            });
            match verdict {
                Verdict::Continue => Action::Continue,
                Verdict::Pause => Action::Pause,
                Verdict::Refused => {
                    let page = crate::gate::unavailable(&Default::default(), 500, None);
                    let headers: Vec<(&str, &str)> = page
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let body = Some(page.body.as_bytes());
                    let _ = proxy_wasm::hostcalls::send_http_response(500, headers, body);
                    Action::Pause
                }
            }
        }

        fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
            with_vm((), |vm, host| vm.on_response(host, self.root, self.id));
            Action::Continue
        }
    }
}
