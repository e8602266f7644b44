//! The seam between the adapter and Envoy: every host call the adapter makes, as a trait.
//! `envoy` implements it over the proxy-wasm ABI (the only code that is Wasm-only); the
//! tests implement it with a fake host, so the adapter's carrying-out runs under
//! `cargo test`.

use crate::callout::Callout;
use crate::gate::Response;
use crate::log::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Counter,
    Gauge,
    Histogram,
}

pub trait Host {
    /// Milliseconds since the epoch; 0 when the host cannot say.
    fn now_ms(&mut self) -> u64;
    /// An environment variable of the Envoy process (`vm_config.environment_variables`).
    fn env(&self, key: &str) -> Option<String>;
    fn plugin_configuration(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Re-reads the host's log level (see [`Host::log`]).
    fn refresh_log_level(&mut self);
    /// Writes a line, unless the host's log level drops it anyway.
    fn log(&mut self, level: Level, line: &str);
    /// The current request's header map, serialised (see `crate::routing::wire`); `None`
    /// when the host would not hand it over.
    fn request_header_map(&mut self) -> Option<Vec<u8>>;
    /// Replaces the current request's header map with a serialised one.
    fn set_request_header_map(&mut self, map: &[u8]) -> bool;
    /// Sets (every copy of) or, with `None`, removes a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool;
    fn add_response_header(&mut self, name: &str, value: &str) -> bool;
    fn send_response(&mut self, response: &Response) -> bool;
    fn resume_request(&mut self) -> bool;
    /// Makes later calls act on this stream; `false` when it is gone.
    fn switch_to(&mut self, stream: u32) -> bool;
    fn set_tick_ms(&mut self, period: u64);
    /// Sends a callout; its token, or `None` when the host refused.
    fn dispatch(&mut self, cluster: &str, callout: &Callout, timeout_ms: u64) -> Option<u32>;
    /// The answer to the callout being reported: `None` when it failed.
    fn callout_response(&mut self, num_headers: usize, body_size: usize) -> Option<(u16, Vec<u8>)>;
    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    fn define_metric(&mut self, kind: Metric, name: &str) -> Option<u32>;
    fn increment_metric(&mut self, id: u32, by: u64);
    fn record_metric(&mut self, id: u32, value: u64);
}
