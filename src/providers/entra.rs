//! Microsoft Entra ID (`ms-entra-id`, `azure`): OIDC with the tenant (`tid`) checked against
//! `entra_id_allowed_tenants`, and group overage resolved through Microsoft Graph. A token
//! for a user in more groups than fit (over 200 in a JWT) carries `_claim_names.groups`
//! instead of `groups`; the groups are then read from `GET /v1.0/me/transitiveMemberOf`,
//! following `@odata.nextLink` on Graph's own host only.

use super::{call, done, get, json_object, Next, Profile, Stage as Any, MAX_PAGES};
use crate::config::Config;
use crate::oidc::Discovery;
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

pub(super) fn advance(config: &Config, _d: &Discovery, mut p: Profile) -> Next {
    let allowed = &config.provider.entra.allowed_tenants;
    if !allowed.is_empty() && !allowed.iter().any(|t| t == "*") {
        let tid = p.claims.get("tid").and_then(Value::as_str).unwrap_or("");
        if !allowed.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
            return Next::Denied("entra_tenant".into());
        }
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
        Some(_) if p.page + 1 >= MAX_PAGES => Next::Denied("graph_groups_too_many_pages".into()),
        Some(url) if url.starts_with(&format!("{}/", config.provider.entra.graph)) => {
            p.page += 1;
            let c = get(url, &p.access_token);
            call(c, p, Any::Entra(Stage::Groups))
        }
        Some(_) => Next::Failed("graph_next_link_foreign".into()),
    }
}
