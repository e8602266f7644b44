//! Loading each issuer's metadata (discovery document and signing keys) and keeping it
//! fresh, as a state machine driven by time and events with no I/O: the coordinator feeds it
//! ticks, callout answers and what shared data holds, and carries out the [`Action`]s it
//! returns. Who waits for an issuer is the coordinator's to know; the loader is told whether
//! anyone does, and says when they may go on ([`Action::Wake`]).
//!
//! Loads are started from ticks only (the root context), so their callouts belong to a
//! context that lives as long as the VM, never to a request that may go away.

mod action;
mod answers;
pub mod claim;

pub use action::{Action, Fetch, KeysNeed, Waiters, Waiting};

use crate::config::Config;
use crate::issuer::{self, Issuers, Metadata, KEY_REFETCH_MIN_SECS, MAIN, RETRY_SECS};
use claim::{Claim, Found};

/// A load whose answer never came is given up this long after the callout's own timeout.
const LOST_AFTER_SECS: u64 = 5;

#[derive(Debug, Default)]
struct Issuer {
    url: String,
    /// The shared-data version of the snapshot last adopted or written.
    shared_version: Option<u32>,
    /// The load in flight: its number and when it started. Answers carry their load's
    /// number, so a late answer to a load given up cannot end the one that replaced it.
    in_flight: Option<(u64, u64)>,
    loads: u64,
    failed_at: Option<u64>,
    keys_fetched_at: u64,
    /// Our claim of the load in shared data: its version, while we hold it.
    claim_version: Option<u32>,
    /// A claim was asked for and not yet reported.
    claiming: bool,
    /// Another worker holds the load we are due for: look for its snapshot often.
    awaiting_other: bool,
    /// Since when a token naming an unknown key waits: a snapshot another worker fetched
    /// after that has the keys it waits for.
    keys_wanted_since: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Loader {
    issuers: Vec<Issuer>,
    /// This worker, in load claims: a random number drawn when the VM starts.
    me: u64,
    /// A load is wanted right away (the first, or one a waiter needs).
    eager: bool,
}

impl Loader {
    /// `me` names this worker in load claims (see [`claim`]).
    pub fn new(config: &Config, me: u64) -> Loader {
        Loader {
            me,
            issuers: config
                .issuers
                .iter()
                .map(|i| Issuer {
                    url: i.url.clone(),
                    ..Issuer::default()
                })
                .collect(),
            // Load right away, so the first login does not wait.
            eager: true,
        }
    }

    /// The shared-data key of each issuer's snapshot, in issuer order: what the adapter
    /// reads before each [`Loader::tick`].
    pub fn shared_keys(&self) -> Vec<String> {
        self.issuers
            .iter()
            .map(|i| issuer::shared_key(&i.url))
            .collect()
    }

    /// The shared-data key of each issuer's load claim, in issuer order: read with
    /// [`Loader::shared_keys`] before each tick, and created when the plugin starts.
    pub fn claim_keys(&self) -> Vec<String> {
        self.issuers.iter().map(|i| claim::key(&i.url)).collect()
    }

    /// Whether a load is wanted right away: tick at once.
    pub fn eager(&self) -> bool {
        self.eager
    }

    /// Whether another worker's load is awaited: until its snapshot is here, look at shared
    /// data often, or this worker serves without metadata (a sign-out revoking nothing)
    /// for as long as its idle tick.
    pub fn awaiting_other(&self) -> bool {
        self.issuers.iter().any(|i| i.awaiting_other)
    }

    /// Someone waits for a load: start it at the next tick.
    pub fn want(&mut self) {
        self.eager = true;
    }

    /// Periodic work: adopt newer snapshots other workers shared (`shared`: each issuer's
    /// bytes and version, as read), give up loads whose answer was lost, claim loads that
    /// are due (`claims`: each issuer's load claim, as read), and wake whoever waits on an
    /// issuer with nothing to fetch (`waiting` says who waits on each).
    pub fn tick(
        &mut self,
        config: &Config,
        issuers: &mut Issuers,
        now: u64,
        shared: &[(Option<Vec<u8>>, Option<u32>)],
        claims: &[(Option<Vec<u8>>, Option<u32>)],
        waiting: &dyn Fn(usize) -> Waiting,
    ) -> Vec<Action> {
        self.eager = false;
        let mut actions = Vec::new();
        for (id, seen) in shared.iter().enumerate().take(self.issuers.len()) {
            actions.extend(self.adopt_shared(issuers, id, seen));
        }
        for id in 0..self.issuers.len() {
            let claim = claims.get(id).cloned().unwrap_or_default();
            actions.extend(self.tick_issuer(config, issuers, id, now, &claim, waiting(id)));
        }
        actions
    }

    /// Takes another worker's newer snapshot, and wakes who it serves: requests waiting for
    /// the metadata need not wait for our own load too, and tokens waiting for keys fetched
    /// since they asked have them.
    pub fn adopt_shared(
        &mut self,
        issuers: &mut Issuers,
        id: usize,
        seen: &(Option<Vec<u8>>, Option<u32>),
    ) -> Vec<Action> {
        if !self.adopt(issuers, id, seen) {
            return Vec::new();
        }
        let fetched_at = issuers.get(id).map_or(0, |p| p.fetched_at);
        let Some(issuer) = self.issuers.get_mut(id) else {
            return Vec::new();
        };
        if issuer.failed_at.is_some_and(|t| t <= fetched_at) {
            issuer.failed_at = None;
        }
        match issuer.keys_wanted_since {
            Some(since) if since <= fetched_at => {
                issuer.keys_wanted_since = None;
                vec![wake(id, Waiters::All, true)]
            }
            _ => vec![wake(id, Waiters::Metadata, true)],
        }
    }

    /// Takes another worker's newer snapshot; `true` when one was adopted.
    fn adopt(
        &mut self,
        issuers: &mut Issuers,
        id: usize,
        seen: &(Option<Vec<u8>>, Option<u32>),
    ) -> bool {
        let Some(issuer) = self.issuers.get_mut(id) else {
            return false;
        };
        let (bytes, version) = seen;
        if version.is_none() || *version == issuer.shared_version {
            return false;
        }
        // Junk is not parsed again until it changes.
        issuer.shared_version = *version;
        let Some(p) = bytes
            .as_deref()
            .and_then(|b| Metadata::from_snapshot(b, &issuer.url))
        else {
            return false;
        };
        let newer = issuers
            .get(id)
            .is_none_or(|mine| p.fetched_at > mine.fetched_at);
        if newer {
            // Another worker's fetch counts as ours for the unknown-`kid` refetch limit.
            issuer.keys_fetched_at = issuer.keys_fetched_at.max(p.fetched_at);
            issuers.set(id, p);
        }
        newer
    }

    fn tick_issuer(
        &mut self,
        config: &Config,
        issuers: &Issuers,
        id: usize,
        now: u64,
        claim: &(Option<Vec<u8>>, Option<u32>),
        waiting: Waiting,
    ) -> Vec<Action> {
        let lost_after = config.idp_timeout_ms / 1000 + LOST_AFTER_SECS;
        let (decide_waiters, key_waiters) = (waiting.metadata, waiting.keys);
        let me = self.me;
        let Some(issuer) = self.issuers.get_mut(id) else {
            return Vec::new();
        };
        let found = claim::found(claim.0.as_deref(), me, now, lost_after);
        if let Found::Failed(at) = found {
            // Another worker's failure counts as ours: one call per RETRY_SECS per Envoy.
            issuer.failed_at = issuer.failed_at.max(Some(at));
        }
        issuer.awaiting_other = false;
        if issuer.claiming {
            return Vec::new();
        }
        if let Some((_, since)) = issuer.in_flight {
            // The callout's own timeout answers long before this; a lost answer must not
            // wedge loading forever.
            if now.saturating_sub(since) <= lost_after {
                return Vec::new();
            }
            issuer.in_flight = None;
        }
        let retry_due = issuer
            .failed_at
            .is_none_or(|t| now.saturating_sub(t) >= RETRY_SECS);
        // Keys are fetched again at most once per KEY_REFETCH_MIN_SECS: a token from the
        // token endpoint naming a key that arrived just after our last fetch waits for it.
        let keys_due = now.saturating_sub(issuer.keys_fetched_at) >= KEY_REFETCH_MIN_SECS;
        // After a failure nothing is fetched again before RETRY_SECS, whoever is waiting:
        // an IdP that is down must not be called once per batch of parked requests.
        let need_full = match issuers.get(id) {
            None => true,
            Some(p) => p.is_stale(now) || (key_waiters && keys_due),
        };
        if need_full && retry_due {
            if found == Found::Held {
                // Another worker's load is under way: its snapshot will do.
                issuer.awaiting_other = true;
                return Vec::new();
            }
            issuer.claiming = true;
            let bytes = Claim {
                worker: me,
                started_at: now,
                failed_at: 0,
            };
            return vec![Action::Claim {
                issuer: id,
                key: claim::key(&issuer.url),
                bytes: bytes.encode(),
                cas: claim.1,
            }];
        }
        // Requests that need the metadata go on with what is loaded; those waiting for
        // fresh keys keep waiting for their fetch, unless the IdP failed moments ago.
        let loaded = issuers.get(id).is_some();
        let mut actions = Vec::new();
        if decide_waiters {
            actions.push(wake(id, Waiters::Metadata, loaded));
        }
        if key_waiters && !retry_due {
            actions.push(wake(id, Waiters::Keys, false));
        }
        actions
    }

    /// Whether our claim of `id`'s load took (`version`: the claim's after the write). The
    /// load starts if it did; if not, another worker's did, and the next tick sees it.
    pub fn on_claimed(
        &mut self,
        config: &Config,
        issuers: &Issuers,
        id: usize,
        ok: bool,
        version: Option<u32>,
        now: u64,
    ) -> Vec<Action> {
        let Some(issuer) = self.issuers.get_mut(id) else {
            return Vec::new();
        };
        issuer.claiming = false;
        if !ok {
            self.eager = true;
            return Vec::new();
        }
        issuer.claim_version = version;
        self.start(config, issuers, id, now)
    }

    /// The first callout of a load: discovery, or with `skip_oidc_discovery` (the login
    /// issuer's endpoints are configured) the keys straight away.
    fn start(&mut self, config: &Config, issuers: &Issuers, id: usize, now: u64) -> Vec<Action> {
        let Some(issuer) = self.issuers.get_mut(id) else {
            return Vec::new();
        };
        let first = match (id, config.provider.endpoints()) {
            (MAIN, Some(d)) => {
                issuer::jwks_request(d).map(|c| (c, Fetch::Keys(Box::new(d.clone()))))
            }
            _ => issuer::discovery_request(&issuer.url).map(|c| (c, Fetch::Discovery)),
        };
        match first {
            Ok((callout, fetch)) => {
                issuer.loads = issuer.loads.wrapping_add(1);
                issuer.in_flight = Some((issuer.loads, now));
                vec![Action::Fetch {
                    issuer: id,
                    load: issuer.loads,
                    callout,
                    fetch,
                }]
            }
            Err(e) => self.failed(issuers, id, now, &format!("discovery: {e}")),
        }
    }

    /// Whether a request may wait for `id`'s metadata: not when the issuer failed moments
    /// ago (it gets a 503 at once).
    pub fn accepts_waiters(&self, id: usize, now: u64) -> bool {
        self.issuers.get(id).is_some_and(|issuer| {
            issuer
                .failed_at
                .is_none_or(|t| now.saturating_sub(t) >= RETRY_SECS)
        })
    }

    /// A token named a `kid` `id`'s keys lack (`from_token_endpoint`: an ID token the token
    /// endpoint itself sent). Keys are fetched again at most once per
    /// [`KEY_REFETCH_MIN_SECS`], whether the last try worked or not: forged tokens naming
    /// unknown kids must not make the filter call an IdP (up or down) more than that.
    pub fn keys_need(&self, id: usize, now: u64, from_token_endpoint: bool) -> KeysNeed {
        let recent = |t: u64| now.saturating_sub(t) < KEY_REFETCH_MIN_SECS;
        let Some(issuer) = self.issuers.get(id) else {
            return KeysNeed::AsTheyAre;
        };
        let fetched_moments_ago = issuer.in_flight.is_none() && recent(issuer.keys_fetched_at);
        let failed_moments_ago = issuer.in_flight.is_none() && issuer.failed_at.is_some_and(recent);
        // A client's token (a bearer token anyone can forge with any `kid`) goes on with the
        // keys there are. An ID token the token endpoint itself just sent names a key the
        // IdP really signs with: it waits for the next allowed fetch instead of failing.
        if failed_moments_ago || (fetched_moments_ago && !from_token_endpoint) {
            KeysNeed::AsTheyAre
        } else if fetched_moments_ago {
            KeysNeed::NextFetch
        } else {
            KeysNeed::Fetch
        }
    }

    /// A token waits for `id`'s keys to be fetched again, from `now`.
    pub fn want_keys(&mut self, id: usize, now: u64) {
        if let Some(issuer) = self.issuers.get_mut(id) {
            issuer.keys_wanted_since.get_or_insert(now);
        }
    }

    #[cfg(test)]
    pub(crate) fn load_in_flight(&self, id: usize) -> Option<u64> {
        self.issuers.get(id)?.in_flight.map(|(load, _)| load)
    }
}

fn wake(issuer: usize, waiters: Waiters, loaded: bool) -> Action {
    Action::Wake {
        issuer,
        waiters,
        loaded,
    }
}
