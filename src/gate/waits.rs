//! What the gate remembers while it waits: for an IdP call's answer (a login's token or
//! profile calls, a refresh, a token exchange, sign-out's calls), for an issuer's fresh keys,
//! or for another request's refresh of the same session. Each state names what it waits for;
//! the modules that act on them (`callback`, `refresh`, `logout`, `exchange`) hold the
//! behaviour.

use super::request::{Request, Response};
use crate::callout::Callout;
use crate::oidc::TokenResponse;
use crate::providers::Profile;
use crate::session::cookie;
use crate::session::csrf::LoginState;
use crate::session::Session;
use std::rc::Rc;

/// What the gate needs to remember while a callout is in flight.
#[derive(Debug, Clone)]
pub enum Pending {
    /// Waiting for the token endpoint.
    Token(Box<Callback>),
    /// Token received, signed with a key we did not know: waiting for a fresh JWKS.
    Keys(Box<Callback>, TokenResponse),
    /// A bearer token signed with a key we did not know: decide again with fresh keys.
    Bearer(Box<Request>),
    /// Waiting for the token endpoint's answer to a refresh, or (with the answer) for
    /// fresh keys to check its ID token.
    Refresh(Box<Renewal>),
    RefreshKeys(Box<Renewal>, TokenResponse),
    /// Waiting for `upstream_token_exchange`'s token for the request.
    Exchange(Box<ExchangeWait>),
    /// Sign-out's server-side calls (revocation, `backend_logout_url`), one at a time.
    SignOut(Box<SignOut>),
    /// A login waiting for one of the provider's profile calls (see `crate::providers`).
    Profile(Box<ProfileWait>),
}

impl Pending {
    /// What the callout this waits for is for, as metrics name it.
    pub fn target(&self) -> &'static str {
        match self {
            Pending::Token(_) | Pending::Keys(..) => "token",
            Pending::Refresh(_) | Pending::RefreshKeys(..) => "refresh",
            Pending::Exchange(_) => "token_exchange",
            Pending::SignOut(_) => "sign_out",
            Pending::Profile(_) => "profile",
            Pending::Bearer(_) => "keys",
        }
    }

    /// Whether this waits with an ID token the token endpoint sent (a login's or a refresh's),
    /// as opposed to a token a client presented.
    pub fn from_token_endpoint(&self) -> bool {
        matches!(self, Pending::Keys(..) | Pending::RefreshKeys(..))
    }

    /// Whether the outcome matters after the request went away: a refresh the IdP may have
    /// answered by rotating the refresh token must still be shared with the others.
    pub fn outlives_request(&self) -> bool {
        matches!(self, Pending::Refresh(_) | Pending::RefreshKeys(..))
    }

    /// Records the slot a refresh claimed and the entry it wrote there, so its outcome is
    /// published only over it.
    pub fn set_claim(&mut self, key: String, claim: Vec<u8>) {
        if let Pending::Refresh(r) = self {
            r.claim = Some((key, claim));
        }
    }

    /// Bytes held, for bounding what waits while keys are fetched.
    pub fn weight(&self) -> usize {
        match self {
            Pending::Token(_) => 1024,
            Pending::Keys(_, t) => 1024 + tokens_weight(t),
            Pending::Bearer(req) => req.weight(),
            Pending::Exchange(w) => w.weight(),
            Pending::Refresh(r) => r.weight(),
            Pending::RefreshKeys(r, t) => r.weight() + tokens_weight(t),
            Pending::SignOut(s) => s.weight(),
            Pending::Profile(w) => w.weight(),
        }
    }
}

fn tokens_weight(t: &TokenResponse) -> usize {
    t.access_token.len() + t.id_token.len() + t.refresh_token.as_ref().map_or(0, String::len)
}

/// `Pending` compared by identity only, so `Decision` can derive `PartialEq` for tests.
#[derive(Debug, Clone)]
pub struct PendingBox(pub Pending);

impl PartialEq for PendingBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for PendingBox {}

/// The facts about a callback request that outlive the request headers.
#[derive(Debug, Clone)]
pub struct Callback {
    pub(super) login: LoginState,
    /// The login attempt's cookie, to expire once the login ends either way.
    pub(super) csrf_cookie: String,
    /// The callback request's `x-request-id`, for an error page after the token call.
    pub(super) request_id: Option<String>,
    pub(super) host: String,
    /// Names of the cookies the browser sent, to expire stale session chunks.
    pub(super) present: Vec<String>,
}

impl Callback {
    pub(super) fn target(&self, now: u64) -> cookie::Target<'_> {
        cookie::Target {
            host: &self.host,
            now,
        }
    }
}

/// The login waiting for the provider's profile calls (userinfo, the GitHub API, ...).
#[derive(Debug, Clone)]
pub struct ProfileWait {
    pub(super) cb: Callback,
    pub(super) tokens: TokenResponse,
    /// The verified ID token's `exp`.
    pub(super) id_expires_at: u64,
    pub(super) profile: Profile,
}

impl ProfileWait {
    pub fn weight(&self) -> usize {
        2048 + self.tokens.access_token.len() + self.tokens.id_token.len()
    }
}

/// What a refresh remembers while its callout is out.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub(super) req: Request,
    /// The session cookie value the request carried.
    pub(super) cookie: String,
    pub(super) session: Session,
    /// The slot this refresh claimed, and the `Busy` entry it wrote there.
    pub(super) claim: Option<(String, Vec<u8>)>,
}

impl Renewal {
    pub fn weight(&self) -> usize {
        self.req.weight() + self.cookie.len() + self.session.weight()
    }
}

/// A refresh to coordinate: claim one of `slots` (shared-data keys), then make `callout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCall {
    pub slots: Vec<String>,
    pub session_id: String,
    pub generation: u64,
    /// When the request found its session due: how long it has waited for a slot.
    pub since: u64,
    pub callout: Callout,
    pub pending: PendingBox,
}

/// How another request's refresh of the same session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The new session's sealed cookie value.
    Adopt(String),
    Ended,
    Unavailable,
}

/// The server-side calls still to make, and the answer once they are done.
#[derive(Debug, Clone)]
pub struct SignOut {
    pub(super) calls: Vec<Callout>,
    pub(super) response: Response,
}

impl SignOut {
    pub fn weight(&self) -> usize {
        let calls: usize = self
            .calls
            .iter()
            .map(|c| c.path.len() + c.body.len() + 256)
            .sum();
        calls
            + self
                .response
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

/// A request waiting for its exchange: the token sent to be exchanged (the cache key), and
/// the identity and `Set-Cookie`s it goes on with once the new token is known.
#[derive(Debug, Clone)]
pub struct ExchangeWait {
    pub(super) req: Request,
    pub(super) subject: String,
    pub(super) identity: Vec<(&'static str, Rc<str>)>,
    pub(super) reply: Vec<String>,
}

impl ExchangeWait {
    pub fn weight(&self) -> usize {
        let identity: usize = self.identity.iter().map(|(_, v)| v.len() + 40).sum();
        self.req.weight() + self.subject.len() + identity
    }
}
