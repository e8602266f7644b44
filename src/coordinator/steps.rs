//! Carrying the gate's steps for a stream into actions: header edits, local answers,
//! callouts and their answers, and the waits (for an issuer, for keys, for a refresh slot).

use super::io::{Action, HeaderEdit};
use super::machine::{Call, Coordinator, Owner};
use super::ops::Op;
use super::waits::{self, KeysWait, Then};
use crate::callout::Callout;
use crate::gate::{self, Decision, Pending, Request, Step};
use crate::log::Level;
use crate::routing::wire;

impl Coordinator {
    pub(super) fn on_request(&mut self, stream: u32, req: Request, exact: bool) {
        let step = self.gate(|cx, env| gate::decide(cx, &req, env));
        self.apply(Some(stream), step, Some((&req, exact)), false);
    }

    /// Applies a step for `stream` (`None`: a request that went away, whose step only
    /// publishes). `fresh` is the request as it arrived in this host callback, with whether
    /// its headers may be written back whole; `resumed`: the stream was paused.
    pub(super) fn apply(
        &mut self,
        stream: Option<u32>,
        step: Step,
        fresh: Option<(&Request, bool)>,
        resumed: bool,
    ) {
        if let Some(p) = step.publish {
            self.publish(p);
        }
        if let Some((level, line)) = step.log {
            self.metrics.count_log(&line);
            let id = match (fresh, stream) {
                (Some((req, _)), _) => request_id(req),
                (None, Some(s)) => self.paused.get(&s).cloned().flatten(),
                _ => None,
            };
            let line = crate::log::with_request_id(&line, id.as_deref());
            self.push(Action::Log(level, line));
        }
        let Some(stream) = stream else {
            return;
        };
        match step.decision {
            Decision::Continue { remove, set, reply } => {
                let edit = match fresh {
                    _ if remove.is_empty() && set.is_empty() => HeaderEdit::None,
                    Some((req, true)) => {
                        let pairs: Vec<_> =
                            gate::edited_headers(&req.headers, &remove, &set).collect();
                        HeaderEdit::Whole(wire::serialize(&pairs))
                    }
                    _ => HeaderEdit::Each {
                        remove,
                        set: set
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect(),
                    },
                };
                if !reply.is_empty() {
                    self.replies.insert(stream, reply);
                }
                self.push(Action::Continue {
                    stream,
                    edit,
                    resume: resumed,
                });
            }
            Decision::Respond(response) => self.push(Action::Respond { stream, response }),
            Decision::Call(callout, pending) => {
                self.remember(stream, fresh);
                self.call(Some(stream), callout, pending.0, resumed);
            }
            Decision::Refresh(call) => {
                self.remember(stream, fresh);
                self.plan_refresh(stream, call, resumed);
            }
            Decision::NeedIssuer(issuer) => {
                let now = self.now();
                match fresh {
                    Some((req, true))
                        if self.waits.park_for_issuer(stream, issuer, req.clone(), now) =>
                    {
                        self.remember(stream, fresh)
                    }
                    // The issuer failed moments ago here; another worker may have loaded it
                    // since. Its snapshot decides between a second try and a 503.
                    Some((req, true)) if !resumed => match self.waits.snapshot_key(issuer) {
                        Some(key) => {
                            let req = req.clone();
                            self.read(
                                Op::Adopt {
                                    stream,
                                    issuer,
                                    req,
                                },
                                vec![key],
                            );
                        }
                        None => self.unavailable(stream, 503, Some(req), "provider_unavailable"),
                    },
                    _ => {
                        self.unavailable(stream, 503, fresh.map(|(r, _)| r), "provider_unavailable")
                    }
                }
            }
            Decision::NeedKeys(issuer, pending) => {
                let now = self.now();
                match self.waits.park_for_keys(stream, issuer, pending.0, now) {
                    KeysWait::Parked => self.remember(stream, fresh),
                    KeysWait::AsTheyAre(pending) => {
                        let step = self.gate(|cx, env| gate::resume_keys(cx, pending, true, env));
                        self.apply(Some(stream), step, fresh, resumed);
                    }
                    KeysWait::Full => self.unavailable(stream, 503, None, "provider_unavailable"),
                }
            }
        }
    }

    /// Notes that `stream` waits, with its request id for the log lines of its later steps.
    fn remember(&mut self, stream: u32, fresh: Option<(&Request, bool)>) {
        let id = fresh.and_then(|(req, _)| request_id(req));
        let kept = self.paused.entry(stream).or_insert(None);
        if id.is_some() {
            *kept = id;
        }
    }

    /// A 503 (or 500) when the filter cannot decide, in the request's protocol if known.
    pub(super) fn unavailable(
        &mut self,
        stream: u32,
        status: u16,
        req: Option<&Request>,
        event: &str,
    ) {
        self.push(Action::Log(Level::Warn, crate::log::line(event, "", &[])));
        let response = gate::unavailable(&self.config.pages, status, req);
        self.push(Action::Respond { stream, response });
    }

    /// Asks the host to send `callout` for `stream`'s `pending` wait.
    pub(super) fn call(
        &mut self,
        stream: Option<u32>,
        callout: Callout,
        pending: Pending,
        resumed: bool,
    ) {
        let Some(cluster) = self
            .config
            .cluster_for(&callout.authority)
            .map(str::to_string)
        else {
            return self.dispatch_failed(stream, pending, resumed);
        };
        let (call, timeout_ms) = (self.next_id(), self.config.idp_timeout_ms);
        self.sending.insert(
            call,
            Call {
                target: pending.target(),
                authority: callout.authority.clone(),
                sent_ms: self.now_ms,
                owner: Owner::Stream {
                    stream,
                    pending,
                    resumed,
                },
            },
        );
        self.push(Action::Dispatch {
            call,
            cluster,
            callout,
            timeout_ms,
        });
    }

    /// A call the host would not send is a call that failed: the gate says what that means
    /// (a sign-out still clears the browser's cookies, a login fails with its error page, a
    /// refresh is shared as unavailable).
    fn dispatch_failed(&mut self, stream: Option<u32>, pending: Pending, resumed: bool) {
        let line = crate::log::line("callout_dispatch_failed", "", &[]);
        self.push(Action::Log(Level::Warn, line));
        let step = self.gate(|cx, env| gate::resume(cx, pending, None, env));
        self.apply(stream, step, None, resumed);
    }

    pub(super) fn on_dispatched(&mut self, call: u64, token: Option<u32>) {
        let Some(c) = self.sending.remove(&call) else {
            return;
        };
        if let Some(token) = token {
            self.calls.insert(token, c);
            return;
        }
        match c.owner {
            Owner::Stream {
                stream,
                pending,
                resumed,
            } => self.dispatch_failed(stream, pending, resumed),
            Owner::Load { issuer, .. } => {
                let now = self.now();
                let more = self
                    .waits
                    .on_dispatch_failed(&self.issuers, issuer, now, &c.authority);
                self.carry_waits(more);
            }
        }
    }

    pub(super) fn on_answer(&mut self, token: u32, answer: Option<(u16, &[u8])>, too_large: bool) {
        let Some(c) = self.calls.remove(&token) else {
            return;
        };
        if too_large {
            // Answered as a failure below; the log says why, not just "unreachable".
            let line = crate::log::line("callout_too_large", "", &[("target", c.target)]);
            self.push(Action::Log(Level::Warn, line));
        }
        self.push(Action::Measured {
            target: c.target,
            status: answer.map(|(s, _)| s),
            millis: self.now_ms.saturating_sub(c.sent_ms),
        });
        match c.owner {
            Owner::Stream {
                stream, pending, ..
            } => {
                let step = self.gate(|cx, env| gate::resume(cx, pending, answer, env));
                self.apply(stream, step, None, true);
            }
            Owner::Load {
                issuer,
                load,
                fetch,
            } => {
                let now = self.now();
                let more = self.waits.on_answer(
                    &self.config,
                    &mut self.issuers,
                    issuer,
                    load,
                    fetch,
                    answer,
                    now,
                );
                self.carry_waits(more);
            }
        }
    }

    /// Carries out what the waits ask: their loads' callouts and snapshots, their log lines,
    /// and the streams they wake.
    pub(super) fn carry_waits(&mut self, actions: Vec<waits::Action>) {
        for action in actions {
            match action {
                waits::Action::Fetch {
                    issuer,
                    load,
                    callout,
                    fetch,
                } => {
                    let cluster = self
                        .config
                        .cluster_for(&callout.authority)
                        .map(str::to_string);
                    let Some(cluster) = cluster else {
                        let now = self.now();
                        let more = self.waits.on_dispatch_failed(
                            &self.issuers,
                            issuer,
                            now,
                            &callout.authority,
                        );
                        self.carry_waits(more);
                        continue;
                    };
                    let (call, timeout_ms) = (self.next_id(), self.config.idp_timeout_ms);
                    self.sending.insert(
                        call,
                        Call {
                            target: fetch.target(),
                            authority: callout.authority.clone(),
                            sent_ms: self.now_ms,
                            owner: Owner::Load {
                                issuer,
                                load,
                                fetch,
                            },
                        },
                    );
                    self.push(Action::Dispatch {
                        call,
                        cluster,
                        callout,
                        timeout_ms,
                    });
                }
                waits::Action::Share { issuer, key, bytes } => self.share(issuer, key, bytes),
                waits::Action::Claim {
                    issuer,
                    key,
                    bytes,
                    cas,
                } => self.write(Some(Op::Claimed { issuer }), key, bytes, cas),
                waits::Action::Release { key, bytes, cas } => self.write(None, key, bytes, cas),
                waits::Action::Log(level, line) => {
                    self.metrics.count_log(&line);
                    self.push(Action::Log(level, line));
                }
                waits::Action::Wake { stream, then } => self.wake(stream, then),
            }
        }
    }

    /// A parked stream goes on (`None`: its request went away; only its outcome matters).
    fn wake(&mut self, stream: Option<u32>, then: Then) {
        match then {
            Then::Decide(req) => {
                let step = self.gate(|cx, env| gate::decide(cx, &req, env));
                self.apply(stream, step, None, true);
            }
            Then::Unavailable(req) => {
                if let Some(s) = stream {
                    self.unavailable(s, 503, Some(&req), "provider_unavailable");
                }
            }
            Then::Keys(pending, fetched) => {
                let step = self.gate(|cx, env| gate::resume_keys(cx, pending, fetched, env));
                self.apply(stream, step, None, true);
            }
            Then::Refresh(call) => {
                if let Some(s) = stream {
                    self.plan_refresh(s, call, true);
                }
            }
        }
    }
}

/// The request's `x-request-id` (Envoy's, as in its access log), when it is plain enough to
/// put in a log line.
fn request_id(req: &Request) -> Option<String> {
    gate::request_id(req).map(str::to_string)
}
