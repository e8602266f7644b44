//! The coordinator's state and its one entry point, [`Coordinator::handle`]: every host
//! event comes in here, and what the host must do comes out of [`Coordinator::poll_action`].

use super::io::{Action, Event};
use super::ops::Op;
use super::waits::{Pace, Waits};
use crate::cache::Cache;
use crate::config::Config;
use crate::gate::{
    self, Admitted, Context, Decision, Env, Exchanged, Pending, Step, BEARER_CACHE_BYTES,
    BEARER_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES, EXCHANGE_CACHE_ENTRIES, SESSION_CACHE_BYTES,
    SESSION_CACHE_ENTRIES,
};
use crate::issuer::loader::Fetch;
use crate::issuer::{Issuers, Metadata, MAIN};
use crate::log::Level;
use crate::metrics::Metrics;
use crate::refresh;
use std::collections::{HashMap, VecDeque};

/// How long after its timeout a callout's answer is still waited for.
const LATE_ANSWER_MS: u64 = 5000;

/// Who waits for a callout's answer.
pub(super) enum Owner {
    /// A request (`None`: one that went away, whose outcome still matters: a refresh).
    Stream {
        stream: Option<u32>,
        pending: Pending,
        /// Whether the stream was paused when the call was made (a refused dispatch is
        /// reported within the same host callback).
        resumed: bool,
    },
    Load {
        issuer: usize,
        load: u64,
        fetch: Fetch,
    },
}

pub(super) struct Call {
    pub(super) owner: Owner,
    pub(super) sent_ms: u64,
    pub(super) target: &'static str,
    pub(super) authority: String,
}

/// One plugin's sans-IO core on one worker: the gate's state (configuration, issuer
/// metadata, caches, counts) and everything that waits (callouts, parked requests, issuer
/// loads, refresh slots in shared data).
pub struct Coordinator {
    pub(super) config: Config,
    pub(super) issuers: Issuers,
    pub(super) waits: Waits,
    sessions: Cache<Admitted>,
    bearers: Cache<Admitted>,
    exchanged: Cache<Exchanged>,
    pub(super) metrics: Metrics,
    random: fn(&mut [u8]) -> bool,
    pub(super) now_ms: u64,
    /// Callouts asked for and not yet reported dispatched, by call id.
    pub(super) sending: HashMap<u64, Call>,
    /// Callouts in flight, by the host's token.
    pub(super) calls: HashMap<u32, Call>,
    /// Shared-data reads and writes whose reports are awaited.
    pub(super) ops: HashMap<u64, Op>,
    next_id: u64,
    /// `Set-Cookie` values for a stream's response (a refreshed or re-sealed session).
    pub(super) replies: HashMap<u32, Vec<String>>,
    /// The streams that were paused (they wait, or waited, for something), with their
    /// `x-request-id` for their later log lines. A stream not here holds nothing but maybe a
    /// reply: its end costs a lookup.
    pub(super) paused: HashMap<u32, Option<String>>,
    pub(super) actions: VecDeque<Action>,
    tick_every: Option<u64>,
}

impl Coordinator {
    /// `random` fills a buffer with secure random bytes (`false` if it failed).
    pub fn new(config: Config, random: fn(&mut [u8]) -> bool) -> Coordinator {
        let mut issuers = Issuers::new(config.issuers.len());
        if let Some(fixed) = Metadata::fixed(&config) {
            issuers.set(MAIN, fixed);
        }
        let mut me = [0u8; 8];
        // Without randomness every worker would be `0` in load claims, which only costs
        // the other workers their wait for a claim that is never theirs to take.
        random(&mut me);
        let mut c = Coordinator {
            waits: Waits::new(&config, u64::from_le_bytes(me)),
            config,
            issuers,
            sessions: Cache::new(SESSION_CACHE_ENTRIES, SESSION_CACHE_BYTES),
            bearers: Cache::new(BEARER_CACHE_ENTRIES, BEARER_CACHE_BYTES),
            exchanged: Cache::new(EXCHANGE_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES),
            metrics: Metrics::default(),
            random,
            now_ms: 0,
            sending: HashMap::new(),
            calls: HashMap::new(),
            ops: HashMap::new(),
            next_id: 0,
            replies: HashMap::new(),
            paused: HashMap::new(),
            actions: VecDeque::new(),
            tick_every: None,
        };
        // Shared data has no atomic create: every refresh slot and load claim exists before
        // anyone compares-and-swaps it.
        let mut keys: Vec<String> = refresh::slot_keys(&c.config.cookie.name).collect();
        keys.extend(c.waits.claim_keys());
        c.read(Op::CreateSlots(keys.clone()), keys);
        c.announce_pace();
        c
    }

    pub fn handle(&mut self, event: Event, now_ms: u64) {
        self.now_ms = now_ms;
        match event {
            Event::Request { stream, req, exact } => self.on_request(stream, req, exact),
            Event::Dispatched { call, token } => self.on_dispatched(call, token),
            Event::Answer {
                token,
                answer,
                too_large,
            } => self.on_answer(token, answer, too_large),
            Event::Read { read, values } => self.on_read(read, values),
            Event::Written { write, ok, version } => self.on_written(write, ok, version),
            Event::Tick => self.on_tick(),
        }
        self.announce_pace();
    }

    /// The `Set-Cookie` values a decision left for `stream`'s response (a refreshed or
    /// re-sealed session), taken once. A lookup, not an event: the response path reads no
    /// clock.
    pub fn take_reply(&mut self, stream: u32) -> Option<Vec<String>> {
        self.replies.remove(&stream)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether callout `token` is this coordinator's.
    pub fn owns(&self, token: u32) -> bool {
        self.calls.contains_key(&token)
    }

    /// The branding of the pages it answers with.
    pub fn pages(&self) -> &crate::config::Pages {
        &self.config.pages
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The caches' and the waits' current sizes.
    pub fn gauges(&self) -> [(&'static str, u64); 5] {
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        [
            ("sessions_cached", n(self.sessions.len())),
            ("bearer_tokens_cached", n(self.bearers.len())),
            ("exchanged_tokens_cached", n(self.exchanged.len())),
            (
                "cache_evictions",
                self.sessions.evictions() + self.bearers.evictions(),
            ),
            ("parked_requests", n(self.waits.parked())),
        ]
    }

    pub(super) fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    pub(super) fn now(&self) -> u64 {
        self.now_ms / 1000
    }

    /// Runs one gate entry point with this plugin's state, the clock and the random source.
    /// Without a clock nothing can be decided: a 500.
    pub(super) fn gate(&mut self, f: impl FnOnce(&mut Context, &mut Env) -> Step) -> Step {
        if self.now_ms == 0 {
            return Step {
                decision: Decision::Respond(gate::unavailable(&self.config.pages, 500, None)),
                log: Some((
                    Level::Warn,
                    crate::log::line("error", "", &[("reason", "clock")]),
                )),
                publish: None,
            };
        }
        let mut random = self.random;
        let mut env = Env {
            now: self.now(),
            random: &mut random,
        };
        let mut cx = Context {
            config: &self.config,
            issuers: &self.issuers,
            sessions: &mut self.sessions,
            bearers: &mut self.bearers,
            exchanged: &mut self.exchanged,
            metrics: &mut self.metrics,
        };
        f(&mut cx, &mut env)
    }

    /// The stream ended (answered, reset or done): what it left is dropped, except a refresh
    /// in flight. Bookkeeping only, on every request: no clock, and for a stream that never
    /// paused, two lookups.
    pub fn stream_done(&mut self, stream: u32) {
        self.replies.remove(&stream);
        if self.paused.remove(&stream).is_none() {
            return;
        }
        self.waits.forget(stream);
        let orphan = |call: &mut Call| match &mut call.owner {
            Owner::Stream {
                stream: s, pending, ..
            } if *s == Some(stream) => {
                // A refresh in flight outlives its request: the IdP may rotate the refresh
                // token, and the others on its session need the outcome.
                *s = None;
                pending.outlives_request()
            }
            _ => true,
        };
        self.calls.retain(|_, c| orphan(c));
        self.sending.retain(|_, c| orphan(c));
        self.announce_pace();
    }

    fn on_tick(&mut self) {
        if self.now_ms == 0 {
            return;
        }
        // Callouts whose answer can no longer come: the host's own timeout passed long ago,
        // or it cancelled them with their stream. Without this, clients aborting requests
        // mid-callout would grow the map for good.
        let (now, timeout) = (self.now_ms, self.config.idp_timeout_ms);
        self.calls
            .retain(|_, c| now.saturating_sub(c.sent_ms) <= timeout.saturating_add(LATE_ANSWER_MS));
        let keys = self.waits.shared_keys();
        self.read(Op::Snapshots, keys);
    }

    /// Asks for the tick period the waits need, when it changed.
    fn announce_pace(&mut self) {
        let every = match self.waits.pace() {
            Pace::Eager => 1,
            Pace::Poll => 10,
            Pace::Idle => 5000,
        };
        if self.tick_every != Some(every) {
            self.tick_every = Some(every);
            self.push(Action::TickEvery(every));
        }
    }
}
