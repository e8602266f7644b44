//! Which worker loads an issuer's metadata. Every worker of an Envoy has a VM of its own,
//! and each would call the IdP for the same documents (at start, when they go stale, after
//! an outage); instead, a worker claims the load in shared data with compare-and-swap, the
//! others wait for its snapshot, and a failure is written over the claim so that during an
//! outage one worker per [`RETRY_SECS`](crate::issuer::RETRY_SECS) calls the IdP, not every
//! one of them. A claim whose worker went quiet is taken over once it is older than a
//! load may take.

/// A load claim as shared data holds it: `L1 <worker> <started_at> <failed_at>` (0: the
/// load has not failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub worker: u64,
    pub started_at: u64,
    pub failed_at: u64,
}

impl Claim {
    pub fn encode(&self) -> Vec<u8> {
        format!("L1 {} {} {}", self.worker, self.started_at, self.failed_at).into_bytes()
    }

    /// `None` for anything else (a slot never claimed holds `free`).
    pub fn decode(bytes: &[u8]) -> Option<Claim> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        if parts.next()? != "L1" {
            return None;
        }
        let claim = Claim {
            worker: parts.next()?.parse().ok()?,
            started_at: parts.next()?.parse().ok()?,
            failed_at: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(claim)
    }
}

/// The shared-data key of an issuer's load claim.
pub fn key(issuer_url: &str) -> String {
    format!("wasm-oauth2-proxy/load/{issuer_url}")
}

/// What a worker due to load (`me`) finds in the claim slot at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nobody's load is under way: claim it.
    Free,
    /// Another worker is loading and may still answer: wait for its snapshot.
    Held,
    /// The last load, anyone's, failed at this time.
    Failed(u64),
}

/// `lost_after`: how long a load may take before its claim is taken over.
pub fn found(bytes: Option<&[u8]>, me: u64, now: u64, lost_after: u64) -> Found {
    let Some(c) = bytes.and_then(Claim::decode) else {
        return Found::Free;
    };
    if c.failed_at > 0 {
        return Found::Failed(c.failed_at);
    }
    let live = now.saturating_sub(c.started_at) <= lost_after;
    if c.worker != me && live {
        Found::Held
    } else {
        Found::Free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_junk_is_no_claim() {
        let c = Claim {
            worker: 42,
            started_at: 1_700_000_000,
            failed_at: 0,
        };
        assert_eq!(Claim::decode(&c.encode()), Some(c));
        for junk in [
            &b"free"[..],
            b"L1 1 2",
            b"L1 1 2 3 4",
            b"L2 1 2 3",
            b"L1 x 2 3",
            b"",
        ] {
            assert_eq!(Claim::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_live_claim_of_another_worker_is_waited_for_and_a_stale_one_taken_over() {
        let mine = Claim {
            worker: 1,
            started_at: 100,
            failed_at: 0,
        };
        let theirs = Claim { worker: 2, ..mine };
        let at = |c: Claim, now| found(Some(&c.encode()), 1, now, 6);
        assert_eq!(at(theirs, 100), Found::Held);
        assert_eq!(at(theirs, 106), Found::Held);
        assert_eq!(at(theirs, 107), Found::Free, "its worker went quiet");
        assert_eq!(at(mine, 101), Found::Free, "a worker's own claim");
        assert_eq!(found(None, 1, 100, 6), Found::Free);
        assert_eq!(found(Some(b"free"), 1, 100, 6), Found::Free);
        let failed = Claim {
            failed_at: 103,
            ..theirs
        };
        assert_eq!(at(failed, 104), Found::Failed(103));
        assert_eq!(
            at(
                Claim {
                    worker: 1,
                    ..failed
                },
                104
            ),
            Found::Failed(103)
        );
    }
}
