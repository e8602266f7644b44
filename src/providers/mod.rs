//! Who the user is, once the token endpoint has answered: each provider's own calls after
//! the tokens (userinfo for OIDC providers whose ID token lacks the email or groups, and for
//! GitLab; GitHub's REST API; GitLab's projects; Microsoft Graph for Entra group overage), as
//! one state machine the gate drives with callouts, and each provider's reading of a token's
//! claims.
//!
//! `start` takes what the tokens say; every `Next::Call` is made by the gate and its answer
//! fed to `resume`, until `Done` (the identity to seal) or `Failed` (the provider misbehaved
//! or refused: an error page, never a loop). The calls only gather facts: the email, the
//! groups, and the memberships the API confirms (`Identity::proven`). Whether those admit
//! the user is `crate::policy::admit`'s to say, as on every other credential path.

mod entra;
mod github;
mod gitlab;

use crate::callout::Callout;
use crate::config::{Config, Kind};
use crate::oidc::{self, Discovery, Identity, Verified};
use serde_json::{Map, Value};

/// Pages of a paginated API (GitHub's emails, orgs and teams; Graph's groups) read at most:
/// what a user has beyond this many pages is not read (and cannot admit them).
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
    /// The provider stages read to the end (GitHub's emails, orgs, teams, repository).
    finished: Vec<&'static str>,
}

impl Profile {
    fn finish(&mut self, stage: &'static str) {
        self.page = 0;
        self.finished.push(stage);
    }

    fn finished(&self, stage: &str) -> bool {
        self.finished.contains(&stage)
    }
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
    /// Everything the provider can say is known: the identity the rules are applied to.
    Done(Box<Profile>),
    /// The provider or its API failed or answered nonsense: the reason, for the log.
    Failed(String),
}

/// The profile from the token answer: the verified ID token's claims (OIDC providers), or
/// nothing yet (GitHub). `access`: the access token's claims when it is a JWT the issuer
/// signed for this client (Keycloak puts its roles there, where oauth2-proxy reads them).
pub fn start(
    config: &Config,
    d: &Discovery,
    access_token: &str,
    verified: Option<&Verified>,
    access: Option<&Verified>,
) -> Next {
    let (identity, sub, claims) = match verified {
        Some(v) => (
            from_claims(config, v, access),
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
            finished: Vec::new(),
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
    // GitLab's groups and its `email_verified` are userinfo's (oauth2-proxy always asks).
    let needs_groups = !config.rules.allowed_groups.is_empty() || kind == Kind::GitLab;
    let lacking = p.identity.email.is_none()
        || (needs_groups && p.identity.groups.is_empty())
        || kind == Kind::GitLab;
    if !p.userinfo_done && lacking {
        if let Some(url) = d.userinfo_endpoint.as_deref() {
            p.userinfo_done = true;
            return call(get(url, &p.access_token), p, Stage::Userinfo);
        }
    }
    match kind {
        Kind::GitLab => gitlab::advance(config, d, p),
        Kind::EntraId => entra::advance(config, d, p),
        Kind::Oidc | Kind::KeycloakOidc | Kind::Google | Kind::GitHub => done(config, p),
    }
}

/// What a verified token says of its user, as this provider reads it: the configured
/// claims; Keycloak's roles, from the token and from `access` (the verified access token);
/// and, for Entra across several tenants, an email only when Microsoft says its domain
/// owner is verified. Login, refresh and bearer tokens all read claims through here.
pub fn from_claims(config: &Config, v: &Verified, access: Option<&Verified>) -> Identity {
    let mut id = oidc::identity(v, &config.claim_names());
    if config.provider.kind == Kind::KeycloakOidc {
        if let Some(a) = access {
            merge(
                &mut id.roles,
                oidc::identity(a, &config.claim_names()).roles,
            );
        }
    }
    if config.provider.entra_several_tenants() {
        entra::trust_email(config, v, &mut id);
    }
    id
}

/// A bearer token's identity: its claims alone, read as a login's would be (no provider
/// call can be made for it, so memberships only an API confirms are absent).
pub fn bearer_identity(config: &Config, v: &Verified) -> Identity {
    finished_identity(config, from_claims(config, v, None))
}

fn merge(into: &mut Vec<String>, more: Vec<String>) {
    for item in more {
        if !into.contains(&item) {
            into.push(item);
        }
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
    // Roles read from the access token at the start stay.
    let roles = std::mem::take(&mut p.identity.roles);
    p.identity = from_claims(config, &v, None);
    merge(&mut p.identity.roles, roles);
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
/// token does not carry kept from the session: userinfo's email, userinfo's or Graph's
/// groups, GitLab's `project:` groups, and every membership the API confirmed (`proven`,
/// which no refresh checks again, as in oauth2-proxy). The caller applies the rules to the
/// result, as to any session.
pub fn refreshed(
    config: &Config,
    v: &Verified,
    access: Option<&Verified>,
    old: &Identity,
) -> Identity {
    let kind = config.provider.kind;
    if kind == Kind::GitHub {
        return old.clone();
    }
    let mut id = from_claims(config, v, access);
    // An address another tenant's admin typed is not kept from before either.
    if id.email.is_none() && !config.provider.entra_several_tenants() {
        id.email = old.email.clone();
        id.email_verified = old.email_verified;
    }
    if id.groups.is_empty() {
        // Groups from userinfo or Graph (overage): the token still has none to say.
        id.groups = old
            .groups
            .iter()
            .filter(|g| kind != Kind::KeycloakOidc || !g.starts_with("role:"))
            .cloned()
            .collect();
    } else if kind == Kind::GitLab {
        let projects = old.groups.iter().filter(|g| g.starts_with("project:"));
        merge(&mut id.groups, projects.cloned().collect());
    }
    id.proven = old.proven.clone();
    finished_identity(config, id)
}

/// The end of a profile: Keycloak's roles passed as groups (`role:<role>`, `role:<client>:
/// <role>`, as oauth2-proxy's keycloak-oidc does) and `prefer_email_to_user` applied.
fn finished_identity(config: &Config, mut id: Identity) -> Identity {
    if config.provider.kind == Kind::KeycloakOidc {
        let roles: Vec<String> = id.roles.iter().map(|r| format!("role:{r}")).collect();
        merge(&mut id.groups, roles);
    }
    if config.provider.prefer_email_to_user {
        if let Some(email) = id.email.clone() {
            id.user = email;
        }
    }
    id
}

fn done(config: &Config, mut p: Profile) -> Next {
    p.identity = finished_identity(config, std::mem::take(&mut p.identity));
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
