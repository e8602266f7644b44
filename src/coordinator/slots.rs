//! Shared data between workers: the refresh slots through which one request per session
//! makes a refresh and the others take its outcome (see [`crate::refresh`] for the entries
//! and the rules), and the issuers' metadata snapshots. Every read and compare-and-swap
//! write is an action whose report comes back as an event; [`Op`] is what each awaits.

use super::io::Action;
use super::machine::Coordinator;
use super::ops::{Claim, Op};
use crate::gate::{self, Decision, PendingBox, Publish, RefreshCall, Settled, Step};
use crate::log::Level;
use crate::refresh::{self, Plan};

type Values = Vec<(Option<Vec<u8>>, Option<u32>)>;

impl Coordinator {
    pub(super) fn read(&mut self, op: Op, keys: Vec<String>) {
        let read = self.next_id();
        self.ops.insert(read, op);
        self.push(Action::Read { read, keys });
    }

    pub(super) fn write(&mut self, op: Option<Op>, key: String, bytes: Vec<u8>, cas: Option<u32>) {
        let write = op.map(|op| {
            let id = self.next_id();
            self.ops.insert(id, op);
            id
        });
        self.push(Action::Write {
            write,
            key,
            bytes,
            cas,
        });
    }

    /// Stores an issuer's metadata snapshot for the other workers.
    pub(super) fn share(&mut self, issuer: usize, key: String, bytes: Vec<u8>) {
        self.write(Some(Op::Shared { issuer }), key, bytes, None);
    }

    /// Writes a refresh's outcome over its claim, unless another worker took the slot over.
    pub(super) fn publish(&mut self, p: Publish) {
        let key = p.key.clone();
        self.read(Op::Publish(p), vec![key]);
    }

    /// A request whose session is due for a refresh: read its candidate slots to plan.
    pub(super) fn plan_refresh(&mut self, stream: u32, call: Box<RefreshCall>, resumed: bool) {
        let keys = call.slots.clone();
        let claim = Claim {
            stream,
            call,
            resumed,
            slot: 0,
            bytes: Vec::new(),
            before: None,
        };
        self.read(Op::Plan(Box::new(claim)), keys);
    }

    pub(super) fn on_read(&mut self, read: u64, values: Values) {
        let Some(op) = self.ops.remove(&read) else {
            return;
        };
        match op {
            Op::CreateSlots(keys) => {
                let missing: Vec<String> = keys
                    .into_iter()
                    .zip(&values)
                    .filter(|(_, (_, version))| version.is_none())
                    .map(|(key, _)| key)
                    .collect();
                for key in missing {
                    self.write(None, key, b"free".to_vec(), None);
                }
            }
            Op::Snapshots => {
                let now = self.now();
                let actions = self
                    .waits
                    .tick(&self.config, &mut self.issuers, now, &values);
                self.carry_waits(actions);
            }
            Op::Plan(claim) => self.plan(*claim, &values),
            Op::Confirm(claim) => self.confirm(*claim, &values),
            Op::Publish(p) => {
                let (current, version) = values.first().cloned().unwrap_or_default();
                match version {
                    Some(v) if refresh::still_claimed(current.as_deref(), &p.claim) => {
                        self.write(None, p.key, p.bytes, Some(v))
                    }
                    _ => {
                        let line = crate::log::line("refresh_superseded", "", &[]);
                        self.push(Action::Log(Level::Warn, line));
                    }
                }
            }
            Op::Adopt {
                stream,
                issuer,
                req,
            } => {
                let seen = values.first().cloned().unwrap_or_default();
                let (adopted, actions) = self.waits.adopt(&mut self.issuers, issuer, &seen);
                self.carry_waits(actions);
                if adopted {
                    let step = self.gate(|cx, env| gate::decide(cx, &req, env));
                    self.apply(Some(stream), step, Some((&req, true)), false);
                } else {
                    self.unavailable(stream, 503, Some(&req), "provider_unavailable");
                }
            }
            Op::Shared { .. } | Op::Claim(_) | Op::Claimed { .. } => {}
        }
    }

    pub(super) fn on_written(&mut self, write: u64, ok: bool, version: Option<u32>) {
        match self.ops.remove(&write) {
            Some(Op::Shared { issuer }) => self.waits.shared_written(issuer, version),
            Some(Op::Claimed { issuer }) => {
                let now = self.now();
                let actions =
                    self.waits
                        .on_claimed(&self.config, &self.issuers, issuer, ok, version, now);
                self.carry_waits(actions);
            }
            // Another request wrote the slot between our read and write: look again later.
            Some(Op::Claim(claim)) if !ok => self.park_refresh(claim.stream, claim.call),
            Some(Op::Claim(claim)) => {
                // Another request of the session may have claimed another of its slots at the
                // same moment: read them again, and back off if so.
                let keys = claim.call.slots.clone();
                self.read(Op::Confirm(claim), keys);
            }
            _ => {}
        }
    }

    /// What the candidate slots say: claim one, wait, or take another request's outcome.
    fn plan(&mut self, mut claim: Claim, values: &Values) {
        let bytes: Vec<Option<&[u8]>> = values.iter().map(|(b, _)| b.as_deref()).collect();
        let timeout = self.config.idp_timeout_ms / 1000 + 1;
        let call = &claim.call;
        let now = self.now();
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
                let key = call.slots.get(slot).cloned();
                let (before, version) = values.get(slot).cloned().unwrap_or_default();
                let (Some(key), Some(version)) = (key, version) else {
                    return self.park_refresh(claim.stream, claim.call);
                };
                claim.slot = slot;
                claim.bytes = bytes.clone();
                claim.before = before;
                return self.write(Some(Op::Claim(Box::new(claim))), key, bytes, Some(version));
            }
            Plan::Wait => return self.park_refresh(claim.stream, claim.call),
            Plan::Adopt(cookie) => Settled::Adopt(cookie),
            Plan::Ended => Settled::Ended,
            Plan::Unavailable => Settled::Unavailable,
        };
        let pending = claim.call.pending.0;
        let step = self.gate(|cx, env| gate::settle(cx, pending, settled, env));
        self.apply(Some(claim.stream), step, None, claim.resumed);
    }

    /// After the claim's write: refresh if it stands, else put back what the slot held (if
    /// it still holds our claim) and wait.
    fn confirm(&mut self, claim: Claim, values: &Values) {
        let seen: Vec<Option<&[u8]>> = values.iter().map(|(b, _)| b.as_deref()).collect();
        let timeout = self.config.idp_timeout_ms / 1000 + 1;
        let call = &claim.call;
        let now = self.now();
        let stands = refresh::confirm(
            &seen,
            claim.slot,
            &call.session_id,
            call.generation,
            now,
            timeout,
        );
        let key = call.slots.get(claim.slot).cloned().unwrap_or_default();
        if !stands {
            if let Some((Some(mine), Some(v))) = values.get(claim.slot) {
                if *mine == claim.bytes {
                    let before = claim.before.unwrap_or_default();
                    self.write(None, key, before, Some(*v));
                }
            }
            return self.park_refresh(claim.stream, claim.call);
        }
        let RefreshCall {
            callout,
            mut pending,
            ..
        } = *claim.call;
        pending.0.set_claim(key, claim.bytes);
        let step = Step {
            decision: Decision::Call(callout, PendingBox(pending.0)),
            log: None,
            publish: None,
        };
        self.apply(Some(claim.stream), step, None, claim.resumed);
    }

    /// A refresh that waits for another request's, or for a slot: its slots are read again on
    /// the next tick.
    fn park_refresh(&mut self, stream: u32, call: Box<RefreshCall>) {
        if !self.waits.park_refresh(stream, call) {
            self.unavailable(stream, 503, None, "refresh_wait_full");
        }
    }
}
