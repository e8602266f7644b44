//! One refresh per session, however many requests and Envoy workers find it due at once.
//!
//! The IdP may rotate refresh tokens and treat a second use of the old one as theft
//! (oidc-provider and Keycloak revoke the whole grant), so parallel requests on one expired
//! session must not each refresh. Workers share slots in proxy-wasm shared data: the first
//! request to find its session due claims a slot with a compare-and-swap and refreshes; the
//! others wait and then take the published session. This module is the slots' format and
//! the decision of what a request does on reading them; the adapter only reads and writes
//! the bytes.
//!
//! Shared data cannot be deleted, so there is a fixed number of slots ([`SLOTS`], memory
//! bounded by that times the largest session cookie), and each session may use any of
//! [`CHOICES`] of them. A slot holding another session's finished refresh is not taken for
//! [`HOLD_SECS`]: requests that still carry that session's old cookie (sent before the new
//! one arrived, on any worker) must find the new session there, or they would refresh with
//! a refresh token the IdP already rotated. When every slot a session may use is held, its
//! request waits, and after `idp_timeout` + [`GRACE_SECS`] goes on without a refresh (its
//! access token while it is valid, else a 503): never a second use of a rotated token.

use sha2::{Digest, Sha256};

/// Shared-data slots per cookie name.
pub const SLOTS: u16 = 1024;
/// Slots each session may use (its candidates, from a hash of its id).
pub const CHOICES: usize = 4;
/// A finished refresh stays readable this long before another session may take its slot.
pub const HOLD_SECS: u64 = 120;
/// A slot held as `Busy` for longer than the callout timeout plus this is taken over: the
/// worker that claimed it may have died with its callout.
pub const GRACE_SECS: u64 = 2;
/// After the IdP could not be reached, requests on that session do not try again for this
/// long (they keep a still-valid access token, or get a 503).
pub const RETRY_SECS: u64 = 2;

/// The shared-data keys of the slots `session_id` may use: [`CHOICES`] distinct ones.
pub fn slot_keys_for(cookie_name: &str, session_id: &str) -> Vec<String> {
    let digest = Sha256::digest(session_id.as_bytes());
    let mut picked: Vec<u16> = Vec::with_capacity(CHOICES);
    for pair in digest.chunks(2) {
        let n = pair.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b)) % SLOTS;
        if !picked.contains(&n) {
            picked.push(n);
        }
        if picked.len() == CHOICES {
            break;
        }
    }
    picked
        .iter()
        .map(|n| slot_key_at(cookie_name, *n))
        .collect()
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
    /// When this session's refresh token was last rotated (its last successful refresh; 0:
    /// never). Until [`HOLD_SECS`] after it, requests may still carry the older cookie, so
    /// the slot stays the session's whatever state it is in.
    pub rotated_at: u64,
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
            "2 {} {} {} {} {tag} {cookie}",
            self.session, self.generation, self.at, self.rotated_at
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(7, ' ');
        if parts.next()? != "2" {
            return None;
        }
        let session = parts.next()?.to_string();
        let generation = parts.next()?.parse().ok()?;
        let at = parts.next()?.parse().ok()?;
        let rotated_at = parts.next()?.parse().ok()?;
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
            rotated_at,
            state,
        })
    }

    /// The entry a refresh publishes over `claim` (the `Busy` entry it wrote): a new
    /// session's cookie records that the refresh token was just rotated; a failure keeps
    /// what the claim knew of the last rotation.
    pub fn outcome(claim: &[u8], state: State, now: u64) -> Option<Entry> {
        let busy = Entry::decode(claim)?;
        let (generation, rotated_at) = match state {
            State::Done(_) => (busy.generation.saturating_add(1), now),
            _ => (busy.generation, busy.rotated_at),
        };
        Some(Entry {
            session: busy.session,
            generation,
            at: now,
            rotated_at,
            state,
        })
    }

    /// Whether another session may take this entry's slot at `now`.
    fn free_for_others(&self, now: u64, timeout: u64) -> bool {
        // Requests still carrying the cookie from before the last rotation must find out
        // here that their refresh token is used up (and the new session, if it is here).
        if self.rotated_at > 0 && now.saturating_sub(self.rotated_at) < HOLD_SECS {
            return false;
        }
        let age = now.saturating_sub(self.at);
        match self.state {
            State::Busy => age > timeout + GRACE_SECS,
            // A refused grant is refused again if asked; a failure is retried soon anyway.
            State::Done(_) | State::Ended | State::Unavailable => age >= RETRY_SECS,
        }
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
    /// Write this (a `Busy` entry) with compare-and-swap into candidate `slot`; on success,
    /// refresh.
    Claim { slot: usize, bytes: Vec<u8> },
    /// Someone is refreshing, or every candidate slot is held; look again shortly.
    Wait,
    /// Another request refreshed this session: use this sealed cookie value.
    Adopt(String),
    /// The session was refused at the IdP.
    Ended,
    /// The IdP failed moments ago, or no slot came free in time: no refresh now.
    Unavailable,
}

/// What a due session's request does given its candidate slots' contents (`slots`, in
/// [`slot_keys_for`]'s order). `timeout` is the callout timeout in seconds; `since` is when
/// the request first found its session due (it waits at most `timeout` + [`GRACE_SECS`]).
pub fn plan(
    slots: &[Option<&[u8]>],
    session: &str,
    generation: u64,
    now: u64,
    timeout: u64,
    since: u64,
) -> Plan {
    let entries: Vec<Option<Entry>> = slots.iter().map(|b| b.and_then(Entry::decode)).collect();
    // A session reclaiming its own slot keeps the time of its last rotation.
    let claim = |slot: usize| {
        let rotated_at = entries
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|e| e.session == session)
            .map_or(0, |e| e.rotated_at);
        Plan::Claim {
            slot,
            bytes: Entry {
                session: session.to_string(),
                generation,
                at: now,
                rotated_at,
                state: State::Busy,
            }
            .encode(),
        }
    };
    let mine = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().filter(|e| e.session == session).map(|e| (i, e)))
        // The newest of this session's entries speaks for it.
        .max_by_key(|(_, e)| (e.generation, e.at));
    if let Some((i, entry)) = mine {
        let busy = entry.state == State::Busy && !entry.free_for_others(now, timeout);
        let decided = match &entry.state {
            _ if busy => Some(Plan::Wait),
            State::Done(cookie) if entry.generation > generation => {
                Some(Plan::Adopt(cookie.clone()))
            }
            State::Ended if entry.generation >= generation => Some(Plan::Ended),
            // The session moved on past this request's cookie, whose refresh token the IdP
            // has rotated, and its newer cookie is not here to adopt: no refresh with it.
            _ if entry.generation > generation => Some(Plan::Unavailable),
            State::Unavailable
                if entry.generation == generation && now.saturating_sub(entry.at) < RETRY_SECS =>
            {
                Some(Plan::Unavailable)
            }
            // Its own older entry: the slot is this session's to reuse.
            _ => None,
        };
        return match decided {
            Some(Plan::Wait) if gave_up(now, since, timeout) => Plan::Unavailable,
            Some(plan) => plan,
            None => claim(i),
        };
    }
    // The emptiest candidate: never written, then the oldest entry other sessions let go.
    let free = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.as_ref().is_none_or(|e| e.free_for_others(now, timeout)))
        .min_by_key(|(_, e)| e.as_ref().map(|e| e.at));
    match free {
        Some((i, _)) => claim(i),
        None if gave_up(now, since, timeout) => Plan::Unavailable,
        None => Plan::Wait,
    }
}

/// After a claim of candidate `slot` was written: whether it stands. Two requests of one
/// session that read its slots at different moments may each have found a different slot
/// free and claimed it. Each reads the candidates again (`slots`) after its write; whoever
/// sees another live entry of its session backs off (puts back what its slot held, and
/// waits). The later of two writes always sees the earlier, so at most one refreshes.
pub fn confirm(
    slots: &[Option<&[u8]>],
    slot: usize,
    session: &str,
    generation: u64,
    now: u64,
    timeout: u64,
) -> bool {
    slots
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != slot)
        .filter_map(|(_, b)| b.and_then(Entry::decode))
        .filter(|e| e.session == session)
        .all(|e| {
            let recent = now.saturating_sub(e.at) < RETRY_SECS;
            let live = match e.state {
                State::Busy => !e.free_for_others(now, timeout) || e.generation > generation,
                State::Done(_) => e.generation > generation,
                State::Ended => e.generation >= generation,
                State::Unavailable => {
                    e.generation > generation || (e.generation == generation && recent)
                }
            };
            !live
        })
}

fn gave_up(now: u64, since: u64, timeout: u64) -> bool {
    now.saturating_sub(since) > timeout + GRACE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: &str, generation: u64, at: u64, state: State) -> Vec<u8> {
        let rotated_at = if matches!(state, State::Done(_)) {
            at
        } else {
            0
        };
        Entry {
            session: session.into(),
            generation,
            at,
            rotated_at,
            state,
        }
        .encode()
    }

    /// `plan` over four candidate slots, `slots` filled in from the first.
    fn plan_in(slots: &[&[u8]], session: &str, generation: u64, now: u64, since: u64) -> Plan {
        let mut all: Vec<Option<&[u8]>> = slots.iter().map(|b| Some(*b)).collect();
        all.resize(CHOICES, None);
        plan(&all, session, generation, now, 5, since)
    }

    fn claims(p: &Plan) -> Option<usize> {
        match p {
            Plan::Claim { slot, .. } => Some(*slot),
            _ => None,
        }
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
                rotated_at: 42,
                state,
            };
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
        for junk in [
            &b""[..],
            b"free",
            b"1 s 1 1 B ",
            b"3 s 1 1 0 B ",
            b"2 s x 1 0 B ",
            b"2 s 1 1 x B ",
            b"2 s 1 1 0 D ",
            b"\xff",
        ] {
            assert!(Entry::decode(junk).is_none());
            assert_eq!(
                claims(&plan_in(&[junk, junk, junk, junk], "s", 0, 10, 10)),
                Some(0)
            );
        }
    }

    #[test]
    fn the_first_claims_and_the_rest_wait_until_done() {
        let p = plan_in(&[], "s", 3, 100, 100);
        let Plan::Claim {
            slot: 0,
            bytes: busy,
        } = p
        else {
            panic!("expected a claim of the first slot, got {p:?}");
        };
        assert_eq!(plan_in(&[&busy], "s", 3, 101, 100), Plan::Wait);
        // Another session whose candidates include it takes a free one instead.
        assert_eq!(claims(&plan_in(&[&busy], "other", 0, 101, 101)), Some(1));
        let done = entry("s", 4, 102, State::Done("new".into()));
        assert_eq!(
            plan_in(&[b"free", &done], "s", 3, 103, 100),
            Plan::Adopt("new".into())
        );
        // The refreshed session itself, once due again, refreshes in the same slot.
        assert_eq!(
            claims(&plan_in(&[b"free", &done], "s", 4, 500, 500)),
            Some(1)
        );
    }

    /// Defect: sessions sharing a slot. A second session's claim overwrote the first one's
    /// published result, so a late request with the first session's old cookie refreshed
    /// again with a refresh token the IdP had rotated (and a reuse-detecting IdP revoked the
    /// grant). Now a finished refresh holds its slot for HOLD_SECS.
    #[test]
    fn a_finished_refresh_is_not_overwritten_by_another_session() {
        let done = entry("a", 1, 100, State::Done("a-new".into()));
        for now in [101, 100 + HOLD_SECS - 1] {
            // Session b, all of whose candidates hold other sessions' fresh results, waits...
            let held = [&done[..], &done[..], &done[..], &done[..]];
            assert_eq!(plan_in(&held, "b", 0, now, now), Plan::Wait, "+{now}");
            // ... and the late request of session a still finds its new session.
            assert_eq!(
                plan_in(&held, "a", 0, now, now),
                Plan::Adopt("a-new".into())
            );
        }
        // Once held long enough, the slot is free for others.
        let held = [&done[..], &done[..], &done[..], &done[..]];
        assert_eq!(
            claims(&plan_in(&held, "b", 0, 100 + HOLD_SECS, 100 + HOLD_SECS)),
            Some(0)
        );
    }

    /// Two requests of one session that read at different moments may claim different
    /// slots; the one that then sees the other's claim backs off.
    #[test]
    fn a_claim_that_sees_another_claim_of_its_session_backs_off() {
        let mine = entry("s", 3, 100, State::Busy);
        let other = entry("s", 3, 100, State::Busy);
        let slots: [Option<&[u8]>; 4] = [Some(&mine), Some(&other), None, None];
        assert!(!confirm(&slots, 0, "s", 3, 100, 5));
        assert!(!confirm(&slots, 1, "s", 3, 100, 5));
        // Another session's claim, a dead claim, or the session's own older result: it stands.
        let foreign = entry("x", 0, 100, State::Busy);
        let dead = entry("s", 3, 90, State::Busy);
        let older = entry("s", 3, 90, State::Done("c".into()));
        for next in [&foreign, &dead, &older] {
            let slots: [Option<&[u8]>; 4] = [Some(&mine), Some(next), None, None];
            assert!(confirm(&slots, 0, "s", 3, 100, 5));
        }
        // A newer result of the session: back off (and adopt it on the next read).
        let newer = entry("s", 4, 100, State::Done("c".into()));
        let slots: [Option<&[u8]>; 4] = [Some(&mine), Some(&newer), None, None];
        assert!(!confirm(&slots, 0, "s", 3, 100, 5));
    }

    #[test]
    fn with_every_slot_held_a_request_waits_then_goes_on_without_a_refresh() {
        let done = entry("a", 1, 100, State::Done("a-new".into()));
        let held = [&done[..], &done[..], &done[..], &done[..]];
        assert_eq!(plan_in(&held, "b", 0, 105, 100), Plan::Wait);
        assert_eq!(
            plan_in(&held, "b", 0, 100 + 5 + GRACE_SECS, 100),
            Plan::Wait
        );
        assert_eq!(
            plan_in(&held, "b", 0, 100 + 5 + GRACE_SECS + 1, 100),
            Plan::Unavailable
        );
    }

    #[test]
    fn a_lost_refresh_is_taken_over() {
        let busy = entry("s", 3, 100, State::Busy);
        assert_eq!(plan_in(&[&busy], "s", 3, 107, 107), Plan::Wait);
        assert_eq!(claims(&plan_in(&[&busy], "s", 3, 108, 108)), Some(0));
        // Another session may take a dead claim's slot too.
        let full = [&busy[..], &busy[..], &busy[..], &busy[..]];
        assert_eq!(claims(&plan_in(&full, "x", 0, 108, 108)), Some(0));
        assert_eq!(plan_in(&full, "x", 0, 107, 107), Plan::Wait);
    }

    #[test]
    fn failures_are_shared() {
        let ended = entry("s", 3, 100, State::Ended);
        assert_eq!(plan_in(&[&ended], "s", 3, 1000, 1000), Plan::Ended);
        assert_eq!(plan_in(&[&ended], "s", 2, 1000, 1000), Plan::Ended);
        assert_eq!(claims(&plan_in(&[&ended], "s", 4, 1000, 1000)), Some(0));
        let down = entry("s", 3, 100, State::Unavailable);
        assert_eq!(plan_in(&[&down], "s", 3, 101, 101), Plan::Unavailable);
        assert_eq!(claims(&plan_in(&[&down], "s", 3, 102, 102)), Some(0));
        // Failures do not hold a slot against other sessions for long.
        let full = [&down[..], &down[..], &down[..], &down[..]];
        assert_eq!(plan_in(&full, "x", 0, 101, 101), Plan::Wait);
        assert_eq!(claims(&plan_in(&full, "x", 0, 102, 102)), Some(0));
    }

    #[test]
    fn slots_are_bounded_spread_and_distinct_per_session() {
        let mut all = std::collections::HashSet::new();
        for i in 0..20000 {
            let keys = slot_keys_for("_oauth2_proxy", &format!("session-{i}"));
            let distinct: std::collections::HashSet<&String> = keys.iter().collect();
            assert_eq!(distinct.len(), CHOICES);
            all.extend(keys);
        }
        assert_eq!(all.len(), usize::from(SLOTS));
        let every: std::collections::HashSet<String> = slot_keys("_oauth2_proxy").collect();
        assert!(all.is_subset(&every));
    }
}
