//! `provider`, and what oauth2-proxy's providers assume without being told: its default
//! provider (`google`, `legacy_provider.go`), each provider's issuer.

use serde_json::json;
use wasm_oauth2_proxy::providers::Kind;

use super::plan::Plan;
use super::values;
use crate::settings::Setting;

/// The filter's provider for oauth2-proxy's `provider` (default `google`).
pub fn kind(settings: &[&Setting], plan: &mut Plan) -> Kind {
    let Some(s) = settings.iter().find(|s| s.opt.cfg == "provider") else {
        plan.report.note(
            "provider (not set)",
            "oauth2-proxy's default provider is google: provider: \"google\"",
        );
        plan.set("provider", json!("google"));
        return Kind::Google;
    };
    let name = values::string(s).unwrap_or_default();
    let kind = match name.as_str() {
        "oidc" => Kind::Oidc,
        "keycloak-oidc" => Kind::KeycloakOidc,
        "google" => Kind::Google,
        "gitlab" => Kind::GitLab,
        "github" => Kind::GitHub,
        "entra-id" | "ms-entra-id" | "azure" => Kind::EntraId,
        other => {
            let hint = if other == "keycloak" {
                " (oauth2-proxy's legacy keycloak provider; use keycloak-oidc with the realm's issuer)"
            } else {
                ""
            };
            plan.report.refused(
                &s.origin,
                format!(
                    "provider `{other}` is not supported{hint}: oidc, keycloak-oidc, github, \
                     google, gitlab and entra-id are"
                ),
            );
            plan.set("provider", json!("oidc"));
            return Kind::Oidc;
        }
    };
    let note = if name == "azure" {
        " (oauth2-proxy's older Azure provider: the filter speaks Entra ID's v2.0 OpenID Connect)"
    } else {
        ""
    };
    plan.report
        .mapped(&s.origin, format!("provider: \"{name}\"{note}"));
    plan.set("provider", json!(name));
    kind
}

/// The issuer a provider implies when none is given, and defaults that differ.
pub fn finish(plan: &mut Plan, settings: &[&Setting], kind: Kind) {
    let has = |cfg: &str| settings.iter().any(|s| s.opt.cfg == cfg);
    if kind == Kind::GitHub {
        plan.config.remove("oidc_issuer_url");
    } else if !plan.config.contains_key("oidc_issuer_url") {
        let implied = match kind {
            Kind::Google => Some(("https://accounts.google.com".to_string(), "google's")),
            Kind::GitLab => Some(("https://gitlab.com".to_string(), "gitlab's default")),
            Kind::EntraId => {
                let tenant = settings
                    .iter()
                    .find(|s| s.opt.cfg == "azure_tenant")
                    .and_then(|s| values::string(s).ok())
                    .unwrap_or_else(|| "common".into());
                Some((
                    format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                    "azure_tenant's (default common)",
                ))
            }
            _ => None,
        };
        if let Some((url, whose)) = implied {
            plan.report.note(
                "oidc_issuer_url (not set)",
                format!("{whose} issuer: oidc_issuer_url: \"{url}\""),
            );
            plan.set("oidc_issuer_url", json!(url));
        }
    }
    if !has("cookie_samesite") {
        plan.report.note(
            "cookie_samesite (not set)",
            "oauth2-proxy leaves SameSite out by default; the filter sends SameSite=Lax",
        );
    }
    if !has("redirect_url") && !has("relative_redirect_url") {
        plan.report.note(
            "redirect_url (not set)",
            "derived from each request as oauth2-proxy does (<scheme>://<host><proxy_prefix>/callback)",
        );
    }
}
