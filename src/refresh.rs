//! One refresh per session, however many requests and Envoy workers find it due at once.
//!
//! The IdP may rotate refresh tokens and treat a second use of the old one as theft
//! (oidc-provider and Keycloak revoke the whole grant), so parallel requests on one expired
//! session must not each refresh. Workers share one slot per session in proxy-wasm shared
//! data: the first to find the slot free claims it with a compare-and-swap and refreshes;
//! the others wait and then take the published session. This module is the slot's format
//! and the decision of what a request does on reading it; the adapter only reads and
//! writes the bytes.
//!
//! Shared data cannot be deleted, so sessions hash onto a fixed number of slots: memory is
//! bounded by [`SLOTS`] times the largest session cookie. Two sessions on one slot only
//! make each other wait; a `Done` entry overwritten by another session before a late
//! request with the old cookie arrives makes that request refresh with a rotated token,
//! which ends its session (see the README).

use sha2::{Digest, Sha256};

/// Shared-data slots per cookie name.
pub const SLOTS: u16 = 256;
/// A slot held as `Busy` for longer than the callout timeout plus this is taken over: the
/// worker that claimed it may have died with its callout.
pub const GRACE_SECS: u64 = 2;
/// After the IdP could not be reached, requests on that session do not try again for this
/// long (they keep a still-valid access token, or get a 503).
pub const RETRY_SECS: u64 = 2;

/// The shared-data key of `session_id`'s slot.
pub fn slot_key(cookie_name: &str, session_id: &str) -> String {
    let digest = Sha256::digest(session_id.as_bytes());
    let n = digest
        .iter()
        .take(2)
        .fold(0u16, |acc, b| (acc << 8) | u16::from(*b))
        % SLOTS;
    slot_key_at(cookie_name, n)
}

/// Every slot's key, for creating them all before any request.
pub fn slot_keys(cookie_name: &str) -> impl Iterator<Item = String> + '_ {
    (0..SLOTS).map(move |n| slot_key_at(cookie_name, n))
}

/// The key of slot `n` (below [`SLOTS`]).
pub fn slot_key_at(cookie_name: &str, n: u16) -> String {
    format!("wasm-oauth2-proxy.refresh.{cookie_name}.{n}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A worker is refreshing this session.
    Busy,
    /// Refreshed: the new session's sealed cookie value.
    Done(String),
    /// The IdP refused the refresh (`invalid_grant`): the session is over.
    Ended,
    /// The IdP could not be reached or failed.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub session: String,
    /// For `Done`, the new session's generation; otherwise the one being refreshed.
    pub generation: u64,
    pub at: u64,
    pub state: State,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, cookie) = match &self.state {
            State::Busy => ("B", ""),
            State::Done(c) => ("D", c.as_str()),
            State::Ended => ("E", ""),
            State::Unavailable => ("U", ""),
        };
        format!(
            "1 {} {} {} {tag} {cookie}",
            self.session, self.generation, self.at
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(6, ' ');
        if parts.next()? != "1" {
            return None;
        }
        let session = parts.next()?.to_string();
        let generation = parts.next()?.parse().ok()?;
        let at = parts.next()?.parse().ok()?;
        let state = match (parts.next()?, parts.next().unwrap_or("")) {
            ("B", _) => State::Busy,
            ("D", c) if !c.is_empty() => State::Done(c.to_string()),
            ("E", _) => State::Ended,
            ("U", _) => State::Unavailable,
            _ => return None,
        };
        Some(Entry {
            session,
            generation,
            at,
            state,
        })
    }
}

/// Whether a refresh's outcome may be written over the slot: only while the slot still
/// holds the claim it made. A refresh that outlived its claim (taken over as presumed dead)
/// must not overwrite the claim of the one that took over.
pub fn still_claimed(slot: Option<&[u8]>, claim: &[u8]) -> bool {
    !claim.is_empty() && slot == Some(claim)
}

/// What a request whose session (`session`, `generation`) is due for a refresh does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Write this (a `Busy` entry) with compare-and-swap; on success, refresh.
    Claim(Vec<u8>),
    /// Someone is refreshing; look again shortly.
    Wait,
    /// Another request refreshed this session: use this sealed cookie value.
    Adopt(String),
    /// The session was refused at the IdP.
    Ended,
    /// The IdP failed moments ago.
    Unavailable,
}

/// `timeout` is the callout timeout in seconds.
pub fn plan(slot: Option<&[u8]>, session: &str, generation: u64, now: u64, timeout: u64) -> Plan {
    let claim = || {
        Plan::Claim(
            Entry {
                session: session.to_string(),
                generation,
                at: now,
                state: State::Busy,
            }
            .encode(),
        )
    };
    let Some(entry) = slot.and_then(Entry::decode) else {
        return claim();
    };
    let busy = entry.state == State::Busy && now.saturating_sub(entry.at) <= timeout + GRACE_SECS;
    if busy {
        return Plan::Wait;
    }
    if entry.session != session {
        return claim();
    }
    match entry.state {
        State::Done(cookie) if entry.generation > generation => Plan::Adopt(cookie),
        State::Ended if entry.generation >= generation => Plan::Ended,
        State::Unavailable
            if entry.generation == generation && now.saturating_sub(entry.at) < RETRY_SECS =>
        {
            Plan::Unavailable
        }
        _ => claim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: &str, generation: u64, at: u64, state: State) -> Vec<u8> {
        Entry {
            session: session.into(),
            generation,
            at,
            state,
        }
        .encode()
    }

    #[test]
    fn entries_round_trip_and_junk_is_free() {
        for state in [
            State::Busy,
            State::Done("c00kie_-".into()),
            State::Ended,
            State::Unavailable,
        ] {
            let e = Entry {
                session: "s1".into(),
                generation: 7,
                at: 99,
                state,
            };
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
        for junk in [
            &b""[..],
            b"2 s 1 1 B ",
            b"1 s x 1 B ",
            b"1 s 1 1 D ",
            b"\xff",
        ] {
            assert!(Entry::decode(junk).is_none());
            assert!(matches!(plan(Some(junk), "s", 0, 10, 5), Plan::Claim(_)));
        }
    }

    #[test]
    fn the_first_claims_and_the_rest_wait_until_done() {
        let Plan::Claim(busy) = plan(None, "s", 3, 100, 5) else {
            panic!("expected a claim");
        };
        assert_eq!(plan(Some(&busy), "s", 3, 101, 5), Plan::Wait);
        // Another session on the same slot waits too, rather than overwrite a refresh.
        assert_eq!(plan(Some(&busy), "other", 0, 101, 5), Plan::Wait);
        let done = entry("s", 4, 102, State::Done("new".into()));
        assert_eq!(plan(Some(&done), "s", 3, 103, 5), Plan::Adopt("new".into()));
        // The refreshed session itself, once due again, refreshes.
        assert!(matches!(plan(Some(&done), "s", 4, 500, 5), Plan::Claim(_)));
        assert!(matches!(
            plan(Some(&done), "other", 0, 103, 5),
            Plan::Claim(_)
        ));
    }

    #[test]
    fn a_lost_refresh_is_taken_over() {
        let busy = entry("s", 3, 100, State::Busy);
        assert_eq!(plan(Some(&busy), "s", 3, 107, 5), Plan::Wait);
        assert!(matches!(plan(Some(&busy), "s", 3, 108, 5), Plan::Claim(_)));
    }

    #[test]
    fn failures_are_shared() {
        let ended = entry("s", 3, 100, State::Ended);
        assert_eq!(plan(Some(&ended), "s", 3, 1000, 5), Plan::Ended);
        assert_eq!(plan(Some(&ended), "s", 2, 1000, 5), Plan::Ended);
        assert!(matches!(
            plan(Some(&ended), "s", 4, 1000, 5),
            Plan::Claim(_)
        ));
        let down = entry("s", 3, 100, State::Unavailable);
        assert_eq!(plan(Some(&down), "s", 3, 101, 5), Plan::Unavailable);
        assert!(matches!(plan(Some(&down), "s", 3, 102, 5), Plan::Claim(_)));
    }

    #[test]
    fn slots_are_bounded_and_spread() {
        let keys: std::collections::HashSet<String> = (0..5000)
            .map(|i| slot_key("_oauth2_proxy", &format!("session-{i}")))
            .collect();
        assert_eq!(keys.len(), usize::from(SLOTS));
    }
}
