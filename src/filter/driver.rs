//! The adapter's work for each host callback: turn it into an event for the plugin's
//! [`Coordinator`], then carry out the actions that come back, answering each read, write
//! and dispatch at once. Every choice is the coordinator's; this only moves bytes between
//! it and the [`Host`].

use super::host::Host;
use super::stats::Stats;
use crate::config::{Config, Pages};
use crate::coordinator::{Action, Coordinator, Event, HeaderEdit};
use crate::gate::{self, Request};
use crate::log::Level;
use crate::oidc::MAX_DOCUMENT_BYTES;
use crate::routing::wire;
use std::collections::HashMap;

/// What `on_http_request_headers` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
    /// The VM's state could not be reached: answer with a 500 without it.
    Refused,
}

pub struct Plugin {
    coordinator: Coordinator,
    stats: Stats,
}

/// Every configured plugin of this VM, by root context.
#[derive(Default)]
pub struct Vm {
    plugins: HashMap<u32, Plugin>,
}

impl Vm {
    pub fn configure<H: Host>(
        &mut self,
        host: &mut H,
        root: u32,
        size: usize,
        random: fn(&mut [u8]) -> bool,
    ) -> bool {
        host.refresh_log_level();
        let bytes = host.plugin_configuration(size).unwrap_or_default();
        let config = match Config::parse(&bytes, &|k| host.env(k)) {
            Ok(config) => config,
            Err(e) => {
                let line = serde_json::json!({"event": "config_rejected", "error": e.to_string()});
                host.log(Level::Warn, &line.to_string());
                return false;
            }
        };
        let mut plugin = Plugin {
            coordinator: Coordinator::new(config, random),
            stats: Stats::default(),
        };
        let now = host.now_ms();
        drive(&mut plugin, host, None, now);
        self.plugins.insert(root, plugin);
        true
    }

    pub fn on_request<H: Host>(&mut self, host: &mut H, root: u32, stream: u32) -> Verdict {
        let Some(plugin) = self.plugins.get_mut(&root) else {
            return refuse(host);
        };
        // A header map we could not read is not an empty request: refuse it.
        let Some((headers, exact)) = host.request_header_map().and_then(wire::parse) else {
            return refuse(host);
        };
        let event = Event::Request {
            stream,
            req: Request { headers },
            exact,
        };
        let now = host.now_ms();
        plugin.coordinator.handle(event, now);
        match drive(plugin, host, Some(stream), now) {
            Some(Continued::Now) => Verdict::Continue,
            // Answered with a 500 already.
            Some(Continued::Failed) | None => Verdict::Pause,
        }
    }

    /// Adds the `Set-Cookie` headers a decision left for this stream's response.
    pub fn on_response<H: Host>(&mut self, host: &mut H, root: u32, stream: u32) {
        let reply = self
            .plugins
            .get_mut(&root)
            .and_then(|p| p.coordinator.take_reply(stream));
        for cookie in reply.unwrap_or_default() {
            host.add_response_header("set-cookie", &cookie);
        }
    }

    pub fn on_tick<H: Host>(&mut self, host: &mut H, root: u32) {
        host.refresh_log_level();
        if let Some(plugin) = self.plugins.get_mut(&root) {
            let now = host.now_ms();
            plugin.coordinator.handle(Event::Tick, now);
            drive(plugin, host, None, now);
            let c = &plugin.coordinator;
            plugin.stats.flush(host, c.metrics(), &c.gauges());
        }
    }

    pub fn on_callout_response<H: Host>(
        &mut self,
        host: &mut H,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(plugin) = self
            .plugins
            .values_mut()
            .find(|p| p.coordinator.owns(token))
        else {
            return;
        };
        let too_large = body_size > MAX_DOCUMENT_BYTES;
        let response = match too_large {
            true => None,
            false => host.callout_response(num_headers, body_size),
        };
        let answer = response.as_ref().map(|(s, b)| (*s, b.as_slice()));
        let now = host.now_ms();
        let event = Event::Answer {
            token,
            answer,
            too_large,
        };
        plugin.coordinator.handle(event, now);
        drive(plugin, host, None, now);
    }

    pub fn on_done<H: Host>(&mut self, host: &mut H, root: u32, stream: u32) {
        if let Some(plugin) = self.plugins.get_mut(&root) {
            // No clock: this runs for every request.
            plugin.coordinator.stream_done(stream);
            drive(plugin, host, None, 0);
        }
    }
}

/// How the stream whose callback this is was let through, if it was.
enum Continued {
    Now,
    /// Its header edits failed: it must not reach the app.
    Failed,
}

/// Carries out every action the coordinator has. `current`: the stream whose callback this
/// is (host calls act on it until another stream is switched to); `now`: the time read at
/// the callback's start, which the reports carry (one clock read per callback).
fn drive<H: Host>(
    plugin: &mut Plugin,
    host: &mut H,
    current: Option<u32>,
    now: u64,
) -> Option<Continued> {
    let mut effective = current;
    let mut continued = None;
    while let Some(action) = plugin.coordinator.poll_action() {
        let on = |host: &mut H, effective: &mut Option<u32>, stream: u32| {
            if *effective == Some(stream) {
                return true;
            }
            let ok = host.switch_to(stream);
            *effective = ok.then_some(stream);
            ok
        };
        match action {
            Action::Continue {
                stream,
                edit,
                resume,
            } => {
                if !on(host, &mut effective, stream) {
                    continue;
                }
                let edited = match &edit {
                    HeaderEdit::None => true,
                    HeaderEdit::Whole(map) => host.set_request_header_map(map),
                    HeaderEdit::Each { remove, set } => {
                        // Every edit is tried, whichever failed.
                        let mut ok = true;
                        for name in remove {
                            ok &= host.set_request_header(name, None);
                        }
                        for (name, value) in set {
                            ok &= host.set_request_header(name, Some(value));
                        }
                        ok
                    }
                };
                if !edited {
                    // A header we could not strip or set must not reach the app.
                    let page = gate::unavailable(plugin.coordinator.pages(), 500, None);
                    host.send_response(&page);
                    if Some(stream) == current && !resume {
                        continued = Some(Continued::Failed);
                    }
                } else if resume {
                    host.resume_request();
                } else if Some(stream) == current {
                    continued = Some(Continued::Now);
                }
            }
            Action::Respond { stream, response } => {
                if on(host, &mut effective, stream) {
                    host.send_response(&response);
                }
            }
            Action::Dispatch {
                call,
                cluster,
                callout,
                timeout_ms,
            } => {
                let token = host.dispatch(&cluster, &callout, timeout_ms);
                plugin
                    .coordinator
                    .handle(Event::Dispatched { call, token }, now);
            }
            Action::Read { read, keys } => {
                let values = keys.iter().map(|k| host.shared_get(k)).collect();
                plugin.coordinator.handle(Event::Read { read, values }, now);
            }
            Action::Write {
                write,
                key,
                bytes,
                cas,
            } => {
                let ok = host.shared_set(&key, &bytes, cas);
                if let Some(write) = write {
                    let version = host.shared_get(&key).1;
                    let event = Event::Written { write, ok, version };
                    plugin.coordinator.handle(event, now);
                }
            }
            Action::Log(level, line) => host.log(level, &line),
            Action::TickEvery(ms) => host.set_tick_ms(ms),
            Action::Measured {
                target,
                status,
                millis,
            } => plugin.stats.callout(host, target, status, millis),
        }
    }
    continued
}

/// Answers with a 500 when the VM is not in a state to decide: never pass the request on.
fn refuse<H: Host>(host: &mut H) -> Verdict {
    host.send_response(&gate::unavailable(&Pages::default(), 500, None));
    Verdict::Pause
}
