//! Loading each issuer's metadata (discovery document and signing keys) and keeping it
//! fresh, as a state machine driven by time and events with no I/O: the coordinator feeds it
//! ticks, callout answers and what shared data holds, and carries out the [`Action`]s it
//! returns. Who waits for an issuer is the coordinator's to know; the loader is told whether
//! anyone does, and says when they may go on ([`Action::Wake`]).
//!
//! Loads are started from ticks only (the root context), so their callouts belong to a
//! context that lives as long as the VM, never to a request that may go away.

use crate::callout::Callout;
use crate::config::Config;
use crate::issuer::{self, Issuers, Metadata, KEY_REFETCH_MIN_SECS, MAIN, RETRY_SECS};
use crate::log::Level;
use crate::oidc::Discovery;

/// A load whose answer never came is given up this long after the callout's own timeout.
const LOST_AFTER_SECS: u64 = 5;

/// Who a [`Action::Wake`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiters {
    /// Requests that need the issuer's metadata: they decide again when `loaded`, else get a
    /// 503.
    Metadata,
    /// Tokens that named a key the issuer's JWKS lacked: they go on with the keys there are,
    /// `loaded` saying whether those were just fetched.
    Keys,
    /// Both.
    All,
}

/// Whether anyone waits on an issuer, as the coordinator tells the loader at each tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    pub metadata: bool,
    pub keys: bool,
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
    /// Whoever waits on `issuer` may go on.
    Wake {
        issuer: usize,
        waiters: Waiters,
        loaded: bool,
    },
    Log(Level, String),
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
    /// A load is wanted right away (the first, or one a waiter needs).
    eager: bool,
}

/// What a token naming a key its issuer's JWKS lacks waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysNeed {
    /// The keys are fetched again: wait for the load ([`Loader::want`]).
    Fetch,
    /// Fetched moments ago: wait for the next fetch allowed.
    NextFetch,
    /// Go on with the keys there are (the `kid` is simply unknown, or the IdP failed
    /// moments ago).
    AsTheyAre,
}

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

    /// Whether a load is wanted right away: tick at once.
    pub fn eager(&self) -> bool {
        self.eager
    }

    /// Someone waits for a load: start it at the next tick.
    pub fn want(&mut self) {
        self.eager = true;
    }

    /// Periodic work: adopt newer snapshots other workers shared (`shared`: each issuer's
    /// bytes and version, as read), give up loads whose answer was lost, start loads that
    /// are due, and wake whoever waits on an issuer with nothing to fetch (`waiting` says who
    /// waits on each).
    pub fn tick(
        &mut self,
        config: &Config,
        issuers: &mut Issuers,
        now: u64,
        shared: &[(Option<Vec<u8>>, Option<u32>)],
        waiting: &dyn Fn(usize) -> Waiting,
    ) -> Vec<Action> {
        self.eager = false;
        let mut actions = Vec::new();
        for (id, seen) in shared.iter().enumerate().take(self.issuers.len()) {
            if self.adopt(issuers, id, seen) {
                // Requests waiting for this issuer need not wait for our own load too.
                actions.push(wake(id, Waiters::Metadata, true));
            }
        }
        for id in 0..self.issuers.len() {
            actions.extend(self.tick_issuer(config, issuers, id, now, waiting(id)));
        }
        actions
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
        waiting: Waiting,
    ) -> Vec<Action> {
        let lost_after = config.idp_timeout_ms / 1000 + LOST_AFTER_SECS;
        let (decide_waiters, key_waiters) = (waiting.metadata, waiting.keys);
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
            actions.push(wake(id, Waiters::Metadata, loaded));
        }
        if key_waiters && !retry_due {
            actions.push(wake(id, Waiters::Keys, false));
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
                    actions.push(wake(id, Waiters::All, true));
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
        actions.push(wake(id, Waiters::Metadata, loaded));
        actions.push(wake(id, Waiters::Keys, false));
        actions
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
