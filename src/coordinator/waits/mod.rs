//! The requests that wait, and the issuer loads they wait for: a request parked until its
//! issuer's metadata is loaded, a token until fresh keys come (it named an unknown `kid`),
//! a refresh until another request's refresh of the same session ends. Bounded in number
//! and bytes, so a flood of them cannot grow the VM. The loader says when an issuer's
//! waiters may go on; this turns that into the streams to wake and what each does next.

use crate::callout::Callout;
use crate::config::Config;
use crate::gate::{Pending, RefreshCall, Request};
use crate::issuer::loader::{self, Fetch, KeysNeed, Loader, Waiters, Waiting};
use crate::issuer::Issuers;
use crate::log::Level;

/// Bounds on what is parked: a flood of tokens naming an unknown `kid` (each holding up to a
/// whole header map) must not grow the VM.
pub const MAX_PARKED: usize = 1024;
pub const MAX_PARKED_BYTES: usize = 8 << 20;

/// Refresh waiters are parked under no issuer.
const NO_ISSUER: usize = usize::MAX;

/// What a parked request waits for.
#[derive(Debug)]
pub enum Wait {
    /// The issuer's metadata: decide the request again once it is loaded.
    Decide(Request),
    /// Fresh keys for a login or a bearer token: resume it with whatever keys there are.
    Keys(Pending),
    /// Another request's refresh of the same session: look at its slot again.
    Refresh(Box<RefreshCall>),
}

impl Wait {
    fn weight(&self) -> usize {
        match self {
            Wait::Decide(req) => req.weight(),
            Wait::Keys(pending) => pending.weight(),
            Wait::Refresh(call) => call.pending.0.weight(),
        }
    }

    fn is_for(&self, waiters: Waiters) -> bool {
        match (waiters, self) {
            (Waiters::All, _) => true,
            (Waiters::Keys, w) => matches!(w, Wait::Keys(_)),
            (Waiters::Metadata, w) => !matches!(w, Wait::Keys(_)),
        }
    }

    /// `loaded`: the issuer's metadata was just (re)loaded, or for deciders is loaded at all.
    fn then(self, loaded: bool) -> Then {
        match self {
            Wait::Decide(req) if loaded => Then::Decide(req),
            Wait::Decide(req) => Then::Unavailable(req),
            Wait::Keys(pending) => Then::Keys(pending, loaded),
            Wait::Refresh(call) => Then::Refresh(call),
        }
    }
}

/// What a woken stream does next.
#[derive(Debug)]
pub enum Then {
    /// Its issuer is loaded: decide the request again.
    Decide(Request),
    /// Its issuer failed to load: a 503 in the request's own protocol.
    Unavailable(Request),
    /// Resume the login, refresh or bearer check with the keys there are now; `true` when
    /// they were just fetched, `false` when the fetch failed (the IdP is unavailable).
    Keys(Pending, bool),
    /// Look at its session's refresh slot again.
    Refresh(Box<RefreshCall>),
}

/// What the coordinator carries out for the waits.
#[derive(Debug)]
pub enum Action {
    /// Make this callout for `issuer`'s load `load`, and report its answer to
    /// [`Waits::on_answer`], or a refused dispatch to [`Waits::on_dispatch_failed`].
    Fetch {
        issuer: usize,
        load: u64,
        callout: Callout,
        fetch: Fetch,
    },
    /// Store this metadata snapshot in shared data for the other workers, then report the
    /// version written with [`Waits::shared_written`].
    Share {
        issuer: usize,
        key: String,
        bytes: Vec<u8>,
    },
    /// Claim `issuer`'s load (compare-and-swap on `cas`), then report with
    /// [`Waits::on_claimed`].
    Claim {
        issuer: usize,
        key: String,
        bytes: Vec<u8>,
        cas: Option<u32>,
    },
    /// Write this over our claim (compare-and-swap on `cas`); no report.
    Release {
        key: String,
        bytes: Vec<u8>,
        cas: Option<u32>,
    },
    /// Carry on with this parked stream; `None` when its request went away but its outcome
    /// still matters (a refresh waiting for keys: the others on its session need it).
    Wake {
        stream: Option<u32>,
        then: Then,
    },
    Log(Level, String),
}

/// How often the coordinator wants a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A load is wanted right away.
    Eager,
    /// Requests wait: on another worker's refresh or load (look at shared data often), or
    /// for keys that may be fetched again shortly.
    Poll,
    Idle,
}

/// What to do with a request that needs fresh keys.
#[derive(Debug)]
pub enum KeysWait {
    Parked,
    /// Fetched moments ago: go on with the keys there are (the `kid` is simply unknown).
    AsTheyAre(Pending),
    /// Too much is parked already: a 503.
    Full,
}

#[derive(Debug)]
pub struct Waits {
    pub(crate) loader: Loader,
    /// Who waits (no stream: its request went away), under which issuer, for what.
    parked: Vec<(Option<u32>, usize, Wait)>,
}

impl Waits {
    /// `me` names this worker in load claims.
    pub fn new(config: &Config, me: u64) -> Waits {
        Waits {
            loader: Loader::new(config, me),
            parked: Vec::new(),
        }
    }

    /// The shared-data key of each issuer's snapshot, then of each issuer's load claim, in
    /// issuer order: what is read before each [`Waits::tick`].
    pub fn shared_keys(&self) -> Vec<String> {
        let mut keys = self.loader.shared_keys();
        keys.extend(self.loader.claim_keys());
        keys
    }

    /// The shared-data key of `id`'s snapshot.
    pub fn snapshot_key(&self, id: usize) -> Option<String> {
        self.loader.shared_keys().into_iter().nth(id)
    }

    /// The keys of the load claims, to create when the plugin starts.
    pub fn claim_keys(&self) -> Vec<String> {
        self.loader.claim_keys()
    }

    pub fn pace(&self) -> Pace {
        if self.loader.eager() {
            Pace::Eager
        } else if !self.parked.is_empty() || self.loader.awaiting_other() {
            // Someone waits: for another worker's refresh or load (seen only in shared
            // data), or for keys that may be fetched again shortly.
            Pace::Poll
        } else {
            Pace::Idle
        }
    }

    /// Periodic work: the loader's (see [`Loader::tick`]; `shared` is what the keys of
    /// [`Waits::shared_keys`] held), and requests waiting on a refresh are handed back to look
    /// at their slot again.
    pub fn tick(
        &mut self,
        config: &Config,
        issuers: &mut Issuers,
        now: u64,
        shared: &[(Option<Vec<u8>>, Option<u32>)],
    ) -> Vec<Action> {
        let n = self.loader.shared_keys().len().min(shared.len());
        let (snapshots, claims) = shared.split_at(n);
        let parked = &self.parked;
        let waiting = |id: usize| Waiting {
            metadata: parked
                .iter()
                .any(|(_, i, w)| *i == id && !matches!(w, Wait::Keys(_))),
            keys: parked
                .iter()
                .any(|(_, i, w)| *i == id && matches!(w, Wait::Keys(_))),
        };
        let loads = self
            .loader
            .tick(config, issuers, now, snapshots, claims, &waiting);
        let mut actions = self.carry(loads);
        actions.extend(self.wake_matching(|i, _| i == NO_ISSUER, true));
        actions
    }

    /// A callout of load `load` was answered (`None`: it failed).
    #[allow(clippy::too_many_arguments)]
    pub fn on_answer(
        &mut self,
        config: &Config,
        issuers: &mut Issuers,
        id: usize,
        load: u64,
        fetch: Fetch,
        answer: Option<(u16, &[u8])>,
        now: u64,
    ) -> Vec<Action> {
        let loads = self
            .loader
            .on_answer(config, issuers, id, load, fetch, answer, now);
        self.carry(loads)
    }

    /// The host would not send a load's callout (no cluster for its host, or refused).
    pub fn on_dispatch_failed(
        &mut self,
        issuers: &Issuers,
        id: usize,
        now: u64,
        host: &str,
    ) -> Vec<Action> {
        let loads = self.loader.on_dispatch_failed(issuers, id, now, host);
        self.carry(loads)
    }

    /// Whether this worker's claim of `id`'s load took; the load starts if it did.
    #[allow(clippy::too_many_arguments)]
    pub fn on_claimed(
        &mut self,
        config: &Config,
        issuers: &Issuers,
        id: usize,
        ok: bool,
        version: Option<u32>,
        now: u64,
    ) -> Vec<Action> {
        let loads = self
            .loader
            .on_claimed(config, issuers, id, ok, version, now);
        self.carry(loads)
    }

    /// Another worker's snapshot of `id`, read because a request found the issuer failed
    /// moments ago on this worker: `true` when it was newer and adopted (its waiters are
    /// woken, and the request can be decided again).
    pub fn adopt(
        &mut self,
        issuers: &mut Issuers,
        id: usize,
        seen: &(Option<Vec<u8>>, Option<u32>),
    ) -> (bool, Vec<Action>) {
        let loads = self.loader.adopt_shared(issuers, id, seen);
        let adopted = !loads.is_empty();
        (adopted, self.carry(loads))
    }

    /// The version shared data gave the snapshot this worker just wrote.
    pub fn shared_written(&mut self, id: usize, version: Option<u32>) {
        self.loader.shared_written(id, version);
    }

    /// The loader's actions, its wakes turned into the parked streams they wake.
    fn carry(&mut self, loads: Vec<loader::Action>) -> Vec<Action> {
        let mut actions = Vec::new();
        for a in loads {
            match a {
                loader::Action::Fetch {
                    issuer,
                    load,
                    callout,
                    fetch,
                } => actions.push(Action::Fetch {
                    issuer,
                    load,
                    callout,
                    fetch,
                }),
                loader::Action::Share { issuer, key, bytes } => {
                    actions.push(Action::Share { issuer, key, bytes })
                }
                loader::Action::Claim {
                    issuer,
                    key,
                    bytes,
                    cas,
                } => actions.push(Action::Claim {
                    issuer,
                    key,
                    bytes,
                    cas,
                }),
                loader::Action::Release { key, bytes, cas } => {
                    actions.push(Action::Release { key, bytes, cas })
                }
                loader::Action::Log(level, line) => actions.push(Action::Log(level, line)),
                loader::Action::Wake {
                    issuer,
                    waiters,
                    loaded,
                } => actions
                    .extend(self.wake_matching(|i, w| i == issuer && w.is_for(waiters), loaded)),
            }
        }
        actions
    }

    /// Hands back every parked wait `pick` chooses, `loaded` saying whether its issuer is.
    fn wake_matching(&mut self, pick: impl Fn(usize, &Wait) -> bool, loaded: bool) -> Vec<Action> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(_, i, w)| pick(*i, w));
        self.parked = others;
        mine.into_iter()
            .map(|(stream, _, wait)| Action::Wake {
                stream,
                then: wait.then(loaded),
            })
            .collect()
    }

    fn room_for(&self, weight: usize) -> bool {
        let held: usize = self.parked.iter().map(|(_, _, w)| w.weight()).sum();
        self.parked.len() < MAX_PARKED && held.saturating_add(weight) <= MAX_PARKED_BYTES
    }

    /// Parks `wait` for `stream` under `id`; `false` (dropped) when the bounds are hit.
    pub(crate) fn park(&mut self, stream: u32, id: usize, wait: Wait) -> bool {
        if !self.room_for(wait.weight()) {
            return false;
        }
        self.parked.push((Some(stream), id, wait));
        true
    }

    /// A request needs `id`'s metadata, which is not loaded: parked until it is (`true`), or
    /// refused when the issuer failed moments ago or the bounds are hit (`false`: a 503).
    pub fn park_for_issuer(&mut self, stream: u32, id: usize, req: Request, now: u64) -> bool {
        if !self.loader.accepts_waiters(id, now) {
            return false;
        }
        let parked = self.park(stream, id, Wait::Decide(req));
        if parked {
            self.loader.want();
        }
        parked
    }

    /// A token named a `kid` `id`'s keys lack: see [`Loader::keys_need`].
    pub fn park_for_keys(
        &mut self,
        stream: u32,
        id: usize,
        pending: Pending,
        now: u64,
    ) -> KeysWait {
        let need = self
            .loader
            .keys_need(id, now, pending.from_token_endpoint());
        if need == KeysNeed::AsTheyAre {
            return KeysWait::AsTheyAre(pending);
        }
        if !self.park(stream, id, Wait::Keys(pending)) {
            return KeysWait::Full;
        }
        self.loader.want_keys(id, now);
        if need == KeysNeed::Fetch {
            self.loader.want();
        }
        KeysWait::Parked
    }

    /// Waits for another request's refresh of the same session; `false` when full.
    pub fn park_refresh(&mut self, stream: u32, call: Box<RefreshCall>) -> bool {
        self.park(stream, NO_ISSUER, Wait::Refresh(call))
    }

    /// A stream went away: nothing waits for it any more, except a refresh waiting for keys,
    /// whose outcome the session's other requests still need (the IdP may have rotated the
    /// refresh token). It is woken like the others, with no stream to answer.
    pub fn forget(&mut self, stream: u32) {
        self.parked.retain(|(s, _, w)| {
            *s != Some(stream) || matches!(w, Wait::Keys(pending) if pending.outlives_request())
        });
        for (s, _, _) in &mut self.parked {
            if *s == Some(stream) {
                *s = None;
            }
        }
    }

    pub fn parked(&self) -> usize {
        self.parked.len()
    }
}

#[cfg(test)]
mod tests;
