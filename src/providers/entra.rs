//! Microsoft Entra ID (`ms-entra-id`, `azure`): OIDC whose tenant (`tid`) `crate::policy`
//! checks against `entra_id_allowed_tenants`, and group overage resolved through Microsoft
//! Graph. A token for a user in more groups than fit (over 200 in a JWT) carries
//! `_claim_names.groups` instead of `groups`; the groups are then read from
//! `GET /v1.0/me/transitiveMemberOf`, following `@odata.nextLink` on Graph's own host only.
//!
//! Entra sends no `email_verified`, and each tenant's admin types its users' `email`: across
//! several tenants an address is a claim about someone else's domain ("nOAuth"). There it
//! counts only when Microsoft's `xms_edov` says the domain owner is verified.

use super::{call, done, get, json_object, Next, Profile, Stage as Any, MAX_PAGES};
use crate::config::Config;
use crate::oidc::{self, Discovery, Identity, Verified};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    Groups,
}

fn overage(p: &Profile) -> bool {
    p.claims
        .get("_claim_names")
        .and_then(|n| n.get("groups"))
        .is_some()
}

/// For a token that may come from another tenant: its email only when `xms_edov` is true;
/// otherwise no email, and a user id that was the email becomes the subject. With
/// `insecure_oidc_allow_unverified_email` the email is kept as it is.
pub(super) fn trust_email(config: &Config, v: &Verified, id: &mut Identity) {
    if config.rules.allow_unverified_email {
        return;
    }
    let edov = oidc::claims::claim(&v.claims, "xms_edov");
    let verified = matches!(edov, Some(Value::Bool(true)))
        || edov.and_then(Value::as_str) == Some("true")
        || edov.and_then(Value::as_str) == Some("1");
    if verified {
        id.email_verified = Some(true);
        return;
    }
    if let Some(email) = id.email.take() {
        if id.user == email {
            id.user = v.sub.clone();
        }
    }
    id.email_verified = None;
}

/// Whether the tenant is one `crate::policy` will refuse anyway: then Graph is not asked
/// (only a saving; the policy decides).
fn tenant_refused(config: &Config, tid: &str) -> bool {
    let t = &config.provider.entra.allowed_tenants;
    !t.is_empty() && !t.iter().any(|x| x == "*") && !t.iter().any(|x| x.eq_ignore_ascii_case(tid))
}

pub(super) fn advance(config: &Config, _d: &Discovery, mut p: Profile) -> Next {
    let tid = p.identity.tenant.clone().unwrap_or_default();
    if tenant_refused(config, &tid) {
        return done(config, p);
    }
    if overage(&p) && !config.rules.allowed_groups.is_empty() {
        p.claims.remove("_claim_names");
        p.identity.groups.clear();
        p.page = 0;
        let url = format!(
            "{}/v1.0/me/transitiveMemberOf?$select=id&$top=999",
            config.provider.entra.graph
        );
        let c = get(&url, &p.access_token);
        return call(c, p, Any::Entra(Stage::Groups));
    }
    done(config, p)
}

pub(super) fn on_answer(
    config: &Config,
    _d: &Discovery,
    mut p: Profile,
    _stage: Stage,
    answer: Option<(u16, &[u8])>,
) -> Next {
    let page = match json_object(answer, "graph_groups") {
        Ok(m) => m,
        Err(next) => return next,
    };
    let Some(Value::Array(items)) = page.get("value") else {
        return Next::Failed("graph_groups_malformed".into());
    };
    p.identity.groups.extend(
        items
            .iter()
            .filter_map(|g| g.get("id").and_then(Value::as_str))
            .map(str::to_owned),
    );
    let next = page.get("@odata.nextLink").and_then(Value::as_str);
    match next {
        None => done(config, p),
        Some(_) if p.page + 1 >= MAX_PAGES => Next::Failed("graph_groups_too_many_pages".into()),
        Some(url) if url.starts_with(&format!("{}/", config.provider.entra.graph)) => {
            p.page += 1;
            let c = get(url, &p.access_token);
            call(c, p, Any::Entra(Stage::Groups))
        }
        Some(_) => Next::Failed("graph_next_link_foreign".into()),
    }
}
