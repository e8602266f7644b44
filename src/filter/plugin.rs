//! Per-VM state of each configured plugin, and the carrying-out of the gate's decisions:
//! header edits, local responses, callouts, and requests parked until the provider's
//! metadata is loaded.
//!
//! Loading and refreshing the metadata is always started from the root context's tick, so
//! that the callouts (and the wake-ups of parked requests that follow them) belong to a
//! context that lives as long as the VM, never to a request that may go away.

use super::host;
use crate::config::Config;
use crate::gate::{
    self, Admitted, Context, Decision, Env, Level, Pending, Request, Response, Step,
};
use crate::oidc::{Discovery, MAX_DOCUMENT_BYTES};
use crate::pages;
use crate::provider::{self, Provider, KEY_REFETCH_MIN_SECS, RETRY_SECS};
use crate::session::SessionCache;
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

const SESSION_CACHE_ENTRIES: usize = 1024;
/// How often the root context looks for stale metadata or a newer copy from another worker.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// Ticks while a load is wanted right away.
const EAGER_TICK: Duration = Duration::from_millis(1);

enum Load {
    Idle,
    /// Discovery (then keys) in flight since this time.
    InFlight {
        since: u64,
    },
}

enum Wait {
    /// Decide again once the provider is known.
    Decide(Request),
    /// A login waiting for fresh keys.
    Keys(Pending),
}

struct Plugin {
    config: Rc<Config>,
    provider: Option<Rc<Provider>>,
    shared_cas: Option<u32>,
    load: Load,
    failed_at: Option<u64>,
    keys_fetched_at: u64,
    waiters: Vec<(u32, Wait)>,
    sessions: SessionCache<Admitted>,
}

enum Owner {
    Stream {
        root: u32,
        stream: u32,
        pending: Pending,
    },
    Discovery {
        root: u32,
    },
    Keys {
        root: u32,
        discovery: Box<Discovery>,
    },
}

#[derive(Default)]
struct Vm {
    plugins: HashMap<u32, Plugin>,
    callouts: HashMap<u32, Owner>,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// Runs `f` on the VM state. Host calls never call back into the VM synchronously (Envoy
/// defers local replies and resumptions), so a nested borrow means a bug; we fail closed.
fn with_vm<R>(fallback: impl FnOnce() -> R, f: impl FnOnce(&mut Vm) -> R) -> R {
    VM.with(|vm| match vm.try_borrow_mut() {
        Ok(mut vm) => f(&mut vm),
        Err(_) => {
            host::log_error("{\"event\":\"error\",\"reason\":\"reentrant_call\"}");
            fallback()
        }
    })
}

fn shared_key(config: &Config) -> String {
    format!("wasm-oauth2-proxy/provider/{}", config.issuer)
}

pub fn configure(root: u32, size: usize) -> bool {
    host::refresh_log_level();
    let bytes = host::plugin_configuration(size).unwrap_or_default();
    match Config::parse(&bytes, &|k| std::env::var(k).ok()) {
        Ok(config) => {
            let plugin = Plugin {
                config: Rc::new(config),
                provider: None,
                shared_cas: None,
                load: Load::Idle,
                failed_at: None,
                keys_fetched_at: 0,
                waiters: Vec::new(),
                sessions: SessionCache::new(SESSION_CACHE_ENTRIES),
            };
            with_vm(
                || (),
                |vm| {
                    vm.plugins.insert(root, plugin);
                },
            );
            // Load the provider metadata right away so the first login does not wait.
            host::set_tick(EAGER_TICK);
            true
        }
        Err(e) => {
            let line = serde_json::json!({"event": "config_rejected", "error": e.to_string()});
            host::log_error(&line.to_string());
            false
        }
    }
}

pub fn on_request(root: u32, stream: u32) -> Action {
    let (headers, exact) = host::request_headers();
    let req = Request { headers };
    with_vm(refuse, |vm| {
        let Some(plugin) = vm.plugins.get_mut(&root) else {
            return refuse();
        };
        let step = decide(plugin, &req);
        carry_out(vm, root, stream, step, Some(req), exact, false)
    })
}

fn log_step(step: &Step) {
    if let Some((level, line)) = &step.log {
        host::log(*level, line);
    }
}

/// Edits the request headers: no host call when there is nothing to change, one that writes
/// the whole map when the headers as read are at hand (each separate call costs a round trip
/// out of the VM, which dominated the hot path), otherwise one call per header.
fn apply_edits(exact: Option<&Request>, remove: &[String], set: &[(String, String)]) -> bool {
    if remove.is_empty() && set.is_empty() {
        return true;
    }
    if let Some(req) = exact {
        return host::replace_request_headers(gate::edited_headers(&req.headers, remove, set));
    }
    let mut ok = true;
    for name in remove {
        ok &= host::set_request_header(name, None);
    }
    for (name, value) in set {
        ok &= host::set_request_header(name, Some(value));
    }
    ok
}

/// Lets the request go on once its headers are edited; `ok` false means an edit failed,
/// and a header we could not strip or set must not reach the app.
fn continued(ok: bool, resumed: bool) -> Action {
    if !ok {
        host::send_response(&unavailable(500));
        return Action::Pause;
    }
    if resumed {
        host::resume_request();
    }
    Action::Continue
}

/// Answers with a 500 when the VM is not in a state to decide: never pass the request on.
fn refuse() -> Action {
    host::send_response(&unavailable(500));
    Action::Pause
}

fn unavailable(status: u16) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: pages::error(
            status,
            "The login service is temporarily unavailable. Please try again shortly.",
            "/",
        ),
    }
}

/// Runs one gate entry point with this plugin's configuration, metadata, session cache,
/// the host's clock and its random source.
fn with_gate(plugin: &mut Plugin, f: impl FnOnce(&mut Context, &mut Env) -> Step) -> Step {
    let config = Rc::clone(&plugin.config);
    let provider = plugin.provider.clone();
    let mut random = host::random;
    let mut env = Env {
        now: host::now(),
        random: &mut random,
    };
    let mut cx = Context {
        config: &config,
        provider: provider.as_deref(),
        sessions: &mut plugin.sessions,
    };
    f(&mut cx, &mut env)
}

fn decide(plugin: &mut Plugin, req: &Request) -> Step {
    with_gate(plugin, |cx, env| gate::decide(cx, req, env))
}

fn resume_with(
    plugin: &mut Plugin,
    pending: Pending,
    response: Option<(u16, &[u8])>,
    keys_only: bool,
) -> Step {
    with_gate(plugin, |cx, env| {
        if keys_only {
            gate::resume_keys(cx, pending, env)
        } else {
            gate::resume(cx, pending, response, env)
        }
    })
}

/// Applies a decision for `stream`. `exact` says `req` holds the headers byte for byte, so
/// they may be written back whole. `resumed` is true when the stream was paused earlier and
/// the caller has already made it the effective context.
fn carry_out(
    vm: &mut Vm,
    root: u32,
    stream: u32,
    step: Step,
    req: Option<Request>,
    exact: bool,
    resumed: bool,
) -> Action {
    log_step(&step);
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        host::send_response(&unavailable(500));
        return Action::Pause;
    };
    match step.decision {
        Decision::Continue { remove, set } => {
            let ok = apply_edits(req.as_ref().filter(|_| exact), &remove, &set);
            continued(ok, resumed)
        }
        Decision::Respond(r) => {
            host::send_response(&r);
            Action::Pause
        }
        Decision::NeedProvider => {
            let now = host::now();
            let recently_failed = plugin
                .failed_at
                .is_some_and(|t| now.saturating_sub(t) < RETRY_SECS);
            match req {
                Some(req) if !recently_failed => {
                    plugin.waiters.push((stream, Wait::Decide(req)));
                    host::set_tick(EAGER_TICK);
                }
                _ => {
                    host::log(Level::Warn, "{\"event\":\"provider_unavailable\"}");
                    host::send_response(&unavailable(503));
                }
            }
            Action::Pause
        }
        Decision::Call(callout, pending) => {
            let config = Rc::clone(&plugin.config);
            match host::dispatch(&config.idp_cluster, &callout, config.idp_timeout_ms) {
                Some(token) => {
                    vm.callouts.insert(
                        token,
                        Owner::Stream {
                            root,
                            stream,
                            pending: pending.0,
                        },
                    );
                }
                None => {
                    host::log(
                        Level::Warn,
                        "{\"event\":\"callout_failed\",\"reason\":\"dispatch\"}",
                    );
                    host::send_response(&unavailable(502));
                }
            }
            Action::Pause
        }
        Decision::RefreshKeys(pending) => {
            let now = host::now();
            if now.saturating_sub(plugin.keys_fetched_at) < KEY_REFETCH_MIN_SECS
                && matches!(plugin.load, Load::Idle)
            {
                // Fetched moments ago: the kid is simply unknown. Finish (and fail) now.
                let step = resume_with(plugin, pending.0, None, true);
                return carry_out(vm, root, stream, step, None, false, resumed);
            }
            plugin.waiters.push((stream, Wait::Keys(pending.0)));
            host::set_tick(EAGER_TICK);
            Action::Pause
        }
    }
}

pub fn on_tick(root: u32) {
    host::refresh_log_level();
    with_vm(
        || (),
        |vm| {
            let now = host::now();
            let Some(plugin) = vm.plugins.get_mut(&root) else {
                return;
            };
            adopt_shared(plugin);
            if let Load::InFlight { since } = plugin.load {
                // The callout's own timeout answers long before this; a lost answer must not
                // wedge loading forever.
                if now.saturating_sub(since) > plugin.config.idp_timeout_ms / 1000 + 5 {
                    plugin.load = Load::Idle;
                } else {
                    host::set_tick(IDLE_TICK);
                    return;
                }
            }
            let has_decide_waiters = plugin
                .waiters
                .iter()
                .any(|(_, w)| matches!(w, Wait::Decide(_)));
            let has_key_waiters = plugin
                .waiters
                .iter()
                .any(|(_, w)| matches!(w, Wait::Keys(_)));
            let retry_due = plugin
                .failed_at
                .is_none_or(|t| now.saturating_sub(t) >= RETRY_SECS);
            let need_full = match &plugin.provider {
                None => has_decide_waiters || retry_due,
                Some(p) => p.is_stale(now),
            };
            if need_full || has_key_waiters {
                start_discovery(vm, root, now);
            } else if has_decide_waiters {
                wake(vm, root);
            }
            host::set_tick(IDLE_TICK);
        },
    );
}

/// Takes a newer metadata snapshot another worker stored, if there is one.
fn adopt_shared(plugin: &mut Plugin) {
    let (bytes, cas) = host::shared_get(&shared_key(&plugin.config));
    if cas.is_none() || cas == plugin.shared_cas {
        return;
    }
    let Some(p) = bytes.and_then(|b| Provider::from_snapshot(&b, &plugin.config)) else {
        return;
    };
    let newer = plugin
        .provider
        .as_ref()
        .is_none_or(|mine| p.fetched_at > mine.fetched_at);
    plugin.shared_cas = cas;
    if newer {
        plugin.provider = Some(Rc::new(p));
    }
}

fn start_discovery(vm: &mut Vm, root: u32, now: u64) {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return;
    };
    let config = Rc::clone(&plugin.config);
    let token = provider::discovery_request(&config)
        .ok()
        .and_then(|c| host::dispatch(&config.idp_cluster, &c, config.idp_timeout_ms));
    match token {
        Some(token) => {
            plugin.load = Load::InFlight { since: now };
            vm.callouts.insert(token, Owner::Discovery { root });
        }
        None => load_failed(vm, root, "dispatch"),
    }
}

pub fn on_callout_response(token: u32, num_headers: usize, body_size: usize) {
    with_vm(
        || (),
        |vm| {
            let Some(owner) = vm.callouts.remove(&token) else {
                return;
            };
            let response = if body_size > MAX_DOCUMENT_BYTES {
                None
            } else {
                host::callout_response(num_headers, body_size)
            };
            let answer = response.as_ref().map(|(s, b)| (*s, b.as_slice()));
            match owner {
                Owner::Stream {
                    root,
                    stream,
                    pending,
                } => {
                    let Some(plugin) = vm.plugins.get_mut(&root) else {
                        return;
                    };
                    if !host::switch_to(stream) {
                        return;
                    }
                    let step = resume_with(plugin, pending, answer, false);
                    carry_out(vm, root, stream, step, None, false, true);
                }
                Owner::Discovery { root } => {
                    let Some(plugin) = vm.plugins.get_mut(&root) else {
                        return;
                    };
                    let config = Rc::clone(&plugin.config);
                    let next = provider::on_discovery(&config, answer)
                        .map_err(|e| e.to_string())
                        .and_then(|d| {
                            let callout = provider::jwks_request(&d).map_err(|e| e.to_string())?;
                            let token = host::dispatch(
                                &config.idp_cluster,
                                &callout,
                                config.idp_timeout_ms,
                            )
                            .ok_or_else(|| "dispatch".to_string())?;
                            Ok((token, d))
                        });
                    match next {
                        Ok((token, d)) => {
                            vm.callouts.insert(
                                token,
                                Owner::Keys {
                                    root,
                                    discovery: Box::new(d),
                                },
                            );
                        }
                        Err(e) => load_failed(vm, root, &format!("discovery: {e}")),
                    }
                }
                Owner::Keys { root, discovery } => {
                    let now = host::now();
                    match provider::on_jwks(*discovery, answer, now) {
                        Ok(p) => {
                            if let Some(plugin) = vm.plugins.get_mut(&root) {
                                if let Some(snapshot) = p.snapshot() {
                                    let key = shared_key(&plugin.config);
                                    host::shared_set(&key, &snapshot, None);
                                    plugin.shared_cas = host::shared_get(&key).1;
                                }
                                plugin.provider = Some(Rc::new(p));
                                plugin.load = Load::Idle;
                                plugin.failed_at = None;
                                plugin.keys_fetched_at = now;
                                host::log(Level::Info, "{\"event\":\"provider_loaded\"}");
                            }
                            wake(vm, root);
                        }
                        Err(e) => load_failed(vm, root, &format!("jwks: {e}")),
                    }
                }
            }
        },
    );
}

fn load_failed(vm: &mut Vm, root: u32, reason: &str) {
    let line = serde_json::json!({"event": "provider_load_failed", "reason": reason});
    host::log(Level::Warn, &line.to_string());
    if let Some(plugin) = vm.plugins.get_mut(&root) {
        plugin.load = Load::Idle;
        plugin.failed_at = Some(host::now());
        // Keys may still be fetched again soon; do not count a failure as a fetch.
    }
    wake(vm, root);
}

/// Gives every parked request its decision now that loading finished (or failed).
fn wake(vm: &mut Vm, root: u32) {
    let waiters = match vm.plugins.get_mut(&root) {
        Some(p) => std::mem::take(&mut p.waiters),
        None => return,
    };
    for (stream, wait) in waiters {
        if !host::switch_to(stream) {
            continue;
        }
        let Some(plugin) = vm.plugins.get_mut(&root) else {
            return;
        };
        let step = match wait {
            Wait::Decide(req) if plugin.provider.is_some() => decide(plugin, &req),
            Wait::Decide(_) => {
                host::log(Level::Warn, "{\"event\":\"provider_unavailable\"}");
                host::send_response(&unavailable(503));
                continue;
            }
            Wait::Keys(pending) => resume_with(plugin, pending, None, true),
        };
        carry_out(vm, root, stream, step, None, false, true);
    }
}

pub fn forget_stream(root: u32, stream: u32) {
    with_vm(
        || (),
        |vm| {
            if let Some(plugin) = vm.plugins.get_mut(&root) {
                plugin.waiters.retain(|(s, _)| *s != stream);
            }
            vm.callouts.retain(
                |_, owner| !matches!(owner, Owner::Stream { stream: s, .. } if *s == stream),
            );
        },
    );
}
