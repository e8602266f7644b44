//! A login's profile: what is known of the user so far, what the provider's call in flight
//! will answer, and the helpers providers make their calls with. The state machine that
//! drives it is `machine`.

use crate::callout::Callout;
use crate::oidc::{self, ClaimNames, Identity};
use serde_json::{Map, Value};

/// Pages of a paginated API (GitHub's emails, orgs and teams; Graph's groups) read at most:
/// what a user has beyond this many pages is not read (and cannot admit them).
pub const MAX_PAGES: u32 = 10;

/// What the profile needs besides the provider: the options that say how claims are read.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The login issuer's userinfo endpoint, when it has one.
    pub userinfo: Option<&'a str>,
    pub claims: ClaimNames<'a>,
    /// `allowed_groups` is set: groups must be read where the token has none.
    pub groups_wanted: bool,
    pub allow_unverified_email: bool,
    pub prefer_email_to_user: bool,
}

/// A login's profile so far, and what the callout in flight will answer.
#[derive(Debug, Clone)]
pub struct Profile {
    pub identity: Identity,
    /// The subject: the ID token's `sub`, or GitHub's numeric user id.
    pub sub: String,
    /// Claims so far (the ID token's, then userinfo's), for the providers' checks.
    pub(super) claims: Map<String, Value>,
    pub(super) access_token: String,
    pub(super) stage: Stage,
    pub(super) userinfo_done: bool,
    pub(super) page: u32,
    /// The provider stages read to the end (GitHub's emails, orgs, teams, repository).
    pub(super) finished: Vec<&'static str>,
}

impl Profile {
    pub(super) fn finish(&mut self, stage: &'static str) {
        self.page = 0;
        self.finished.push(stage);
    }

    pub(super) fn finished(&self, stage: &str) -> bool {
        self.finished.contains(&stage)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Ready,
    Userinfo,
    /// One of the provider's own calls; the number is the provider's.
    Provider(u32),
}

#[derive(Debug)]
pub enum Next {
    Call(Callout, Box<Profile>),
    /// Everything the provider can say is known: the identity the rules are applied to.
    Done(Box<Profile>),
    /// The provider or its API failed or answered nonsense: the reason, for the log.
    Failed(String),
}

/// The end of a provider's calls: the profile as it stands (the machine then adds what the
/// provider derives, see `machine::finish`).
pub fn done(p: Profile) -> Next {
    Next::Done(Box::new(p))
}

pub(super) fn merge(into: &mut Vec<String>, more: Vec<String>) {
    for item in more {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

/// Asks `callout` for the provider's stage `stage`.
pub(super) fn call_provider(callout: Option<Callout>, p: Profile, stage: u32) -> Next {
    call(callout, p, Stage::Provider(stage))
}

pub(super) fn call(callout: Option<Callout>, mut p: Profile, stage: Stage) -> Next {
    match callout {
        Some(c) => {
            p.stage = stage;
            Next::Call(c, Box::new(p))
        }
        None => Next::Failed("bad_endpoint_url".into()),
    }
}

/// A GET of `url` with the user's access token.
pub(super) fn get(url: &str, token: &str) -> Option<Callout> {
    get_with(url, &format!("Bearer {token}"), "application/json")
}

pub(super) fn get_with(url: &str, authorization: &str, accept: &str) -> Option<Callout> {
    let to = oidc::target(url).ok()?;
    Some(Callout {
        method: "GET",
        authority: to.authority,
        path: to.path,
        headers: vec![
            ("authorization".into(), authorization.to_string()),
            ("accept".into(), accept.to_string()),
            // GitHub refuses API calls without one; others ignore it.
            ("user-agent".into(), "wasm-oauth2-proxy".into()),
        ],
        body: Vec::new(),
    })
}

/// A 200 answer's JSON body; anything else is the failure to report.
pub(super) fn json_body(answer: Option<(u16, &[u8])>, what: &str) -> Result<Value, Next> {
    match answer {
        Some((200, body)) => {
            serde_json::from_slice(body).map_err(|_| Next::Failed(format!("{what}_malformed")))
        }
        Some((status, _)) => Err(Next::Failed(format!("{what}_status_{status}"))),
        None => Err(Next::Failed(format!("{what}_unreachable"))),
    }
}

pub(super) fn json_object(
    answer: Option<(u16, &[u8])>,
    what: &str,
) -> Result<Map<String, Value>, Next> {
    match json_body(answer, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(Next::Failed(format!("{what}_malformed"))),
    }
}
