//! Carrying out the metadata loader's actions: its callouts, shared-data writes, and the
//! parked streams it wakes.

use super::host;
use super::steps::{carry_out, dispatch, publish, refresh, unavailable, with_gate};
use super::vm::{Owner, Vm};
use crate::gate;
use crate::issuer::loader::{self, Pace, Then};
use std::time::Duration;

/// Carries out the loader's actions.
pub(super) fn perform(vm: &mut Vm, root: u32, actions: Vec<loader::Action>, now: u64) {
    for action in actions {
        let Some(plugin) = vm.plugins.get_mut(&root) else {
            return;
        };
        match action {
            loader::Action::Fetch {
                issuer,
                load,
                callout,
                fetch,
            } => match dispatch(&plugin.config, &callout) {
                Some(token) => vm.await_answer(
                    token,
                    Owner::Load {
                        root,
                        issuer,
                        load,
                        fetch,
                    },
                ),
                None => {
                    let more = plugin.loader.on_dispatch_failed(
                        &plugin.providers,
                        issuer,
                        now,
                        &callout.authority,
                    );
                    perform(vm, root, more, now);
                }
            },
            loader::Action::Share { issuer, key, bytes } => {
                host::shared_set(&key, &bytes, None);
                plugin
                    .loader
                    .shared_written(issuer, host::shared_get(&key).1);
            }
            loader::Action::Log(level, line) => {
                plugin.metrics.count_log(&line);
                host::log(level, &line);
            }
            loader::Action::Wake { stream, then } => {
                if host::switch_to(stream) {
                    wake(vm, root, stream, then);
                } else if let Then::Keys(pending, fetched) = then {
                    // A refresh whose request went away (the loader keeps no other wait
                    // past its stream): its outcome is still shared.
                    let step = with_gate(plugin, |cx, env| {
                        gate::resume_keys(cx, pending, fetched, env)
                    });
                    step.publish.iter().for_each(publish);
                }
            }
        }
    }
}

pub(super) fn wake(vm: &mut Vm, root: u32, stream: u32, then: Then) {
    let Some(plugin) = vm.plugins.get_mut(&root) else {
        return;
    };
    let step = match then {
        Then::Decide(req) => with_gate(plugin, |cx, env| gate::decide(cx, &req, env)),
        Then::Unavailable(req) => return unavailable(503, Some(&req), "provider_unavailable"),
        Then::Keys(pending, fetched) => with_gate(plugin, |cx, env| {
            gate::resume_keys(cx, pending, fetched, env)
        }),
        Then::Refresh(call) => {
            refresh(vm, root, stream, call, true);
            return;
        }
    };
    carry_out(vm, root, stream, step, None, true);
}

/// The tick's period for how urgently the loader needs it.
pub(super) fn set_pace(pace: Pace) {
    host::set_tick(match pace {
        Pace::Eager => Duration::from_millis(1),
        Pace::Poll => Duration::from_millis(10),
        Pace::Idle => Duration::from_secs(5),
    });
}
