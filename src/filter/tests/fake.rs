//! A fake Envoy behind the [`Host`] seam: streams with header maps, callouts the test
//! answers, and shared data (with compare-and-swap versions) that several fake workers can
//! share, as Envoy's workers share one store. Every host call is recorded by name, so tests
//! can count them.

use crate::callout::Callout;
use crate::filter::host::{Host, Metric};
use crate::gate::Response;
use crate::log::Level;
use crate::routing::wire;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Shared data: value and version by key.
pub type Store = Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>;
/// What another worker does just before a compare-and-swap write (key, bytes).
pub type Race = Box<dyn FnMut(&Store, &str, &[u8])>;

#[derive(Debug, Default)]
pub struct Stream {
    pub headers: Vec<(String, String)>,
    pub response: Option<Response>,
    pub response_headers: Vec<(String, String)>,
    pub resumed: bool,
}

pub struct Fake {
    pub now_ms: u64,
    pub config: Vec<u8>,
    pub env: HashMap<String, String>,
    pub store: Store,
    pub streams: HashMap<u32, Stream>,
    /// The stream host calls act on.
    pub current: Option<u32>,
    /// Every host call, by name, in order.
    pub calls: Vec<&'static str>,
    /// Callouts sent: token, cluster and the callout.
    pub sent: Vec<(u32, String, Callout)>,
    next_token: u32,
    pub refuse_dispatch: bool,
    pub fail_header_writes: bool,
    /// What `request_header_map` hands over instead of the stream's map, when set.
    pub raw_map: Option<Option<Vec<u8>>>,
    /// The answer the callout being reported carries.
    pub answer: Option<(u16, Vec<u8>)>,
    pub logs: Vec<(Level, String)>,
    pub tick_ms: Option<u64>,
    pub metrics: HashMap<String, u64>,
    metric_names: Vec<String>,
    /// Runs before each compare-and-swap write (key, bytes), as another worker would.
    pub before_cas: Option<Race>,
}

impl Fake {
    pub fn new(store: &Store, config: &serde_json::Value, now_ms: u64) -> Fake {
        Fake {
            now_ms,
            config: config.to_string().into_bytes(),
            env: HashMap::new(),
            store: Rc::clone(store),
            streams: HashMap::new(),
            current: None,
            calls: Vec::new(),
            sent: Vec::new(),
            next_token: 0,
            refuse_dispatch: false,
            fail_header_writes: false,
            raw_map: None,
            answer: None,
            logs: Vec::new(),
            tick_ms: None,
            metrics: HashMap::new(),
            metric_names: Vec::new(),
            before_cas: None,
        }
    }

    /// A new stream with these request headers, made current (as Envoy does before it calls
    /// `on_http_request_headers`).
    pub fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.streams.insert(
            id,
            Stream {
                headers,
                ..Stream::default()
            },
        );
        self.current = Some(id);
    }

    pub fn stream(&self, id: u32) -> &Stream {
        &self.streams[&id]
    }

    fn on_current(&mut self) -> Option<&mut Stream> {
        let id = self.current?;
        self.streams.get_mut(&id)
    }
}

impl Host for Fake {
    fn now_ms(&mut self) -> u64 {
        self.calls.push("get_current_time");
        self.now_ms
    }

    fn env(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }

    fn plugin_configuration(&mut self, _: usize) -> Option<Vec<u8>> {
        self.calls.push("plugin_configuration");
        Some(self.config.clone())
    }

    fn refresh_log_level(&mut self) {
        self.calls.push("get_log_level");
    }

    fn log(&mut self, level: Level, line: &str) {
        self.calls.push("log");
        self.logs.push((level, line.to_string()));
    }

    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        self.calls.push("get_header_map_pairs");
        if let Some(raw) = self.raw_map.clone() {
            return raw;
        }
        let s = self.on_current()?;
        let pairs: Vec<(&str, &str)> = s
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Some(wire::serialize(&pairs))
    }

    fn set_request_header_map(&mut self, map: &[u8]) -> bool {
        self.calls.push("set_header_map_pairs");
        if self.fail_header_writes {
            return false;
        }
        let Some((pairs, true)) = wire::parse(map.to_vec()) else {
            return false;
        };
        match self.on_current() {
            Some(s) => {
                s.headers = pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                true
            }
            None => false,
        }
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> bool {
        self.calls.push("set_header_map_value");
        if self.fail_header_writes {
            return false;
        }
        let Some(s) = self.on_current() else {
            return false;
        };
        s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            s.headers.push((name.to_string(), v.to_string()));
        }
        true
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> bool {
        self.calls.push("add_header_map_value");
        let Some(s) = self.on_current() else {
            return false;
        };
        s.response_headers
            .push((name.to_string(), value.to_string()));
        true
    }

    fn send_response(&mut self, response: &Response) -> bool {
        self.calls.push("send_local_response");
        let Some(s) = self.on_current() else {
            return false;
        };
        s.response = Some(response.clone());
        true
    }

    fn resume_request(&mut self) -> bool {
        self.calls.push("continue_stream");
        let Some(s) = self.on_current() else {
            return false;
        };
        s.resumed = true;
        true
    }

    fn switch_to(&mut self, stream: u32) -> bool {
        self.calls.push("set_effective_context");
        let ok = self.streams.contains_key(&stream);
        if ok {
            self.current = Some(stream);
        }
        ok
    }

    fn set_tick_ms(&mut self, period: u64) {
        self.calls.push("set_tick_period");
        self.tick_ms = Some(period);
    }

    fn dispatch(&mut self, cluster: &str, callout: &Callout, _: u64) -> Option<u32> {
        self.calls.push("dispatch_http_call");
        if self.refuse_dispatch {
            return None;
        }
        self.next_token += 1;
        self.sent
            .push((self.next_token, cluster.to_string(), callout.clone()));
        Some(self.next_token)
    }

    fn callout_response(&mut self, _: usize, _: usize) -> Option<(u16, Vec<u8>)> {
        self.calls.push("get_http_call_response");
        self.answer.clone()
    }

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.calls.push("get_shared_data");
        match self.store.borrow().get(key) {
            Some((v, version)) => (Some(v.clone()), Some(*version)),
            None => (None, None),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.calls.push("set_shared_data");
        if let (Some(hook), Some(_)) = (self.before_cas.as_mut(), cas) {
            hook(&self.store, key, value);
        }
        let mut store = self.store.borrow_mut();
        let current = store.get(key).map(|(_, v)| *v);
        if cas.is_some_and(|c| Some(c) != current) {
            return false;
        }
        let version = current.map_or(1, |v| v + 1);
        store.insert(key.to_string(), (value.to_vec(), version));
        true
    }

    fn define_metric(&mut self, _: Metric, name: &str) -> Option<u32> {
        self.calls.push("define_metric");
        self.metric_names.push(name.to_string());
        u32::try_from(self.metric_names.len() - 1).ok()
    }

    fn increment_metric(&mut self, id: u32, by: u64) {
        self.calls.push("increment_metric");
        let name = self.metric_names[id as usize].clone();
        *self.metrics.entry(name).or_default() += by;
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        self.calls.push("record_metric");
        let name = self.metric_names[id as usize].clone();
        self.metrics.insert(name, value);
    }
}
