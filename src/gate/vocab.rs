//! The gate's vocabulary: what it decides ([`Decision`], with its log line and any refresh
//! outcome to share: [`Step`]), what a decision reads besides the request ([`Context`]), and
//! a credential as the hot path holds it ([`Admitted`]).

use super::request::{Request, Response};
use super::waits::{PendingBox, RefreshCall};
use crate::cache::{Cache, Cached};
use crate::callout::Callout;
use crate::config::Config;
use crate::issuer::{Issuers, Metadata, MAIN};
use crate::log::Level;
use crate::metrics::Metrics;
use crate::oidc::JwtError;
use crate::policy::{self, Denied};
use crate::routing::headers;
use crate::session::Session;
use std::rc::Rc;

/// Bounds of the per-VM caches (each Envoy worker has its own VM): opened sessions and
/// verified bearer tokens. A chunked session with 150 groups weighs about 40 KB here.
pub const SESSION_CACHE_ENTRIES: usize = 1024;
pub const SESSION_CACHE_BYTES: usize = 8 << 20;
pub const BEARER_CACHE_ENTRIES: usize = 1024;
pub const BEARER_CACHE_BYTES: usize = 4 << 20;
/// Tokens from `upstream_token_exchange`, by the token they were exchanged for.
pub const EXCHANGE_CACHE_ENTRIES: usize = 1024;
pub const EXCHANGE_CACHE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the request on to the app after removing and setting these headers, and add
    /// `reply` as `Set-Cookie` headers to the app's response (a refreshed or re-sealed
    /// session).
    Continue {
        remove: Vec<String>,
        /// Values shared with the cached session they come from: no copy per request.
        set: Vec<(&'static str, Rc<str>)>,
        reply: Vec<String>,
    },
    /// Answer locally.
    Respond(Response),
    /// This issuer's discovery and keys are not loaded yet: wait for them, then decide again.
    NeedIssuer(usize),
    /// Call the identity provider, then `resume` with the answer.
    Call(Callout, PendingBox),
    /// Fetch this issuer's keys again (a token named an unknown `kid`), then `resume_keys`.
    NeedKeys(usize, PendingBox),
    /// The session is due for a refresh: coordinate through the shared-data slots (see
    /// [`crate::refresh`]), then either make the callout and `resume`, or `settle`.
    Refresh(Box<RefreshCall>),
}

/// A decision and the one structured log line that explains it. Log lines carry event
/// names, paths and user emails, never tokens, cookies or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub decision: Decision,
    pub log: Option<(Level, String)>,
    /// A refresh's outcome, for the requests waiting on the same session.
    pub publish: Option<Publish>,
}

/// Write `bytes` to the shared-data `key` if it still holds `claim` (see
/// [`crate::refresh::still_claimed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub key: String,
    pub bytes: Vec<u8>,
    pub claim: Vec<u8>,
}

/// What a waiting request comes to: a step, or (its session renewed) a new decision on the
/// request, which only the router can make.
// Lives only from one call to the next, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Step(Step),
    DecideAgain {
        req: Request,
        publish: Option<Publish>,
        log: Option<(Level, String)>,
    },
}

/// Everything a decision reads besides the request.
pub struct Context<'a> {
    pub config: &'a Config,
    pub issuers: &'a Issuers,
    pub sessions: &'a mut Cache<Admitted>,
    pub bearers: &'a mut Cache<Admitted>,
    pub exchanged: &'a mut Cache<Exchanged>,
    /// The hot path's counts (log lines are counted by whoever writes them out).
    pub metrics: &'a mut Metrics,
}

impl<'a> Context<'a> {
    /// The login issuer's metadata, when loaded.
    pub fn login_issuer(&self) -> Option<&'a Metadata> {
        self.issuers.get(MAIN)
    }
}

/// A session (from a cookie or a bearer token) as the hot path uses it: opened or verified
/// once, its headers for the app built once and the access rules applied once, so a
/// request with a cached credential only looks it up and copies the headers out.
#[derive(Debug)]
pub struct Admitted {
    pub session: Session,
    pub upstream: Vec<(&'static str, Rc<str>)>,
    pub verdict: Result<(), Denied>,
    /// The cookie value that replaces the one the request carried (after a refresh, or a
    /// re-seal with the current `cookie_secret`), to be set on the response.
    pub renewed: Option<String>,
}

impl Admitted {
    pub fn new(config: &Config, session: Session) -> Admitted {
        let upstream = headers::for_upstream(config, &session);
        Admitted {
            upstream: upstream.into_iter().map(|(n, v)| (n, v.into())).collect(),
            verdict: policy::admit(&config.rules, &session),
            session,
            renewed: None,
        }
    }
}

impl Cached for Admitted {
    fn expires_at(&self) -> u64 {
        self.session.expires_at
    }

    fn weight(&self) -> usize {
        let headers: usize = self.upstream.iter().map(|(_, v)| v.len() + 40).sum();
        self.session.weight() + headers + self.renewed.as_ref().map_or(0, String::len)
    }
}

/// Who a request is: a bearer token (when `skip_jwt_bearer_tokens` is on) or else the
/// session cookie.
pub enum Who {
    Known(Rc<Admitted>),
    /// Metadata or keys must be fetched first; the step says so.
    Pause(Box<Step>),
    /// No valid credential; the error when a bearer token was presented and refused.
    Nobody(Option<JwtError>),
}

/// An exchanged token (`upstream_token_exchange`), used until `use_until`.
#[derive(Debug)]
pub struct Exchanged {
    /// Empty: the exchange failed.
    pub(super) token: String,
    pub(super) use_until: u64,
}

impl Cached for Exchanged {
    fn expires_at(&self) -> u64 {
        self.use_until
    }

    fn weight(&self) -> usize {
        self.token.len()
    }
}
