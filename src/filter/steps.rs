//! Carrying out the gate's decisions for one stream: header edits, local answers, callouts,
//! parking, and the refresh slot's reads and writes. Every choice is the core's.

use super::host;
use super::loading::set_pace;
use super::vm::{Owner, Plugin, Vm};
use crate::config::Config;
use crate::gate::{
    self, Callout, Context, Decision, Env, Level, Publish, RefreshCall, Request, Settled, Step,
};
use crate::issuer::loader::KeysWait;
use crate::refresh::{self, Plan};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Sends a callout to the cluster that serves its host; `None` when none does or the host
/// refused the dispatch.
pub(super) fn dispatch(config: &Config, callout: &Callout) -> Option<u32> {
    let cluster = config.cluster_for(&callout.authority)?;
    host::dispatch(cluster, callout, config.idp_timeout_ms)
}

/// Answers with a 500 when the VM is not in a state to decide: never pass the request on.
pub(super) fn refuse() -> Action {
    host::send_response(&gate::unavailable(500, None));
    Action::Pause
}

/// Runs one gate entry point with this plugin's configuration, metadata, caches, the host's
/// clock and its random source. Without a clock nothing can be decided: a 500.
pub(super) fn with_gate(
    plugin: &mut Plugin,
    f: impl FnOnce(&mut Context, &mut Env) -> Step,
) -> Step {
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
        issuers: &plugin.providers,
        sessions: &mut plugin.sessions,
        bearers: &mut plugin.bearers,
        exchanged: &mut plugin.exchanged,
        metrics: &mut plugin.metrics,
    };
    f(&mut cx, &mut env)
}

/// Applies a step for `stream`. `exact` holds the request's headers byte for byte when they
/// may be written back whole; `resumed` says the stream was paused and is now current.
pub(super) fn carry_out(
    vm: &mut Vm,
    root: u32,
    stream: u32,
    step: Step,
    exact: Option<Request>,
    resumed: bool,
) -> Action {
    // Published before the decision is carried out, so the requests it wakes see it.
    if let Some(p) = &step.publish {
        publish(p);
    }
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return refuse();
    };
    if let Some((level, line)) = &step.log {
        plugin.metrics.count_log(line);
        host::log(*level, &with_request_id(line));
    }
    // Only the cold arms need the time: the hot path makes no clock call here.
    let now = || host::now().unwrap_or(0);
    match step.decision {
        Decision::Continue { remove, set, reply } => {
            if !host::edit_request_headers(exact.as_ref(), &remove, &set) {
                // A header we could not strip or set must not reach the app.
                return refuse();
            }
            if !reply.is_empty() {
                vm.replies.insert(stream, reply);
            }
            if resumed {
                host::resume_request();
            }
            Action::Continue
        }
        Decision::Respond(r) => {
            host::send_response(&r);
            Action::Pause
        }
        Decision::Call(callout, pending) => match dispatch(&plugin.config, &callout) {
            Some(token) => {
                vm.await_answer(
                    token,
                    Owner::Stream {
                        root,
                        stream,
                        pending: pending.0,
                    },
                );
                Action::Pause
            }
            // A call the host would not send is a call that failed: the core says what
            // that means (a sign-out still clears the browser's cookies, a login fails
            // with its error page, a refresh is shared as unavailable).
            None => {
                host::log(Level::Warn, "{\"event\":\"callout_dispatch_failed\"}");
                let step = with_gate(plugin, |cx, env| gate::resume(cx, pending.0, None, env));
                carry_out(vm, root, stream, step, None, resumed)
            }
        },
        Decision::Refresh(call) => refresh(vm, root, stream, call, resumed),
        Decision::NeedIssuer(issuer) => {
            match exact {
                Some(req)
                    if plugin
                        .loader
                        .park_for_provider(stream, issuer, req.clone(), now()) =>
                {
                    set_pace(plugin.loader.pace())
                }
                req => unavailable(503, req.as_ref(), "provider_unavailable"),
            }
            Action::Pause
        }
        Decision::NeedKeys(issuer, pending) => {
            match plugin
                .loader
                .park_for_keys(stream, issuer, pending.0, now())
            {
                KeysWait::Parked => set_pace(plugin.loader.pace()),
                KeysWait::AsTheyAre(pending) => {
                    let step =
                        with_gate(plugin, |cx, env| gate::resume_keys(cx, pending, true, env));
                    return carry_out(vm, root, stream, step, None, resumed);
                }
                KeysWait::Full => unavailable(503, None, "provider_unavailable"),
            }
            Action::Pause
        }
    }
}

/// A log line with the request's `x-request-id` (Envoy's, as in its access log) added, so
/// the two can be matched; the line as it is when there is none or it is not plain.
fn with_request_id(line: &str) -> String {
    let id = host::request_header("x-request-id").filter(|id| {
        id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    match (id, line.strip_prefix('{')) {
        (Some(id), Some(rest)) => format!("{{\"request_id\":\"{id}\",{rest}"),
        _ => line.to_string(),
    }
}

pub(super) fn unavailable(status: u16, req: Option<&Request>, event: &str) {
    host::log(Level::Warn, &format!("{{\"event\":\"{event}\"}}"));
    host::send_response(&gate::unavailable(status, req));
}

/// A request whose session is due for a refresh: `refresh::plan` says whether it makes the
/// refresh (claiming the session's slot with compare-and-swap), waits, or takes the outcome.
pub(super) fn refresh(
    vm: &mut Vm,
    root: u32,
    stream: u32,
    call: Box<RefreshCall>,
    resumed: bool,
) -> Action {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return refuse();
    };
    let now = host::now().unwrap_or(0);
    let read: Vec<_> = call.slots.iter().map(|k| host::shared_get(k)).collect();
    let bytes: Vec<Option<&[u8]>> = read.iter().map(|(b, _)| b.as_deref()).collect();
    let timeout = plugin.config.idp_timeout_ms / 1000 + 1;
    let plan = refresh::plan(
        &bytes,
        &call.session_id,
        call.generation,
        now,
        timeout,
        call.since,
    );
    let settled = match plan {
        Plan::Claim { slot, bytes } => {
            let key = call.slots.get(slot).cloned().unwrap_or_default();
            let version = read.get(slot).and_then(|(_, v)| *v);
            if version.is_some() && host::shared_set(&key, &bytes, version) {
                // Another request of the session may have claimed another of its slots at
                // the same moment: read them again, and back off if so.
                let after: Vec<_> = call.slots.iter().map(|k| host::shared_get(k)).collect();
                let seen: Vec<Option<&[u8]>> = after.iter().map(|(b, _)| b.as_deref()).collect();
                let stands =
                    refresh::confirm(&seen, slot, &call.session_id, call.generation, now, timeout);
                if !stands {
                    if let Some((Some(mine), Some(v))) = after.get(slot) {
                        if *mine == bytes {
                            let before = read.get(slot).and_then(|(b, _)| b.clone());
                            host::shared_set(&key, &before.unwrap_or_default(), Some(*v));
                        }
                    }
                    return park(plugin, stream, call);
                }
                let RefreshCall {
                    callout,
                    mut pending,
                    ..
                } = *call;
                pending.0.set_claim(key, bytes);
                let step = Step {
                    decision: Decision::Call(callout, pending),
                    log: None,
                    publish: None,
                };
                return carry_out(vm, root, stream, step, None, resumed);
            }
            // Someone else wrote the slot between our read and write: look again.
            return park(plugin, stream, call);
        }
        Plan::Wait => return park(plugin, stream, call),
        Plan::Adopt(cookie) => Settled::Adopt(cookie),
        Plan::Ended => Settled::Ended,
        Plan::Unavailable => Settled::Unavailable,
    };
    let step = with_gate(plugin, |cx, env| {
        gate::settle(cx, call.pending.0, settled, env)
    });
    carry_out(vm, root, stream, step, None, resumed)
}

/// A refresh that waits for another request's, or for a slot: its slots are read again on
/// the next poll.
fn park(plugin: &mut Plugin, stream: u32, call: Box<RefreshCall>) -> Action {
    if !plugin.loader.park_refresh(stream, call) {
        unavailable(503, None, "refresh_wait_full");
    }
    set_pace(plugin.loader.pace());
    Action::Pause
}

/// Writes a refresh's outcome over its claim, unless another worker took the slot over.
pub(super) fn publish(p: &Publish) {
    let (current, version) = host::shared_get(&p.key);
    if refresh::still_claimed(current.as_deref(), &p.claim) && version.is_some() {
        host::shared_set(&p.key, &p.bytes, version);
    } else {
        host::log(Level::Warn, "{\"event\":\"refresh_superseded\"}");
    }
}
