//! Per-VM state of each configured plugin, and the carrying-out of the gate's decisions:
//! header edits, local responses, callouts, and requests parked until the provider's
//! metadata is loaded.
//!
//! Loading and refreshing the metadata is always started from the root context's tick, so
//! that the callouts (and the wake-ups of parked requests that follow them) belong to a
//! context that lives as long as the VM, never to a request that may go away.

use super::host;
use crate::cache::Cache;
use crate::config::Config;
use crate::gate::{
    self, Admitted, Callout, Context, Decision, Env, Exchanged, Level, Pending, Publish,
    RefreshCall, Request, Settled, Step, BEARER_CACHE_BYTES, BEARER_CACHE_ENTRIES,
    EXCHANGE_CACHE_BYTES, EXCHANGE_CACHE_ENTRIES, SESSION_CACHE_BYTES, SESSION_CACHE_ENTRIES,
};
use crate::oidc::{Discovery, MAX_DOCUMENT_BYTES};
use crate::provider::{self, Provider, Providers, KEY_REFETCH_MIN_SECS, MAIN, RETRY_SECS};
use crate::refresh::{self, Plan};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
/// How often the root context looks for stale metadata or a newer copy from another worker.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// Ticks while a load is wanted right away.
const EAGER_TICK: Duration = Duration::from_millis(1);
/// How often requests waiting for another worker's refresh look at its slot.
const REFRESH_POLL: Duration = Duration::from_millis(10);
/// Bounds on the requests parked while an issuer's metadata or keys load: a flood of tokens
/// naming an unknown `kid` (each holding up to a whole header map) must not grow the VM.
const MAX_PARKED: usize = 1024;
const MAX_PARKED_BYTES: usize = 8 << 20;

enum Load {
    Idle,
    /// Discovery (then keys) in flight since this time.
    InFlight {
        since: u64,
    },
}

enum Wait {
    /// Decide again once the issuer is known.
    Decide(Request),
    /// A login or bearer token waiting for fresh keys.
    Keys(Pending),
}

/// Loading state of one issuer's metadata.
struct Loading {
    shared_cas: Option<u32>,
    load: Load,
    failed_at: Option<u64>,
    keys_fetched_at: u64,
}

struct Plugin {
    config: Rc<Config>,
    providers: Providers,
    /// By issuer id, like `providers`.
    loading: Vec<Loading>,
    /// Parked streams, each waiting for one issuer.
    waiters: Vec<(u32, usize, Wait)>,
    sessions: Cache<Admitted>,
    bearers: Cache<Admitted>,
    exchanged: Cache<Exchanged>,
    /// Streams waiting for a refresh of their session that someone else is making.
    refreshing: Vec<(u32, Box<RefreshCall>)>,
}

impl Wait {
    fn weight(&self) -> usize {
        match self {
            Wait::Decide(req) => req.weight(),
            Wait::Keys(pending) => pending.weight(),
        }
    }
}

impl Plugin {
    fn loading(&mut self, issuer: usize) -> Option<&mut Loading> {
        self.loading.get_mut(issuer)
    }

    /// Whether one more parked request of `weight` bytes fits the bounds.
    fn room_for(&self, weight: usize) -> bool {
        let held: usize = self
            .waiters
            .iter()
            .map(|(_, _, w)| w.weight())
            .sum::<usize>()
            + self
                .refreshing
                .iter()
                .map(|(_, c)| c.pending.0.weight())
                .sum::<usize>();
        self.waiters.len() + self.refreshing.len() < MAX_PARKED && held + weight <= MAX_PARKED_BYTES
    }

    /// Parks `stream` until `issuer` loads; `false` (nothing parked) when the bounds are hit.
    fn park(&mut self, stream: u32, issuer: usize, wait: Wait) -> bool {
        if !self.room_for(wait.weight()) {
            return false;
        }
        self.waiters.push((stream, issuer, wait));
        host::set_tick(EAGER_TICK);
        true
    }

    /// Parks `stream` until another request's refresh of its session lands.
    fn park_refresh(&mut self, stream: u32, call: Box<RefreshCall>) -> bool {
        if !self.room_for(call.pending.0.weight()) {
            return false;
        }
        self.refreshing.push((stream, call));
        host::set_tick(REFRESH_POLL);
        true
    }

    fn issuer_url(&self, issuer: usize) -> Option<String> {
        self.config.issuers.get(issuer).map(|i| i.url.clone())
    }
}

enum Owner {
    Stream {
        root: u32,
        stream: u32,
        pending: Pending,
    },
    /// A refresh whose request went away: its outcome is still published (the IdP may
    /// have rotated the refresh token), and nobody is answered.
    Orphan {
        root: u32,
        pending: Pending,
    },
    Discovery {
        root: u32,
        issuer: usize,
    },
    Keys {
        root: u32,
        issuer: usize,
        discovery: Box<Discovery>,
    },
}

#[derive(Default)]
struct Vm {
    plugins: HashMap<u32, Plugin>,
    callouts: HashMap<u32, Owner>,
    /// `Set-Cookie` values for a stream's response (a refreshed or re-sealed session).
    replies: HashMap<u32, Vec<String>>,
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

/// Sends a callout to the cluster that serves its host; `None` when no cluster does or the
/// host refused the dispatch.
fn dispatch(config: &Config, callout: &Callout) -> Option<u32> {
    let cluster = config.cluster_for(&callout.authority)?;
    host::dispatch(cluster, callout, config.idp_timeout_ms)
}

pub fn configure(root: u32, size: usize) -> bool {
    host::refresh_log_level();
    let bytes = host::plugin_configuration(size).unwrap_or_default();
    match Config::parse(&bytes, &|k| std::env::var(k).ok()) {
        Ok(config) => {
            let issuers = config.issuers.len();
            let plugin = Plugin {
                config: Rc::new(config),
                providers: Providers::new(issuers),
                loading: (0..issuers)
                    .map(|_| Loading {
                        shared_cas: None,
                        load: Load::Idle,
                        failed_at: None,
                        keys_fetched_at: 0,
                    })
                    .collect(),
                waiters: Vec::new(),
                sessions: Cache::new(SESSION_CACHE_ENTRIES, SESSION_CACHE_BYTES),
                bearers: Cache::new(BEARER_CACHE_ENTRIES, BEARER_CACHE_BYTES),
                exchanged: Cache::new(EXCHANGE_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES),
                refreshing: Vec::new(),
            };
            create_refresh_slots(&plugin.config);
            let mut plugin = plugin;
            // GitHub's endpoints are fixed and it signs nothing: nothing to load.
            if let (Some(d), false) = (
                plugin.config.provider.endpoints.clone(),
                plugin.config.provider.kind.has_id_token(),
            ) {
                plugin.providers.set(MAIN, Provider::without_keys(d));
            }
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

/// Shared data has no atomic create: two workers writing a missing refresh slot at once
/// would both think they claimed it. Every slot exists (as free) before any request.
fn create_refresh_slots(config: &Config) {
    for n in 0..refresh::SLOTS {
        let key = refresh::slot_key_at(&config.cookie.name, n);
        if host::shared_get(&key).1.is_none() {
            host::shared_set(&key, b"free", None);
        }
    }
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
        host::send_response(&gate::unavailable(500, None));
        return Action::Pause;
    }
    if resumed {
        host::resume_request();
    }
    Action::Continue
}

/// Answers with a 500 when the VM is not in a state to decide: never pass the request on.
fn refuse() -> Action {
    host::send_response(&gate::unavailable(500, None));
    Action::Pause
}

/// Runs one gate entry point with this plugin's configuration, metadata, caches, the host's
/// clock and its random source. Without a clock nothing can be decided (every expiry would
/// be wrong): a 500, never a pass-through.
fn with_gate(plugin: &mut Plugin, f: impl FnOnce(&mut Context, &mut Env) -> Step) -> Step {
    let Some(now) = host::now() else {
        return Step {
            decision: Decision::Respond(gate::unavailable(500, None)),
            log: Some((
                Level::Warn,
                "{\"event\":\"error\",\"reason\":\"clock\"}".into(),
            )),
            publish: None,
        };
    };
    let config = Rc::clone(&plugin.config);
    let mut random = host::random;
    let mut env = Env {
        now,
        random: &mut random,
    };
    let mut cx = Context {
        config: &config,
        providers: &plugin.providers,
        sessions: &mut plugin.sessions,
        bearers: &mut plugin.bearers,
        exchanged: &mut plugin.exchanged,
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
    // Published before the decision is carried out, so the requests it wakes see it.
    if let Some(p) = &step.publish {
        publish(p);
    }
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        host::send_response(&gate::unavailable(500, None));
        return Action::Pause;
    };
    match step.decision {
        Decision::Continue { remove, set, reply } => {
            let ok = apply_edits(req.as_ref().filter(|_| exact), &remove, &set);
            if ok && !reply.is_empty() {
                vm.replies.insert(stream, reply);
            }
            continued(ok, resumed)
        }
        Decision::Refresh(call) => refresh(vm, root, stream, call, resumed),
        Decision::Respond(r) => {
            host::send_response(&r);
            Action::Pause
        }
        Decision::NeedProvider(issuer) => {
            let now = host::now().unwrap_or(0);
            let recently_failed = plugin
                .loading(issuer)
                .and_then(|l| l.failed_at)
                .is_some_and(|t| now.saturating_sub(t) < RETRY_SECS);
            let reply = gate::unavailable(503, req.as_ref());
            let parked = match req {
                Some(req) if !recently_failed && plugin.loading(issuer).is_some() => {
                    plugin.park(stream, issuer, Wait::Decide(req))
                }
                _ => false,
            };
            if !parked {
                host::log(Level::Warn, "{\"event\":\"provider_unavailable\"}");
                host::send_response(&reply);
            }
            Action::Pause
        }
        Decision::Call(callout, pending) => {
            match dispatch(&plugin.config, &callout) {
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
                    host::send_response(&gate::unavailable(502, None));
                }
            }
            Action::Pause
        }
        Decision::RefreshKeys(issuer, pending) => {
            let now = host::now().unwrap_or(0);
            let recent = |t: u64| now.saturating_sub(t) < KEY_REFETCH_MIN_SECS;
            // Tried moments ago, whether it worked or not: forged tokens naming unknown kids
            // must not make us call an IdP (up or down) more than once per interval.
            let tried_moments_ago = plugin.loading(issuer).is_none_or(|l| {
                matches!(l.load, Load::Idle)
                    && (recent(l.keys_fetched_at) || l.failed_at.is_some_and(recent))
            });
            if tried_moments_ago {
                // The kid is simply unknown. Finish (and fail) now.
                let step = resume_with(plugin, pending.0, None, true);
                return carry_out(vm, root, stream, step, None, false, resumed);
            }
            if !plugin.park(stream, issuer, Wait::Keys(pending.0)) {
                host::log(Level::Warn, "{\"event\":\"provider_unavailable\"}");
                host::send_response(&gate::unavailable(503, None));
            }
            Action::Pause
        }
    }
}

/// A request whose session is due for a refresh: make it (claiming the session's slot),
/// wait for the one being made, or take its outcome.
fn refresh(vm: &mut Vm, root: u32, stream: u32, call: Box<RefreshCall>, resumed: bool) -> Action {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return refuse();
    };
    let now = host::now().unwrap_or(0);
    let (bytes, cas) = host::shared_get(&call.slot);
    let timeout = plugin.config.idp_timeout_ms / 1000 + 1;
    let plan = refresh::plan(
        bytes.as_deref(),
        &call.session_id,
        call.generation,
        now,
        timeout,
    );
    let settled = match plan {
        Plan::Claim(busy) if cas.is_some() && host::shared_set(&call.slot, &busy, cas) => {
            let RefreshCall {
                callout,
                mut pending,
                ..
            } = *call;
            pending.0.set_claim(busy);
            if let Some(token) = dispatch(&plugin.config, &callout) {
                let pending = pending.0;
                vm.callouts.insert(
                    token,
                    Owner::Stream {
                        root,
                        stream,
                        pending,
                    },
                );
                return Action::Pause;
            }
            // As an IdP that cannot be reached, so the claim is released for the others.
            let step = resume_with(plugin, pending.0, None, false);
            return carry_out(vm, root, stream, step, None, false, resumed);
        }
        // Someone else claimed it between our read and write.
        Plan::Claim(_) | Plan::Wait => {
            if cas.is_none() {
                // A slot that does not exist yet: create it, and claim it on the next poll.
                host::shared_set(&call.slot, b"free", None);
            }
            if !plugin.park_refresh(stream, call) {
                host::log(Level::Warn, "{\"event\":\"refresh_wait_full\"}");
                host::send_response(&gate::unavailable(503, None));
            }
            return Action::Pause;
        }
        Plan::Adopt(cookie) => Settled::Adopt(cookie),
        Plan::Ended => Settled::Ended,
        Plan::Unavailable => Settled::Unavailable,
    };
    let step = with_gate(plugin, |cx, env| {
        gate::settle(cx, call.pending.0, settled, env)
    });
    carry_out(vm, root, stream, step, None, false, resumed)
}

/// Writes a refresh's outcome over its claim, unless another worker took the slot over.
fn publish(p: &Publish) {
    let (current, cas) = host::shared_get(&p.key);
    if refresh::still_claimed(current.as_deref(), &p.claim) && cas.is_some() {
        host::shared_set(&p.key, &p.bytes, cas);
    } else {
        host::log(Level::Warn, "{\"event\":\"refresh_superseded\"}");
    }
}

/// Looks again at the slots of requests waiting for another's refresh.
fn poll_refreshes(vm: &mut Vm, root: u32) {
    let waiting = match vm.plugins.get_mut(&root) {
        Some(p) => std::mem::take(&mut p.refreshing),
        None => return,
    };
    for (stream, call) in waiting {
        if host::switch_to(stream) {
            refresh(vm, root, stream, call, true);
        }
    }
}

/// Adds the `Set-Cookie` headers a decision left for this stream's response.
pub fn on_response(stream: u32) {
    let reply = with_vm(|| None, |vm| vm.replies.remove(&stream));
    for cookie in reply.unwrap_or_default() {
        host::add_response_header("set-cookie", &cookie);
    }
}

pub fn on_tick(root: u32) {
    host::refresh_log_level();
    // Without a clock nothing can be judged stale; try again next tick.
    let Some(now) = host::now() else {
        host::set_tick(IDLE_TICK);
        return;
    };
    with_vm(
        || (),
        |vm| {
            let issuers = match vm.plugins.get(&root) {
                Some(p) => p.loading.len(),
                None => return,
            };
            for issuer in 0..issuers {
                tick_issuer(vm, root, issuer, now);
            }
            poll_refreshes(vm, root);
            let refreshing = vm
                .plugins
                .get(&root)
                .is_some_and(|p| !p.refreshing.is_empty());
            host::set_tick(if refreshing { REFRESH_POLL } else { IDLE_TICK });
        },
    );
}

fn tick_issuer(vm: &mut Vm, root: u32, issuer: usize, now: u64) {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return;
    };
    adopt_shared(plugin, issuer);
    let timeout = plugin.config.idp_timeout_ms / 1000 + 5;
    let Some(loading) = plugin.loading(issuer) else {
        return;
    };
    if let Load::InFlight { since } = loading.load {
        // The callout's own timeout answers long before this; a lost answer must not
        // wedge loading forever.
        if now.saturating_sub(since) <= timeout {
            return;
        }
        loading.load = Load::Idle;
    }
    let retry_due = loading
        .failed_at
        .is_none_or(|t| now.saturating_sub(t) >= RETRY_SECS);
    let waiting = |keys: bool| {
        plugin
            .waiters
            .iter()
            .any(|(_, i, w)| *i == issuer && matches!(w, Wait::Keys(_)) == keys)
    };
    let (decide_waiters, key_waiters) = (waiting(false), waiting(true));
    // After a failure nothing is fetched again before RETRY_SECS, whoever is waiting: an
    // IdP that is down must not be called once per batch of parked requests.
    let need_full = match plugin.providers.get(issuer) {
        None => true,
        Some(p) => p.is_stale(now) || key_waiters,
    };
    if need_full && retry_due {
        start_discovery(vm, root, issuer, now);
    } else if decide_waiters || key_waiters {
        wake(vm, root, issuer);
    }
}

/// Takes a newer metadata snapshot another worker stored, if there is one.
fn adopt_shared(plugin: &mut Plugin, issuer: usize) {
    let Some(url) = plugin.issuer_url(issuer) else {
        return;
    };
    let (bytes, cas) = host::shared_get(&provider::shared_key(&url));
    let Some(loading) = plugin.loading.get_mut(issuer) else {
        return;
    };
    if cas.is_none() || cas == loading.shared_cas {
        return;
    }
    let Some(p) = bytes.and_then(|b| Provider::from_snapshot(&b, &url)) else {
        return;
    };
    loading.shared_cas = cas;
    let newer = plugin
        .providers
        .get(issuer)
        .is_none_or(|mine| p.fetched_at > mine.fetched_at);
    if newer {
        plugin.providers.set(issuer, p);
    }
}

fn start_discovery(vm: &mut Vm, root: u32, issuer: usize, now: u64) {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return;
    };
    let config = Rc::clone(&plugin.config);
    // With `skip_oidc_discovery` the configuration is the discovery document: keys only.
    if let (MAIN, Some(d)) = (issuer, config.provider.endpoints.clone()) {
        let token = provider::jwks_request(&d)
            .ok()
            .and_then(|c| dispatch(&config, &c));
        match (token, plugin.loading(issuer)) {
            (Some(token), Some(loading)) => {
                loading.load = Load::InFlight { since: now };
                let discovery = Box::new(d);
                let owner = Owner::Keys {
                    root,
                    issuer,
                    discovery,
                };
                vm.callouts.insert(token, owner);
            }
            _ => load_failed(vm, root, issuer, "dispatch"),
        }
        return;
    }
    let token = plugin
        .issuer_url(issuer)
        .and_then(|url| provider::discovery_request(&url).ok())
        .and_then(|c| dispatch(&config, &c));
    match (token, plugin.loading(issuer)) {
        (Some(token), Some(loading)) => {
            loading.load = Load::InFlight { since: now };
            vm.callouts.insert(token, Owner::Discovery { root, issuer });
        }
        _ => load_failed(vm, root, issuer, "dispatch"),
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
                Owner::Orphan { root, pending } => {
                    if let Some(plugin) = vm.plugins.get_mut(&root) {
                        let step = resume_with(plugin, pending, answer, false);
                        if let Some(p) = &step.publish {
                            publish(p);
                        }
                    }
                }
                Owner::Discovery { root, issuer } => on_discovery(vm, root, issuer, answer),
                Owner::Keys {
                    root,
                    issuer,
                    discovery,
                } => on_keys(vm, root, issuer, *discovery, answer),
            }
        },
    );
}

fn on_discovery(vm: &mut Vm, root: u32, issuer: usize, answer: Option<(u16, &[u8])>) {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return;
    };
    let config = Rc::clone(&plugin.config);
    let url = plugin.issuer_url(issuer).unwrap_or_default();
    let next = provider::on_discovery(&url, answer)
        .and_then(|d| provider::check_hosts(&config, d))
        .map_err(|e| e.to_string())
        .and_then(|d| {
            let callout = provider::jwks_request(&d).map_err(|e| e.to_string())?;
            let token = dispatch(&config, &callout).ok_or_else(|| {
                format!("no cluster for `{}` or dispatch failed", callout.authority)
            })?;
            Ok((token, d))
        });
    match next {
        Ok((token, d)) => {
            vm.callouts.insert(
                token,
                Owner::Keys {
                    root,
                    issuer,
                    discovery: Box::new(d),
                },
            );
        }
        Err(e) => load_failed(vm, root, issuer, &format!("discovery: {e}")),
    }
}

fn on_keys(
    vm: &mut Vm,
    root: u32,
    issuer: usize,
    discovery: Discovery,
    answer: Option<(u16, &[u8])>,
) {
    let now = host::now().unwrap_or(0);
    match provider::on_jwks(discovery, answer, now) {
        Ok(p) => {
            if let Some(plugin) = vm.plugins.get_mut(&root) {
                let url = plugin.issuer_url(issuer).unwrap_or_default();
                let key = provider::shared_key(&url);
                let snapshot = p.snapshot();
                plugin.providers.set(issuer, p);
                if let Some(loading) = plugin.loading.get_mut(issuer) {
                    if let Some(snapshot) = snapshot {
                        host::shared_set(&key, &snapshot, None);
                        loading.shared_cas = host::shared_get(&key).1;
                    }
                    loading.load = Load::Idle;
                    loading.failed_at = None;
                    loading.keys_fetched_at = now;
                }
                let line = serde_json::json!({"event": "provider_loaded", "issuer": url});
                host::log(Level::Info, &line.to_string());
            }
            wake(vm, root, issuer);
        }
        Err(e) => load_failed(vm, root, issuer, &format!("jwks: {e}")),
    }
}

fn load_failed(vm: &mut Vm, root: u32, issuer: usize, reason: &str) {
    if let Some(plugin) = vm.plugins.get_mut(&root) {
        let url = plugin.issuer_url(issuer).unwrap_or_default();
        let line = serde_json::json!({
            "event": "provider_load_failed", "issuer": url, "reason": reason,
        });
        host::log(Level::Warn, &line.to_string());
        if let Some(loading) = plugin.loading.get_mut(issuer) {
            loading.load = Load::Idle;
            // Keys may still be fetched again soon; do not count a failure as a fetch.
            loading.failed_at = host::now();
        }
    }
    wake(vm, root, issuer);
}

/// Gives every request parked on `issuer` its decision now that loading finished (or failed).
fn wake(vm: &mut Vm, root: u32, issuer: usize) {
    let waiters = match vm.plugins.get_mut(&root) {
        Some(p) => {
            let (mine, others) = std::mem::take(&mut p.waiters)
                .into_iter()
                .partition(|(_, i, _)| *i == issuer);
            p.waiters = others;
            mine
        }
        None => return,
    };
    for (stream, _, wait) in waiters {
        if !host::switch_to(stream) {
            continue;
        }
        let Some(plugin) = vm.plugins.get_mut(&root) else {
            return;
        };
        let step = match wait {
            Wait::Decide(req) if plugin.providers.get(issuer).is_some() => decide(plugin, &req),
            Wait::Decide(req) => {
                host::log(Level::Warn, "{\"event\":\"provider_unavailable\"}");
                host::send_response(&gate::unavailable(503, Some(&req)));
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
                plugin.waiters.retain(|(s, _, _)| *s != stream);
                plugin.refreshing.retain(|(s, _)| *s != stream);
            }
            vm.replies.remove(&stream);
            let callouts = std::mem::take(&mut vm.callouts);
            vm.callouts = callouts
                .into_iter()
                .filter_map(|(token, owner)| match owner {
                    Owner::Stream {
                        root,
                        stream: s,
                        pending: pending @ Pending::Refresh(_),
                    } if s == stream => Some((token, Owner::Orphan { root, pending })),
                    Owner::Stream { stream: s, .. } if s == stream => None,
                    owner => Some((token, owner)),
                })
                .collect();
        },
    );
}
