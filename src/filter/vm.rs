//! The adapter's per-VM state: each configured plugin's core parts, and who waits for
//! which callout. Bookkeeping only; every decision about a request is the core's.

use super::host;
use super::stats::Stats;
use crate::cache::Cache;
use crate::config::Config;
use crate::gate::{
    Admitted, Exchanged, Pending, BEARER_CACHE_BYTES, BEARER_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES,
    EXCHANGE_CACHE_ENTRIES, SESSION_CACHE_BYTES, SESSION_CACHE_ENTRIES,
};
use crate::issuer::loader::{Fetch, Loader};
use crate::issuer::{Issuers, Metadata, MAIN};
use crate::metrics::Metrics;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub(super) struct Plugin {
    pub(super) config: Rc<Config>,
    pub(super) providers: Issuers,
    pub(super) loader: Loader,
    pub(super) sessions: Cache<Admitted>,
    pub(super) bearers: Cache<Admitted>,
    pub(super) exchanged: Cache<Exchanged>,
    pub(super) metrics: Metrics,
    pub(super) stats: Stats,
}

impl Plugin {
    pub(super) fn new(config: Config) -> Plugin {
        let mut providers = Issuers::new(config.issuers.len());
        if let Some(fixed) = Metadata::fixed(&config) {
            providers.set(MAIN, fixed);
        }
        Plugin {
            loader: Loader::new(&config),
            config: Rc::new(config),
            providers,
            sessions: Cache::new(SESSION_CACHE_ENTRIES, SESSION_CACHE_BYTES),
            bearers: Cache::new(BEARER_CACHE_ENTRIES, BEARER_CACHE_BYTES),
            exchanged: Cache::new(EXCHANGE_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES),
            metrics: Metrics::default(),
            stats: Stats::default(),
        }
    }

    /// Pushes the counts and the caches' and the loader's current sizes to the host.
    pub(super) fn flush_stats(&mut self) {
        let gauges = [
            ("sessions_cached", self.sessions.len() as u64),
            ("bearer_tokens_cached", self.bearers.len() as u64),
            ("exchanged_tokens_cached", self.exchanged.len() as u64),
            (
                "cache_evictions",
                self.sessions.evictions() + self.bearers.evictions(),
            ),
            ("parked_requests", self.loader.parked() as u64),
        ];
        self.stats.flush(&self.metrics, &gauges);
    }
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
        load: u64,
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
    pub(super) fn expire_callouts(&mut self, now_ms: u64) {
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

    /// A stream went away: its callouts are dropped, except a refresh in flight, whose
    /// outcome is still shared (the IdP may have rotated the refresh token).
    pub(super) fn forget_stream(&mut self, stream: u32) {
        self.replies.remove(&stream);
        let callouts = std::mem::take(&mut self.callouts);
        self.callouts = callouts
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
        let callouts = &self.callouts;
        self.sent.retain(|token, _| callouts.contains_key(token));
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
