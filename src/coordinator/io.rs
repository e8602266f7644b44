//! What the coordinator is told ([`Event`]) and what it asks of the host ([`Action`]). The
//! adapter answers every `Read`, `Write` and `Dispatch` with its report before it returns to
//! the host: shared data and dispatch are synchronous host calls, and a request decided in
//! one host callback relies on it.

use crate::callout::Callout;
use crate::gate::{Request, Response};
use crate::log::Level;

#[derive(Debug)]
pub enum Event<'a> {
    /// A request's headers arrived; `exact`: writing them back whole reproduces them byte
    /// for byte.
    Request {
        stream: u32,
        req: Request,
        exact: bool,
    },
    /// The host sent `call` as callout `token`, or would not (`None`).
    Dispatched { call: u64, token: Option<u32> },
    /// Callout `token` was answered (`None`: it failed, timed out, or its body was over
    /// the size limit and left unread: `too_large`).
    Answer {
        token: u32,
        answer: Option<(u16, &'a [u8])>,
        too_large: bool,
    },
    /// What shared data held for a [`Action::Read`]'s keys, in order: bytes and version.
    Read {
        read: u64,
        values: Vec<(Option<Vec<u8>>, Option<u32>)>,
    },
    /// Whether a reported [`Action::Write`] took, and the key's version after it.
    Written {
        write: u64,
        ok: bool,
        version: Option<u32>,
    },
    /// The tick the coordinator asked for with [`Action::TickEvery`].
    Tick,
}

/// How a request's headers change on the way to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Nothing to change.
    None,
    /// The whole map, serialised (see `crate::routing::wire`), replacing the request's: one
    /// host call.
    Whole(Vec<u8>),
    /// One host call per header: remove these, then set these (replacing every copy).
    Each {
        remove: Vec<String>,
        set: Vec<(String, String)>,
    },
}

#[derive(Debug)]
pub enum Action {
    /// Let the request on to the app with these header edits; `resume`: it was paused.
    Continue {
        stream: u32,
        edit: HeaderEdit,
        resume: bool,
    },
    /// Answer the request locally.
    Respond {
        stream: u32,
        response: Response,
    },
    /// Send `callout` to `cluster` with this timeout; report [`Event::Dispatched`].
    Dispatch {
        call: u64,
        cluster: String,
        callout: Callout,
        timeout_ms: u64,
    },
    /// Read these shared-data keys; report [`Event::Read`].
    Read {
        read: u64,
        keys: Vec<String>,
    },
    /// Write `bytes` to `key`, compare-and-swap on `cas` when given; report
    /// [`Event::Written`] when `write` is given.
    Write {
        write: Option<u64>,
        key: String,
        bytes: Vec<u8>,
        cas: Option<u32>,
    },
    Log(Level, String),
    /// Tick every this many milliseconds from now on (asked only when it changes).
    TickEvery(u64),
    /// An IdP callout ended, for the callout metrics: what it was for, its status (`None`:
    /// it failed) and how long it took.
    Measured {
        target: &'static str,
        status: Option<u16>,
        millis: u64,
    },
}
