//! How a load ends: the answers to its callouts (discovery, then keys), a dispatch the host
//! refused, and a failure, which the other workers hear of through the load's claim.

use super::action::{Action, Fetch, Waiters};
use super::claim::{self, Claim};
use super::{wake, Loader};
use crate::config::Config;
use crate::issuer::{self, Issuers};
use crate::log::Level;

impl Loader {
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
                        issuer.claim_version = None;
                        issuer.keys_wanted_since = None;
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
    pub(super) fn failed(
        &mut self,
        issuers: &Issuers,
        id: usize,
        now: u64,
        reason: &str,
    ) -> Vec<Action> {
        let url = self
            .issuers
            .get(id)
            .map(|i| i.url.clone())
            .unwrap_or_default();
        let me = self.me;
        let mut actions = Vec::new();
        if let Some(issuer) = self.issuers.get_mut(id) {
            issuer.in_flight = None;
            // Keys may still be fetched again soon; a failure is not a fetch.
            issuer.failed_at = Some(now);
            issuer.keys_wanted_since = None;
            // The other workers hear of it, and wait RETRY_SECS as we do.
            if let Some(cas) = issuer.claim_version.take() {
                let failed = Claim {
                    worker: me,
                    started_at: now,
                    failed_at: now,
                };
                actions.push(Action::Release {
                    key: claim::key(&url),
                    bytes: failed.encode(),
                    cas: Some(cas),
                });
            }
        }
        let line = serde_json::json!({
            "event": "provider_load_failed", "issuer": url, "reason": reason,
        });
        actions.push(Action::Log(Level::Warn, line.to_string()));
        // Requests that need the metadata go on with what is loaded; those that waited for
        // fresh keys learn that none came.
        let loaded = issuers.get(id).is_some();
        actions.push(wake(id, Waiters::Metadata, loaded));
        actions.push(wake(id, Waiters::Keys, false));
        actions
    }
}
