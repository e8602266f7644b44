//! Microsoft Entra ID (`ms-entra-id`, `entra-id`, `azure`), as oauth2-proxy's
//! `providers/ms_entra_id.go`: OIDC whose tenant (`tid`) `crate::policy` checks against
//! `entra_id_allowed_tenants`, the multi-tenant endpoints' issuer template filled with each
//! token's own tenant, and group overage resolved through Microsoft Graph. A token for a user
//! in more groups than fit (over 200 in a JWT) carries `_claim_names.groups` instead of
//! `groups`; the groups are then read from `GET /v1.0/me/transitiveMemberOf`, following
//! `@odata.nextLink` on Graph's own host only.
//!
//! Entra sends no `email_verified`, and each tenant's admin types its users' `email`: across
//! several tenants an address is a claim about someone else's domain ("nOAuth"). There it
//! counts only when Microsoft's `xms_edov` says the domain owner is verified (ours).

use super::profile::{call_provider, done, get, json_object, Cx, Next, Profile, MAX_PAGES};
use super::provider::Provider;
use crate::config::error::{err, ConfigError};
use crate::config::reader::Reader;
use crate::oidc::{self, Identity, Verified};
use crate::policy::ProviderRules;
use serde_json::{Map, Value};

pub(super) const KEYS: &[&str] = &["entra_id_allowed_tenants"];
const GRAPH: &str = "https://graph.microsoft.com";

#[derive(Debug, Clone, Default)]
pub struct Entra {
    /// `entra_id_allowed_tenants`: tenant ids (`tid`) whose users may log in; required for
    /// a multi-tenant issuer (`common`, `organizations`).
    pub allowed_tenants: Vec<String>,
    /// Microsoft Graph's base URL, for groups that did not fit in the token (overage).
    pub graph: String,
}

impl Entra {
    pub(super) fn parse(r: &Reader, issuer: Option<&str>) -> Result<Entra, ConfigError> {
        let allowed_tenants = r
            .string_list("entra_id_allowed_tenants")?
            .unwrap_or_default();
        if issuer.is_some_and(is_multi_tenant) && allowed_tenants.is_empty() {
            return Err(err(
                "entra_id_allowed_tenants",
                "required with a multi-tenant issuer (`common`, `organizations`): list the \
                 tenant ids, or `*` for any",
            ));
        }
        Ok(Entra {
            allowed_tenants,
            graph: GRAPH.into(),
        })
    }

    /// Whether users may come from several tenants, whose admins each type their users'
    /// emails (a multi-tenant issuer needs `entra_id_allowed_tenants`; one tenant listed,
    /// or a tenant's own issuer, is one tenant).
    pub fn several_tenants(&self) -> bool {
        let t = &self.allowed_tenants;
        t.len() > 1 || t.iter().any(|t| t == "*")
    }

    /// Whether the tenant is one `crate::policy` will refuse anyway: then Graph is not asked
    /// (only a saving; the policy decides).
    fn tenant_refused(&self, tid: &str) -> bool {
        let t = &self.allowed_tenants;
        !t.is_empty()
            && !t.iter().any(|x| x == "*")
            && !t.iter().any(|x| x.eq_ignore_ascii_case(tid))
    }
}

/// Entra's multi-tenant endpoints, whose ID tokens name the user's own tenant.
pub fn is_multi_tenant(issuer: &str) -> bool {
    ["/common/", "/organizations/", "/consumers/"]
        .iter()
        .any(|t| issuer.contains(t) || issuer.ends_with(t.trim_end_matches('/')))
}

fn overage(p: &Profile) -> bool {
    p.claims
        .get("_claim_names")
        .and_then(|n| n.get("groups"))
        .is_some()
}

impl Provider for Entra {
    fn display_name(&self) -> &'static str {
        "Microsoft"
    }

    fn calls(&self, groups_wanted: bool) -> Vec<(&'static str, String)> {
        // Graph is called only to resolve group overage, for `allowed_groups`.
        if groups_wanted {
            vec![("allowed_groups", format!("{}/", self.graph))]
        } else {
            Vec::new()
        }
    }

    fn rules(&self) -> ProviderRules {
        ProviderRules::Entra {
            tenants: self.allowed_tenants.clone(),
        }
    }

    /// Entra's multi-tenant discovery documents say
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`: the token's own `tid` fills it in
    /// (read unverified here; the signature check then covers it, and
    /// `entra_id_allowed_tenants` decides whether that tenant may log in).
    fn expected_issuer(&self, discovered: &str, id_token: &str) -> String {
        if !discovered.contains("{tenantid}") {
            return discovered.to_string();
        }
        let tid = unverified_claims(id_token)
            .and_then(|c| c.get("tid").and_then(Value::as_str).map(str::to_owned))
            .filter(|t| {
                !t.is_empty()
                    && t.len() <= 64
                    && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            });
        match tid {
            Some(tid) => discovered.replace("{tenantid}", &tid),
            // No usable tenant: an issuer no token can name.
            None => discovered.to_string(),
        }
    }

    /// A first guess at which keys a bearer token needs: under a multi-tenant login issuer,
    /// a tenant's issuer on the same host (one path segment, `/v2.0`). Its own `tid` then
    /// fills the template and the `iss` must match exactly.
    fn issues_as(&self, login: &str, iss: &str) -> bool {
        if !is_multi_tenant(login) {
            return false;
        }
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        let path = url::Url::parse(iss).ok().map(|u| u.path().to_string());
        origin(login).is_some()
            && origin(login) == origin(iss)
            && path.is_some_and(|p| {
                p.strip_suffix("/v2.0")
                    .and_then(|t| t.strip_prefix('/'))
                    .is_some_and(|t| !t.is_empty() && !t.contains('/'))
            })
    }

    /// Across several tenants, a token's email only when `xms_edov` is true; otherwise no
    /// email, and a user id that was the email becomes the subject. With
    /// `insecure_oidc_allow_unverified_email` the email is kept as it is.
    fn read_claims(&self, cx: &Cx, v: &Verified, _access: Option<&Verified>) -> Identity {
        let mut id = oidc::identity(v, &cx.claims);
        if !self.several_tenants() || cx.allow_unverified_email {
            return id;
        }
        let edov = oidc::claims::claim(&v.claims, "xms_edov");
        let verified = matches!(edov, Some(Value::Bool(true)))
            || edov.and_then(Value::as_str) == Some("true")
            || edov.and_then(Value::as_str) == Some("1");
        if verified {
            id.email_verified = Some(true);
            return id;
        }
        if let Some(email) = id.email.take() {
            if id.user == email {
                id.user = v.sub.clone();
            }
        }
        id.email_verified = None;
        id
    }

    fn refuses_old_email(&self) -> bool {
        self.several_tenants()
    }

    fn advance(&self, cx: &Cx, mut p: Profile) -> Next {
        let tid = p.identity.tenant.clone().unwrap_or_default();
        if self.tenant_refused(&tid) || !overage(&p) || !cx.groups_wanted {
            return done(p);
        }
        p.claims.remove("_claim_names");
        p.identity.groups.clear();
        p.page = 0;
        let url = format!(
            "{}/v1.0/me/transitiveMemberOf?$select=id&$top=999",
            self.graph
        );
        let c = get(&url, &p.access_token);
        call_provider(c, p, 0)
    }

    fn on_answer(
        &self,
        _cx: &Cx,
        mut p: Profile,
        _stage: u32,
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
        match page.get("@odata.nextLink").and_then(Value::as_str) {
            None => done(p),
            Some(_) if p.page + 1 >= MAX_PAGES => {
                Next::Failed("graph_groups_too_many_pages".into())
            }
            Some(url) if url.starts_with(&format!("{}/", self.graph)) => {
                p.page += 1;
                let c = get(url, &p.access_token);
                call_provider(c, p, 0)
            }
            Some(_) => Next::Failed("graph_next_link_foreign".into()),
        }
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
