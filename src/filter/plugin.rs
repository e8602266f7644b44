//! Per-VM state of each configured plugin, and the carrying-out of what the core decides:
//! the gate's decisions for requests, the loader's actions for metadata, the refresh slot
//! reads and writes in shared data. Every choice is the core's; this file only moves bytes
//! between it and the host.

use super::host;
use super::loading::perform;
use super::stats::Stats;
use super::steps::{carry_out, publish, refuse, with_gate};
use crate::cache::Cache;
use crate::config::Config;
use crate::gate::{
    self, Admitted, Exchanged, Pending, Request, BEARER_CACHE_BYTES, BEARER_CACHE_ENTRIES,
    EXCHANGE_CACHE_BYTES, EXCHANGE_CACHE_ENTRIES, SESSION_CACHE_BYTES, SESSION_CACHE_ENTRIES,
};
use crate::loader::{Fetch, Loader, Pace};
use crate::metrics::Metrics;
use crate::oidc::MAX_DOCUMENT_BYTES;
use crate::provider::{Provider, Providers, MAIN};
use crate::refresh;
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

pub(super) struct Plugin {
    pub(super) config: Rc<Config>,
    pub(super) providers: Providers,
    pub(super) loader: Loader,
    pub(super) sessions: Cache<Admitted>,
    pub(super) bearers: Cache<Admitted>,
    pub(super) exchanged: Cache<Exchanged>,
    pub(super) metrics: Metrics,
    pub(super) stats: Stats,
}

pub(super) enum Owner {
    Stream {
        root: u32,
        stream: u32,
        pending: Pending,
    },
    /// A refresh whose request went away: its outcome is still published (the IdP may
    /// have rotated the refresh token), and nobody is answered.
    Orphan { root: u32, pending: Pending },
    Load {
        root: u32,
        issuer: usize,
        fetch: Fetch,
    },
}

#[derive(Default)]
pub(super) struct Vm {
    pub(super) plugins: HashMap<u32, Plugin>,
    pub(super) callouts: HashMap<u32, Owner>,
    /// `Set-Cookie` values for a stream's response (a refreshed or re-sealed session).
    pub(super) replies: HashMap<u32, Vec<String>>,
    /// When each callout in flight was sent (ms), for its latency.
    pub(super) sent: HashMap<u32, u64>,
}

impl Vm {
    /// Remembers who waits for callout `token`'s answer.
    pub(super) fn await_answer(&mut self, token: u32, owner: Owner) {
        self.callouts.insert(token, owner);
        self.sent.insert(token, host::now_ms());
    }

    /// Forgets callouts whose answer can no longer come: the host's own timeout passed long
    /// ago, or it cancelled them with their stream (a refresh kept for its outcome, say).
    /// Without this, clients aborting requests mid-callout would grow both maps for good.
    fn expire_callouts(&mut self, now_ms: u64) {
        let (plugins, callouts) = (&self.plugins, &mut self.callouts);
        self.sent.retain(|token, sent| {
            let root = match callouts.get(token) {
                Some(
                    Owner::Stream { root, .. }
                    | Owner::Orphan { root, .. }
                    | Owner::Load { root, .. },
                ) => *root,
                None => return false,
            };
            let timeout = plugins.get(&root).map_or(0, |p| p.config.idp_timeout_ms);
            let live = now_ms.saturating_sub(*sent) <= timeout.saturating_add(LATE_ANSWER_MS);
            if !live {
                callouts.remove(token);
            }
            live
        });
    }
}

/// How long after its timeout a callout's answer is still waited for.
const LATE_ANSWER_MS: u64 = 5000;

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// Runs `f` on the VM state. Host calls never call back into the VM synchronously (Envoy
/// defers local replies and resumptions), so a nested borrow means a bug; we fail closed.
pub(super) fn with_vm<R>(fallback: impl FnOnce() -> R, f: impl FnOnce(&mut Vm) -> R) -> R {
    VM.with(|vm| match vm.try_borrow_mut() {
        Ok(mut vm) => f(&mut vm),
        Err(_) => {
            host::log_error("{\"event\":\"error\",\"reason\":\"reentrant_call\"}");
            fallback()
        }
    })
}

pub fn configure(root: u32, size: usize) -> bool {
    host::refresh_log_level();
    let bytes = host::plugin_configuration(size).unwrap_or_default();
    let config = match Config::parse(&bytes, &|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            let line = serde_json::json!({"event": "config_rejected", "error": e.to_string()});
            host::log_error(&line.to_string());
            return false;
        }
    };
    // Shared data has no atomic create: every refresh slot exists before any request.
    for key in refresh::slot_keys(&config.cookie.name) {
        if host::shared_get(&key).1.is_none() {
            host::shared_set(&key, b"free", None);
        }
    }
    let mut providers = Providers::new(config.issuers.len());
    if let Some(fixed) = Provider::fixed(&config) {
        providers.set(MAIN, fixed);
    }
    let plugin = Plugin {
        loader: Loader::new(&config),
        config: Rc::new(config),
        providers,
        sessions: Cache::new(SESSION_CACHE_ENTRIES, SESSION_CACHE_BYTES),
        bearers: Cache::new(BEARER_CACHE_ENTRIES, BEARER_CACHE_BYTES),
        exchanged: Cache::new(EXCHANGE_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES),
        metrics: Metrics::default(),
        stats: Stats::default(),
    };
    with_vm(|| (), |vm| drop(vm.plugins.insert(root, plugin)));
    set_pace(Pace::Eager);
    true
}

pub fn on_request(root: u32, stream: u32) -> Action {
    // A header map we could not read is not an empty request: refuse it.
    let Some((headers, exact)) = host::request_headers() else {
        return refuse();
    };
    let req = Request { headers };
    with_vm(refuse, |vm| {
        let Some(plugin) = vm.plugins.get_mut(&root) else {
            return refuse();
        };
        let step = with_gate(plugin, |cx, env| gate::decide(cx, &req, env));
        carry_out(vm, root, stream, step, Some(req).filter(|_| exact), false)
    })
}

/// Adds the `Set-Cookie` headers a decision left for this stream's response.
pub fn on_response(stream: u32) {
    let reply = with_vm(|| None, |vm| vm.replies.remove(&stream));
    for cookie in reply.unwrap_or_default() {
        host::add_response_header("set-cookie", &cookie);
    }
}

pub(super) fn set_pace(pace: Pace) {
    host::set_tick(match pace {
        Pace::Eager => Duration::from_millis(1),
        Pace::Poll => Duration::from_millis(10),
        Pace::Idle => Duration::from_secs(5),
    });
}

pub fn on_tick(root: u32) {
    host::refresh_log_level();
    // Without a clock nothing can be judged stale; try again next tick.
    let Some(now) = host::now() else {
        return set_pace(Pace::Idle);
    };
    with_vm(
        || (),
        |vm| {
            vm.expire_callouts(host::now_ms());
            let Some(plugin) = vm.plugins.get_mut(&root) else {
                return;
            };
            let shared: Vec<_> = plugin
                .loader
                .shared_keys()
                .iter()
                .map(|k| host::shared_get(k))
                .collect();
            let config = Rc::clone(&plugin.config);
            let actions = plugin
                .loader
                .tick(&config, &mut plugin.providers, now, &shared);
            perform(vm, root, actions, now);
            if let Some(p) = vm.plugins.get_mut(&root) {
                set_pace(p.loader.pace());
                let gauges = [
                    ("sessions_cached", p.sessions.len() as u64),
                    ("bearer_tokens_cached", p.bearers.len() as u64),
                    ("exchanged_tokens_cached", p.exchanged.len() as u64),
                    (
                        "cache_evictions",
                        p.sessions.evictions() + p.bearers.evictions(),
                    ),
                    ("parked_requests", p.loader.parked() as u64),
                ];
                p.stats.flush(&p.metrics, &gauges);
            }
        },
    );
}

pub fn on_callout_response(token: u32, num_headers: usize, body_size: usize) {
    with_vm(
        || (),
        |vm| {
            let Some(owner) = vm.callouts.remove(&token) else {
                return;
            };
            let response = match body_size {
                n if n > MAX_DOCUMENT_BYTES => None,
                _ => host::callout_response(num_headers, body_size),
            };
            let answer = response.as_ref().map(|(s, b)| (*s, b.as_slice()));
            let now = host::now().unwrap_or(0);
            let millis = host::now_ms().saturating_sub(vm.sent.remove(&token).unwrap_or(0));
            let (root, target) = match &owner {
                Owner::Stream { root, pending, .. } | Owner::Orphan { root, pending } => {
                    (*root, pending.target())
                }
                Owner::Load { root, fetch, .. } => (*root, fetch.target()),
            };
            if let Some(p) = vm.plugins.get_mut(&root) {
                p.stats.callout(target, answer.map(|(s, _)| s), millis);
            }
            match owner {
                Owner::Stream {
                    root,
                    stream,
                    pending,
                } => {
                    let Some(plugin) = vm.plugins.get_mut(&root) else {
                        return;
                    };
                    if host::switch_to(stream) {
                        let step =
                            with_gate(plugin, |cx, env| gate::resume(cx, pending, answer, env));
                        carry_out(vm, root, stream, step, None, true);
                    }
                }
                Owner::Orphan { root, pending } => {
                    if let Some(plugin) = vm.plugins.get_mut(&root) {
                        let step =
                            with_gate(plugin, |cx, env| gate::resume(cx, pending, answer, env));
                        step.publish.iter().for_each(publish);
                    }
                }
                Owner::Load {
                    root,
                    issuer,
                    fetch,
                } => {
                    let Some(plugin) = vm.plugins.get_mut(&root) else {
                        return;
                    };
                    let config = Rc::clone(&plugin.config);
                    let actions = plugin.loader.on_answer(
                        &config,
                        &mut plugin.providers,
                        issuer,
                        fetch,
                        answer,
                        now,
                    );
                    perform(vm, root, actions, now);
                }
            }
        },
    );
}

pub fn forget_stream(root: u32, stream: u32) {
    with_vm(
        || (),
        |vm| {
            if let Some(plugin) = vm.plugins.get_mut(&root) {
                plugin.loader.forget(stream);
            }
            vm.replies.remove(&stream);
            // A refresh in flight still lands (its outcome is shared); anything else is dropped.
            let callouts = std::mem::take(&mut vm.callouts);
            vm.callouts = callouts
                .into_iter()
                .filter_map(|(token, owner)| match owner {
                    Owner::Stream {
                        root,
                        stream: s,
                        pending,
                    } if s == stream => pending
                        .outlives_request()
                        .then_some((token, Owner::Orphan { root, pending })),
                    owner => Some((token, owner)),
                })
                .collect();
            let callouts = &vm.callouts;
            vm.sent.retain(|token, _| callouts.contains_key(token));
        },
    );
}
