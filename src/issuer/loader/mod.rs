//! Loading each issuer's metadata (discovery document and signing keys) and keeping it
//! fresh, as a state machine driven by time and events with no I/O: the adapter feeds it
//! ticks, callout answers and what shared data holds, and carries out the [`Action`]s it
//! returns. It also keeps the requests parked meanwhile: waiting for an issuer to load, for
//! fresh keys (a token named an unknown `kid`), or for another request's refresh of their
//! session — bounded in number and bytes, so a flood of them cannot grow the VM.
//!
//! Loads are started from ticks only (the root context), so their callouts belong to a
//! context that lives as long as the VM, never to a request that may go away.

use crate::callout::Callout;
use crate::config::Config;
use crate::gate::{Level, Pending, RefreshCall, Request};
use crate::issuer::{self, Issuers, Metadata, KEY_REFETCH_MIN_SECS, MAIN, RETRY_SECS};
use crate::oidc::Discovery;

/// Bounds on what is parked: a flood of tokens naming an unknown `kid` (each holding up to a
/// whole header map) must not grow the VM.
pub const MAX_PARKED: usize = 1024;
pub const MAX_PARKED_BYTES: usize = 8 << 20;
/// A load whose answer never came is given up this long after the callout's own timeout.
const LOST_AFTER_SECS: u64 = 5;

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

impl Wait {
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

/// What a load's callout fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    Discovery,
    /// The keys, for this (already checked) discovery document.
    Keys(Box<Discovery>),
}

impl Fetch {
    /// As metrics name it.
    pub fn target(&self) -> &'static str {
        match self {
            Fetch::Discovery => "discovery",
            Fetch::Keys(_) => "jwks",
        }
    }
}

#[derive(Debug)]
pub enum Action {
    /// Make this callout for `issuer` and report its answer to [`Loader::on_answer`], or a
    /// refused dispatch to [`Loader::on_dispatch_failed`].
    Fetch {
        issuer: usize,
        load: u64,
        callout: Callout,
        fetch: Fetch,
    },
    /// Store this metadata snapshot in shared data for the other workers, then report the
    /// version written with [`Loader::shared_written`].
    Share {
        issuer: usize,
        key: String,
        bytes: Vec<u8>,
    },
    /// Carry on with this parked stream.
    Wake {
        stream: u32,
        then: Then,
    },
    Log(Level, String),
}

/// How often the adapter should tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A load is wanted right away.
    Eager,
    /// Requests wait on another worker's refresh (look at their slots often), or for keys
    /// that may be fetched again shortly.
    Poll,
    Idle,
}

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
}

#[derive(Debug, Default)]
pub struct Loader {
    issuers: Vec<Issuer>,
    parked: Vec<(u32, usize, Wait)>,
    eager: bool,
}

/// Refresh waiters are parked under no issuer.
const NO_ISSUER: usize = usize::MAX;

impl Loader {
    pub fn new(config: &Config) -> Loader {
        Loader {
            issuers: config
                .issuers
                .iter()
                .map(|i| Issuer {
                    url: i.url.clone(),
                    ..Issuer::default()
                })
                .collect(),
            parked: Vec::new(),
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

    pub fn pace(&self) -> Pace {
        if self.eager {
            Pace::Eager
        } else if self
            .parked
            .iter()
            .any(|(_, _, w)| matches!(w, Wait::Refresh(_) | Wait::Keys(_)))
        {
            Pace::Poll
        } else {
            Pace::Idle
        }
    }

    /// Periodic work: adopt newer snapshots other workers shared (`shared`: each issuer's
    /// bytes and version, as read), give up loads whose answer was lost, start loads that
    /// are due, and wake whoever waits on an issuer with nothing to fetch. Requests waiting
    /// on a refresh are handed back to look at their slot again.
    pub fn tick(
        &mut self,
        config: &Config,
        issuers: &mut Issuers,
        now: u64,
        shared: &[(Option<Vec<u8>>, Option<u32>)],
    ) -> Vec<Action> {
        self.eager = false;
        let mut actions = Vec::new();
        for (id, seen) in shared.iter().enumerate().take(self.issuers.len()) {
            if self.adopt(issuers, id, seen) {
                // Requests waiting for this issuer need not wait for our own load too.
                actions.extend(self.wake_deciders(id));
            }
        }
        for id in 0..self.issuers.len() {
            actions.extend(self.tick_issuer(config, issuers, id, now));
        }
        let (refreshing, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(_, _, w)| matches!(w, Wait::Refresh(_)));
        self.parked = rest;
        actions.extend(
            refreshing
                .into_iter()
                .map(|(stream, _, wait)| Action::Wake {
                    stream,
                    then: wait.then(true),
                }),
        );
        actions
    }

    /// Wakes the requests that wait for `id`'s metadata (not those waiting for fresh keys).
    fn wake_deciders(&mut self, id: usize) -> Vec<Action> {
        self.wake_matching(|i, w| i == id && matches!(w, Wait::Decide(_)), true)
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
    ) -> Vec<Action> {
        let lost_after = config.idp_timeout_ms / 1000 + LOST_AFTER_SECS;
        let waiting = |keys: bool| {
            self.parked
                .iter()
                .any(|(_, i, w)| *i == id && matches!(w, Wait::Keys(_)) == keys)
        };
        let (decide_waiters, key_waiters) = (waiting(false), waiting(true));
        let Some(issuer) = self.issuers.get_mut(id) else {
            return Vec::new();
        };
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
            return self.start(config, issuers, id, now);
        }
        // Requests that need the metadata go on with what is loaded; those waiting for
        // fresh keys keep waiting for their fetch, unless the IdP failed moments ago.
        let loaded = issuers.get(id).is_some();
        let mut actions = Vec::new();
        if decide_waiters {
            actions
                .extend(self.wake_matching(|i, w| i == id && !matches!(w, Wait::Keys(_)), loaded));
        }
        if key_waiters && !retry_due {
            actions.extend(self.wake_matching(|i, w| i == id && matches!(w, Wait::Keys(_)), false));
        }
        actions
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

    /// A callout of load `load` was answered (`None`: it failed). The answer of a load
    /// given up as lost changes nothing.
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
        let url = match self.issuers.get(id) {
            Some(i) if i.in_flight.is_some_and(|(current, _)| current == load) => i.url.clone(),
            _ => return Vec::new(),
        };
        match fetch {
            Fetch::Discovery => {
                let next = issuer::on_discovery(&url, answer)
                    .and_then(|d| issuer::check_hosts(config, d))
                    .map_err(|e| e.to_string())
                    .and_then(|d| {
                        let c = issuer::jwks_request(&d).map_err(|e| e.to_string())?;
                        Ok((c, d))
                    });
                match next {
                    Ok((callout, d)) => vec![Action::Fetch {
                        issuer: id,
                        load,
                        callout,
                        fetch: Fetch::Keys(Box::new(d)),
                    }],
                    Err(e) => self.failed(issuers, id, now, &format!("discovery: {e}")),
                }
            }
            Fetch::Keys(d) => match issuer::on_jwks(*d, answer, now) {
                Ok(p) => {
                    let mut actions = Vec::new();
                    if let Some(bytes) = p.snapshot() {
                        actions.push(Action::Share {
                            issuer: id,
                            key: issuer::shared_key(&url),
                            bytes,
                        });
                    }
                    issuers.set(id, p);
                    if let Some(issuer) = self.issuers.get_mut(id) {
                        issuer.in_flight = None;
                        issuer.failed_at = None;
                        issuer.keys_fetched_at = now;
                    }
                    let line = serde_json::json!({"event": "provider_loaded", "issuer": url});
                    actions.push(Action::Log(Level::Info, line.to_string()));
                    actions.extend(self.wake(issuers, id));
                    actions
                }
                Err(e) => self.failed(issuers, id, now, &format!("jwks: {e}")),
            },
        }
    }

    /// The host would not send a load's callout (no cluster for its host, or refused).
    pub fn on_dispatch_failed(
        &mut self,
        issuers: &Issuers,
        id: usize,
        now: u64,
        host: &str,
    ) -> Vec<Action> {
        self.failed(
            issuers,
            id,
            now,
            &format!("no cluster for `{host}` or dispatch refused"),
        )
    }

    /// The version shared data gave the snapshot this worker just wrote.
    pub fn shared_written(&mut self, id: usize, version: Option<u32>) {
        if let Some(issuer) = self.issuers.get_mut(id) {
            issuer.shared_version = version;
        }
    }

    /// A load ended in failure. Waiters are answered now: with the metadata when some is
    /// loaded (stale, or adopted from another worker meanwhile), else with a 503.
    fn failed(&mut self, issuers: &Issuers, id: usize, now: u64, reason: &str) -> Vec<Action> {
        let url = self
            .issuers
            .get(id)
            .map(|i| i.url.clone())
            .unwrap_or_default();
        if let Some(issuer) = self.issuers.get_mut(id) {
            issuer.in_flight = None;
            // Keys may still be fetched again soon; a failure is not a fetch.
            issuer.failed_at = Some(now);
        }
        let line = serde_json::json!({
            "event": "provider_load_failed", "issuer": url, "reason": reason,
        });
        let mut actions = vec![Action::Log(Level::Warn, line.to_string())];
        // Requests that need the metadata go on with what is loaded; those that waited for
        // fresh keys learn that none came.
        let loaded = issuers.get(id).is_some();
        actions.extend(self.wake_matching(|i, w| i == id && !matches!(w, Wait::Keys(_)), loaded));
        actions.extend(self.wake_matching(|i, w| i == id && matches!(w, Wait::Keys(_)), false));
        actions
    }

    fn wake(&mut self, issuers: &Issuers, id: usize) -> Vec<Action> {
        let loaded = issuers.get(id).is_some();
        self.wake_with(id, loaded)
    }

    fn wake_with(&mut self, id: usize, loaded: bool) -> Vec<Action> {
        self.wake_matching(|i, _| i == id, loaded)
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
    fn park(&mut self, stream: u32, id: usize, wait: Wait) -> bool {
        if !self.room_for(wait.weight()) {
            return false;
        }
        self.parked.push((stream, id, wait));
        true
    }

    /// A request needs `id`'s metadata, which is not loaded: parked until it is (`true`), or
    /// refused when the issuer failed moments ago or the bounds are hit (`false`: a 503).
    pub fn park_for_provider(&mut self, stream: u32, id: usize, req: Request, now: u64) -> bool {
        let Some(issuer) = self.issuers.get(id) else {
            return false;
        };
        let recently_failed = issuer
            .failed_at
            .is_some_and(|t| now.saturating_sub(t) < RETRY_SECS);
        if recently_failed {
            return false;
        }
        let parked = self.park(stream, id, Wait::Decide(req));
        self.eager |= parked;
        parked
    }

    /// A token named a `kid` `id`'s keys lack. Fetched again at most once per
    /// [`KEY_REFETCH_MIN_SECS`], whether the last try worked or not: forged tokens naming
    /// unknown kids must not make the filter call an IdP (up or down) more than that.
    pub fn park_for_keys(
        &mut self,
        stream: u32,
        id: usize,
        pending: Pending,
        now: u64,
    ) -> KeysWait {
        let recent = |t: u64| now.saturating_sub(t) < KEY_REFETCH_MIN_SECS;
        let Some(issuer) = self.issuers.get(id) else {
            return KeysWait::AsTheyAre(pending);
        };
        let fetched_moments_ago = issuer.in_flight.is_none() && recent(issuer.keys_fetched_at);
        let failed_moments_ago = issuer.in_flight.is_none() && issuer.failed_at.is_some_and(recent);
        // A client's token (a bearer token anyone can forge with any `kid`) goes on with the
        // keys there are. An ID token the token endpoint itself just sent names a key the
        // IdP really signs with: it waits for the next allowed fetch instead of failing.
        if failed_moments_ago || (fetched_moments_ago && !pending.from_token_endpoint()) {
            return KeysWait::AsTheyAre(pending);
        }
        if self.park(stream, id, Wait::Keys(pending)) {
            self.eager |= !fetched_moments_ago;
            KeysWait::Parked
        } else {
            KeysWait::Full
        }
    }

    /// Waits for another request's refresh of the same session; `false` when full.
    pub fn park_refresh(&mut self, stream: u32, call: Box<RefreshCall>) -> bool {
        self.park(stream, NO_ISSUER, Wait::Refresh(call))
    }

    /// A stream went away: nothing waits for it any more, except a refresh waiting for keys,
    /// whose outcome the session's other requests still need (the IdP may have rotated the
    /// refresh token). It is woken like the others; the adapter finds its stream gone.
    pub fn forget(&mut self, stream: u32) {
        self.parked.retain(|(s, _, w)| {
            *s != stream || matches!(w, Wait::Keys(pending) if pending.outlives_request())
        });
    }

    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    #[cfg(test)]
    fn load_in_flight(&self, id: usize) -> Option<u64> {
        self.issuers.get(id)?.in_flight.map(|(load, _)| load)
    }
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

#[cfg(test)]
mod tests;
