//! The decision engine: given the configuration, a request view, the time, randomness and
//! the caches, say what to do with the request. No I/O happens here; the `filter` adapter
//! carries out the returned [`Decision`] and feeds callout responses back via [`resume`].
//!
//! `vocab` and `waits` hold what the gate says and remembers, `router` where a request goes;
//! one module per part of the flow (`login` and `callback`, `renew` and `lifecycle`,
//! `logout`, `bearer`, `exchange`, `endpoints`, `upstream`) and the pieces they share
//! (`request`, `respond`, `urls`, `sessions`, `client`, `edits`, `grpc`).

mod bearer;
mod callback;
mod client;
mod edits;
mod endpoints;
mod exchange;
mod grpc;
mod lifecycle;
mod login;
mod logout;
mod renew;
mod request;
mod respond;
mod router;
mod sessions;
mod upstream;
mod urls;
mod vocab;
mod waits;

/// Re-exported: the gate's callouts are [`Decision::Call`]'s; the type lives apart so the
/// providers and the issuer loader need not depend on the gate.
pub use crate::callout::Callout;
pub use crate::log::Level;
pub use edits::edited_headers;
pub use lifecycle::DEFAULT_TOKEN_SECS;
pub use request::{Env, Incoming, Request, Response};
pub use respond::{request_id, unavailable};
pub use router::{decide, resume, resume_keys, settle};
pub use vocab::{
    Admitted, Context, Decision, Exchanged, Publish, Step, BEARER_CACHE_BYTES,
    BEARER_CACHE_ENTRIES, EXCHANGE_CACHE_BYTES, EXCHANGE_CACHE_ENTRIES, SESSION_CACHE_BYTES,
    SESSION_CACHE_ENTRIES,
};
pub use waits::{
    Callback, ExchangeWait, Pending, PendingBox, ProfileWait, RefreshCall, Renewal, Settled,
    SignOut,
};

#[cfg(test)]
mod flow_tests;
