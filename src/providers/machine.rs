//! Who the user is, once the token endpoint has answered: one state machine the gate drives
//! with callouts. `start` takes what the tokens say; every `Next::Call` is made by the gate
//! and its answer fed to `resume`, until `Done` (the identity the rules are applied to) or
//! `Failed` (the provider misbehaved or refused: an error page, never a loop). The calls only
//! gather facts — the email, the groups, the memberships the API confirms
//! (`Identity::proven`); whether those admit the user is `crate::policy::admit`'s to say, as
//! on every other credential path.

use super::profile::{call, get, json_object, merge, Cx, Next, Profile, Stage};
use super::provider::Provider;
use crate::oidc::{Identity, Verified};
use serde_json::{Map, Value};

/// The profile from the token answer: the verified ID token's claims (OIDC providers), or
/// nothing yet (GitHub). `access`: the access token's claims when it is a JWT the issuer
/// signed for this client (Keycloak puts its roles there, where oauth2-proxy reads them).
pub fn start(
    provider: &dyn Provider,
    cx: &Cx,
    access_token: &str,
    verified: Option<&Verified>,
    access: Option<&Verified>,
) -> Next {
    let (identity, sub, claims) = match verified {
        Some(v) => (
            provider.read_claims(cx, v, access),
            v.sub.clone(),
            v.claims.clone(),
        ),
        None => (Identity::default(), String::new(), Map::new()),
    };
    advance(
        provider,
        cx,
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
    provider: &dyn Provider,
    cx: &Cx,
    mut p: Profile,
    answer: Option<(u16, &[u8])>,
) -> Next {
    match std::mem::replace(&mut p.stage, Stage::Ready) {
        Stage::Ready => Next::Failed("unexpected_answer".into()),
        Stage::Userinfo => match userinfo(provider, cx, &mut p, answer) {
            Ok(()) => advance(provider, cx, p),
            Err(next) => next,
        },
        Stage::Provider(stage) => finish(provider, cx, provider.on_answer(cx, p, stage, answer)),
    }
}

/// The next call the profile needs, or the end.
fn advance(provider: &dyn Provider, cx: &Cx, mut p: Profile) -> Next {
    if provider.has_id_token() && !p.userinfo_done && provider.wants_userinfo(cx, &p.identity) {
        if let Some(url) = cx.userinfo {
            p.userinfo_done = true;
            let c = get(url, &p.access_token);
            return call(c, p, Stage::Userinfo);
        }
    }
    finish(provider, cx, provider.advance(cx, p))
}

/// OIDC Core 5.3: the userinfo answer fills claims the ID token lacked, and must be about
/// the same subject.
fn userinfo(
    provider: &dyn Provider,
    cx: &Cx,
    p: &mut Profile,
    answer: Option<(u16, &[u8])>,
) -> Result<(), Next> {
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
    p.identity = provider.read_claims(cx, &v, None);
    merge(&mut p.identity.roles, roles);
    Ok(())
}

/// A bearer token's identity: its claims alone, read as a login's would be (no provider
/// call can be made for it, so memberships only an API confirms are absent).
pub fn bearer_identity(provider: &dyn Provider, cx: &Cx, v: &Verified) -> Identity {
    finished_identity(provider, cx, provider.read_claims(cx, v, None))
}

/// What a refreshed ID token says, with what the login's provider calls added that the
/// token does not carry kept from the session: userinfo's email, userinfo's or Graph's
/// groups, GitLab's `project:` groups, and every membership the API confirmed (`proven`,
/// which no refresh checks again, as in oauth2-proxy). The caller applies the rules to the
/// result, as to any session.
pub fn refreshed(
    provider: &dyn Provider,
    cx: &Cx,
    v: &Verified,
    access: Option<&Verified>,
    old: &Identity,
) -> Identity {
    if !provider.refresh_reads_claims() {
        return old.clone();
    }
    let mut id = provider.read_claims(cx, v, access);
    // An email the provider refuses to read (Entra across tenants) is not kept either.
    if id.email.is_none() && !provider.refuses_old_email() {
        id.email = old.email.clone();
        id.email_verified = old.email_verified;
    }
    let derived: Vec<String> = provider.derived_groups(&Identity {
        roles: old.roles.clone(),
        ..Identity::default()
    });
    if id.groups.is_empty() {
        // Groups from userinfo or Graph (overage): the token still has none to say.
        id.groups = old
            .groups
            .iter()
            .filter(|g| !derived.contains(g))
            .cloned()
            .collect();
    } else {
        // Groups only the provider's API gave (GitLab's `project:`) are kept.
        merge(&mut id.groups, provider.kept_groups(&old.groups));
    }
    id.proven = old.proven.clone();
    finished_identity(provider, cx, id)
}

/// The end of a profile: the provider's derived groups added (Keycloak's roles) and
/// `prefer_email_to_user` applied.
fn finished_identity(provider: &dyn Provider, cx: &Cx, mut id: Identity) -> Identity {
    let derived = provider.derived_groups(&id);
    merge(&mut id.groups, derived);
    if cx.prefer_email_to_user {
        if let Some(email) = id.email.clone() {
            id.user = email;
        }
    }
    id
}

/// A provider's `Done` with what it derives added.
fn finish(provider: &dyn Provider, cx: &Cx, next: Next) -> Next {
    match next {
        Next::Done(mut p) => {
            p.identity = finished_identity(provider, cx, std::mem::take(&mut p.identity));
            Next::Done(p)
        }
        other => other,
    }
}
