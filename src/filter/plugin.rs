//! The carrying-out of what the core decides: the gate's decisions for requests, the
//! loader's actions for metadata, the refresh slot reads and writes in shared data. Every
//! choice is the core's; this file only moves bytes between it and the host.

use super::host;
use super::loading::{perform, set_pace};
use super::steps::{carry_out, publish, refuse, with_gate};
use super::vm::{with_vm, Owner, Plugin};
use crate::config::Config;
use crate::gate::{self, Request};
use crate::issuer::loader::Pace;
use crate::oidc::MAX_DOCUMENT_BYTES;
use crate::refresh;
use proxy_wasm::types::Action;
use std::rc::Rc;

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
    let plugin = Plugin::new(config);
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
                p.flush_stats();
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
                    load,
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
                        load,
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
            vm.forget_stream(stream);
        },
    );
}
