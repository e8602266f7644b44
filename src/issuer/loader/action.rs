//! What the loader says: the actions it asks of the coordinator, who they wake, and what a
//! token naming an unknown key waits for.

use crate::callout::Callout;
use crate::log::Level;
use crate::oidc::Discovery;

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
    /// Make this callout for `issuer` and report its answer to `Loader::on_answer`, or a
    /// refused dispatch to `Loader::on_dispatch_failed`.
    Fetch {
        issuer: usize,
        load: u64,
        callout: Callout,
        fetch: Fetch,
    },
    /// Store this metadata snapshot in shared data for the other workers, then report the
    /// version written with `Loader::shared_written`.
    Share {
        issuer: usize,
        key: String,
        bytes: Vec<u8>,
    },
    /// Claim `issuer`'s load in shared data (compare-and-swap on `cas`, the version read),
    /// then report whether it took, and the version after, to `Loader::on_claimed`.
    Claim {
        issuer: usize,
        key: String,
        bytes: Vec<u8>,
        cas: Option<u32>,
    },
    /// Write this over our claim (compare-and-swap on `cas`): the load failed. No report.
    Release {
        key: String,
        bytes: Vec<u8>,
        cas: Option<u32>,
    },
    /// Whoever waits on `issuer` may go on.
    Wake {
        issuer: usize,
        waiters: Waiters,
        loaded: bool,
    },
    Log(Level, String),
}

/// What a token naming a key its issuer's JWKS lacks waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysNeed {
    /// The keys are fetched again: wait for the load (`Loader::want`).
    Fetch,
    /// Fetched moments ago: wait for the next fetch allowed.
    NextFetch,
    /// Go on with the keys there are (the `kid` is simply unknown, or the IdP failed
    /// moments ago).
    AsTheyAre,
}
