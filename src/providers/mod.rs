//! Who the user is, once the token endpoint has answered: each provider's own calls and
//! checks after the tokens (userinfo for OIDC providers whose ID token lacks the email or
//! groups, GitHub's REST API, GitLab's projects, Microsoft Graph for Entra group overage,
//! Google's hosted domain), as one state machine the gate drives with callouts.
//!
//! `start` takes what the tokens say; every `Next::Call` is made by the gate and its answer
//! fed to `resume`, until `Done` (the identity to seal), `Denied` (a 403: the user is not
//! allowed) or `Failed` (the provider misbehaved or refused: an error page, never a loop).

mod entra;
mod github;
mod gitlab;

use crate::callout::Callout;
use crate::config::{Config, Kind};
use crate::oidc::{self, Discovery, Identity, Verified};
use serde_json::{Map, Value};

/// Pages of a paginated API (GitHub's emails, orgs and teams; Graph's groups) read at most:
/// a user in more than this many pages of groups is refused rather than read without end.
pub const MAX_PAGES: u32 = 10;

/// A login's profile so far, and what the callout in flight will answer.
#[derive(Debug, Clone)]
pub struct Profile {
    pub identity: Identity,
    /// The subject: the ID token's `sub`, or GitHub's numeric user id.
    pub sub: String,
    /// Claims so far (the ID token's, then userinfo's), for the providers' checks.
    claims: Map<String, Value>,
    access_token: String,
    stage: Stage,
    userinfo_done: bool,
    page: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Ready,
    Userinfo,
    GitHub(github::Stage),
    GitLab(gitlab::Stage),
    Entra(entra::Stage),
}

#[derive(Debug)]
pub enum Next {
    Call(Callout, Box<Profile>),
    Done(Box<Profile>),
    /// Authenticated, but the provider's rules refuse the user: the reason, for the log.
    Denied(String),
    /// The provider or its API failed or answered nonsense: the reason, for the log.
    Failed(String),
}

/// The profile from the token answer: the verified ID token's claims (OIDC providers), or
/// nothing yet (GitHub).
pub fn start(
    config: &Config,
    d: &Discovery,
    access_token: &str,
    verified: Option<&Verified>,
) -> Next {
    let (identity, sub, claims) = match verified {
        Some(v) => (
            oidc::identity(v, &config.claim_names()),
            v.sub.clone(),
            v.claims.clone(),
        ),
        None => (Identity::default(), String::new(), Map::new()),
    };
    advance(
        config,
        d,
        Profile {
            identity,
            sub,
            claims,
            access_token: access_token.to_string(),
            stage: Stage::Ready,
            userinfo_done: false,
            page: 0,
        },
    )
}

/// The answer to the profile's callout (`None`: it failed).
pub fn resume(
    config: &Config,
    d: &Discovery,
    mut p: Profile,
    answer: Option<(u16, &[u8])>,
) -> Next {
    let stage = std::mem::replace(&mut p.stage, Stage::Ready);
    let outcome = match stage {
        Stage::Ready => return Next::Failed("unexpected_answer".into()),
        Stage::Userinfo => userinfo(config, &mut p, answer),
        Stage::GitHub(s) => return github::on_answer(config, d, p, s, answer),
        Stage::GitLab(s) => return gitlab::on_answer(config, d, p, s, answer),
        Stage::Entra(s) => return entra::on_answer(config, d, p, s, answer),
    };
    match outcome {
        Ok(()) => advance(config, d, p),
        Err(next) => next,
    }
}

/// The next call the profile needs, or the end.
fn advance(config: &Config, d: &Discovery, mut p: Profile) -> Next {
    let kind = config.provider.kind;
    if kind == Kind::GitHub {
        return github::advance(config, d, p);
    }
    let needs_groups = !config.rules.allowed_groups.is_empty() || kind == Kind::GitLab;
    let lacking = p.identity.email.is_none() || (needs_groups && p.identity.groups.is_empty());
    if !p.userinfo_done && lacking {
        if let Some(url) = d.userinfo_endpoint.as_deref() {
            p.userinfo_done = true;
            return call(get(url, &p.access_token), p, Stage::Userinfo);
        }
    }
    match kind {
        Kind::KeycloakOidc => {
            // oauth2-proxy's keycloak-oidc passes roles in the groups header.
            let roles = p.identity.roles.iter().map(|r| format!("role:{r}"));
            let mut groups = p.identity.groups.clone();
            groups.extend(roles);
            p.identity.groups = groups;
            done(config, p)
        }
        Kind::Google => google(config, p),
        Kind::GitLab => gitlab::advance(config, d, p),
        Kind::EntraId => entra::advance(config, d, p),
        Kind::Oidc | Kind::GitHub => done(config, p),
    }
}

/// Google: with `google_hosted_domains`, the user's Workspace domain (`hd`) must be one of
/// them (a consumer account has none).
fn google(config: &Config, p: Profile) -> Next {
    let allowed = &config.provider.google_hosted_domains;
    if allowed.is_empty() {
        return done(config, p);
    }
    let hd = p.claims.get("hd").and_then(Value::as_str).unwrap_or("");
    if allowed.iter().any(|d| d.eq_ignore_ascii_case(hd)) {
        done(config, p)
    } else {
        Next::Denied("hosted_domain".into())
    }
}

/// OIDC Core 5.3: the userinfo answer fills claims the ID token lacked, and must be about
/// the same subject.
fn userinfo(config: &Config, p: &mut Profile, answer: Option<(u16, &[u8])>) -> Result<(), Next> {
    let claims = json_object(answer, "userinfo")?;
    if claims.get("sub").and_then(Value::as_str) != Some(p.sub.as_str()) {
        return Err(Next::Failed("userinfo_sub_mismatch".into()));
    }
    for (k, v) in claims {
        p.claims.entry(k).or_insert(v);
    }
    let v = Verified {
        sub: p.sub.clone(),
        exp: 0,
        claims: p.claims.clone(),
    };
    p.identity = oidc::identity(&v, &config.claim_names());
    Ok(())
}

/// The issuer an ID token must name: the discovery document's, with Entra's tenant template
/// filled only for `ms-entra-id`, the one provider that checks the tenant it fills in.
pub fn issuer_for(config: &Config, d: &Discovery, id_token: &str) -> String {
    if config.provider.kind == Kind::EntraId {
        expected_issuer(&d.issuer, id_token)
    } else {
        d.issuer.clone()
    }
}

/// The issuer an ID token must name. Entra's multi-tenant discovery documents say
/// `https://login.microsoftonline.com/{tenantid}/v2.0`: the token's own `tid` fills it in
/// (read unverified here; the signature check then covers it, and `entra_id_allowed_tenants`
/// decides whether that tenant may log in).
pub fn expected_issuer(discovery_issuer: &str, id_token: &str) -> String {
    if !discovery_issuer.contains("{tenantid}") {
        return discovery_issuer.to_string();
    }
    let tid = unverified_claims(id_token)
        .and_then(|c| c.get("tid").and_then(Value::as_str).map(str::to_owned))
        .filter(|t| {
            !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        });
    match tid {
        Some(tid) => discovery_issuer.replace("{tenantid}", &tid),
        // No usable tenant: an issuer no token can name.
        None => discovery_issuer.to_string(),
    }
}

fn unverified_claims(jwt: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a refreshed ID token says, with what the login's provider calls added that the
/// token does not carry (userinfo's email, Graph's groups, GitLab's `project:` groups) kept
/// from the session, and the provider's rules applied again to the token's own claims.
pub fn refreshed(config: &Config, v: &Verified, old: &Identity) -> Result<Identity, String> {
    let mut p = Profile {
        identity: oidc::identity(v, &config.claim_names()),
        sub: v.sub.clone(),
        claims: v.claims.clone(),
        access_token: String::new(),
        stage: Stage::Ready,
        userinfo_done: true,
        page: 0,
    };
    if p.identity.email.is_none() {
        p.identity.email = old.email.clone();
        p.identity.email_verified = old.email_verified;
    }
    let kind = config.provider.kind;
    let from_calls = |g: &&String| match kind {
        Kind::GitLab => g.starts_with("project:"),
        _ => false,
    };
    if p.identity.groups.is_empty() {
        // Groups from userinfo or Graph (overage): the token still has none to say.
        p.identity.groups = old
            .groups
            .iter()
            .filter(|g| kind != Kind::KeycloakOidc || !g.starts_with("role:"))
            .cloned()
            .collect();
    } else {
        p.identity
            .groups
            .extend(old.groups.iter().filter(from_calls).cloned());
    }
    if kind == Kind::GitHub {
        return Ok(old.clone());
    }
    if kind == Kind::EntraId {
        p.claims.remove("_claim_names");
    }
    match advance(config, &Discovery::default(), p) {
        Next::Done(p) => Ok(p.identity),
        Next::Denied(reason) | Next::Failed(reason) => Err(reason),
        // Checks that need calls (GitLab projects) were made at login and are not redone.
        Next::Call(_, p) => Ok(p.identity),
    }
}

/// The end: `prefer_email_to_user` applied.
fn done(config: &Config, mut p: Profile) -> Next {
    if config.provider.prefer_email_to_user {
        if let Some(email) = p.identity.email.clone() {
            p.identity.user = email;
        }
    }
    Next::Done(Box::new(p))
}

fn call(callout: Option<Callout>, mut p: Profile, stage: Stage) -> Next {
    match callout {
        Some(c) => {
            p.stage = stage;
            Next::Call(c, Box::new(p))
        }
        None => Next::Failed("bad_endpoint_url".into()),
    }
}

/// A GET of `url` with the user's access token.
fn get(url: &str, token: &str) -> Option<Callout> {
    get_with(url, &format!("Bearer {token}"), "application/json")
}

fn get_with(url: &str, authorization: &str, accept: &str) -> Option<Callout> {
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
fn json_body(answer: Option<(u16, &[u8])>, what: &str) -> Result<Value, Next> {
    match answer {
        Some((200, body)) => {
            serde_json::from_slice(body).map_err(|_| Next::Failed(format!("{what}_malformed")))
        }
        Some((status, _)) => Err(Next::Failed(format!("{what}_status_{status}"))),
        None => Err(Next::Failed(format!("{what}_unreachable"))),
    }
}

fn json_object(answer: Option<(u16, &[u8])>, what: &str) -> Result<Map<String, Value>, Next> {
    match json_body(answer, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(Next::Failed(format!("{what}_malformed"))),
    }
}

#[cfg(test)]
mod tests;
