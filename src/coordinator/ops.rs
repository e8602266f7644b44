//! What each shared-data read or write the coordinator asked for awaits (see `slots`).

use crate::gate::{Publish, RefreshCall, Request};

/// What a shared-data read or write waits for.
#[derive(Debug)]
pub(super) enum Op {
    /// Every refresh slot and load claim (these keys), to create those that do not exist
    /// yet.
    CreateSlots(Vec<String>),
    /// The claim of an issuer's load.
    Claimed { issuer: usize },
    /// An issuer's snapshot, for a request that found the issuer failed moments ago on this
    /// worker: another worker may have loaded it since.
    Adopt {
        stream: u32,
        issuer: usize,
        req: Request,
    },
    /// Each issuer's snapshot, for the tick.
    Snapshots,
    /// The write of an issuer's snapshot: its version, so it is not adopted back.
    Shared { issuer: usize },
    /// A due session's candidate slots, to plan its refresh.
    Plan(Box<Claim>),
    /// The compare-and-swap of a claim.
    Claim(Box<Claim>),
    /// The candidate slots again after a claim was written, to see that it stands.
    Confirm(Box<Claim>),
    /// A refresh's slot, to write its outcome over its claim.
    Publish(Publish),
}

/// A request's refresh in the making.
#[derive(Debug)]
pub(super) struct Claim {
    pub(super) stream: u32,
    pub(super) call: Box<RefreshCall>,
    pub(super) resumed: bool,
    /// The candidate slot claimed, the `Busy` entry written, and what the slot held before.
    pub(super) slot: usize,
    pub(super) bytes: Vec<u8>,
    pub(super) before: Option<Vec<u8>>,
}
