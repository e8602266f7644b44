//! Options whose fate depends on their value or on the provider.

use serde_json::json;
use wasm_oauth2_proxy::providers::Kind;

use super::plan::Plan;
use super::values;
use crate::settings::Setting;

/// Options whose value may sit in a Secret the tool was not given.
pub fn takes_secret_ref(cfg: &str) -> bool {
    matches!(
        cfg,
        "client_secret" | "cookie_secret" | "github_token" | "client_id"
    )
}

/// Which provider reads an option: oauth2-proxy hands each provider only its own
/// (`LegacyProvider.convert` in `legacy_provider.go`), so another provider ignores it.
fn owner(cfg: &str) -> Option<&'static [Kind]> {
    Some(match cfg {
        "github_org" | "github_team" | "github_repo" | "github_users" | "github_token" => {
            &[Kind::GitHub]
        }
        "gitlab_groups" | "gitlab_projects" => &[Kind::GitLab],
        "google_groups"
        | "google_admin_email"
        | "google_service_account_json"
        | "google_use_application_default_credentials"
        | "google_target_principal"
        | "google_use_organization_id"
        | "google_admin_api_user_scope" => &[Kind::Google],
        "entra_id_allowed_tenants"
        | "entra_id_federated_token_auth"
        | "azure_tenant"
        | "azure_graph_group_field" => &[Kind::EntraId],
        "allowed_roles" => &[Kind::KeycloakOidc],
        _ => return None,
    })
}

fn flag_is(s: &Setting, want: bool) -> bool {
    values::boolean(s).is_ok_and(|b| b == want)
}

fn mapped_as(plan: &mut Plan, s: &Setting, key: &str) {
    match values::json(s) {
        Ok(v) => {
            plan.report.mapped(&s.origin, format!("{key}: {v}"));
            plan.set(key, v);
        }
        Err(e) => plan.report.refused(&s.origin, e),
    }
}

pub fn apply(plan: &mut Plan, s: &Setting, settings: &[&Setting], kind: Kind) {
    let cfg = s.opt.cfg;
    if let Some(owners) = owner(cfg) {
        if !owners.contains(&kind) {
            plan.report.dropped(
                &s.origin,
                "oauth2-proxy reads it only with its own provider, which is not this one",
            );
            return;
        }
    }
    let origin = s.origin.as_str();
    let value = values::string(s).unwrap_or_default();
    match cfg {
        // Secrets are placed by `super::secrets`.
        "client_secret" | "client_secret_file" | "cookie_secret" | "cookie_secret_file"
        | "github_token" | "provider" => {}
        "client_id" => match &s.secret_ref {
            Some(r) => {
                plan.report.note(
                    origin,
                    format!(
                        "in your Secret {} key {}, not given: client_id holds a placeholder",
                        r.name, r.key
                    ),
                );
                plan.set("client_id", json!(format!("REPLACE-with-{}-{}", r.name, r.key)));
            }
            None => mapped_as(plan, s, "client_id"),
        },
        "oidc_issuer_url" if kind == Kind::GitHub => {
            plan.report.dropped(origin, "github has no issuer")
        }
        "oidc_issuer_url" => mapped_as(plan, s, "oidc_issuer_url"),
        // docs/docs/configuration/providers/github.md: without --github-org, teams are
        // `org:slug` in any organisation, which is what the filter's GitHub groups are.
        "github_team" if !settings.iter().any(|o| o.opt.cfg == "github_org") => {
            if settings.iter().any(|o| o.opt.cfg == "allowed_groups") {
                plan.report.refused(
                    origin,
                    "teams of any organisation and allowed_groups would both have to hold; \
                     the filter can only merge them into one list (either would admit)",
                );
            } else {
                let teams = values::list(s).unwrap_or_default();
                plan.report
                    .mapped(origin, format!("allowed_groups: {}", json!(teams)));
                plan.set("allowed_groups", json!(teams));
            }
        }
        "github_org" | "github_team" | "github_repo" | "github_users" | "gitlab_projects"
        | "entra_id_allowed_tenants" | "allowed_roles" => mapped_as(plan, s, cfg),
        "gitlab_groups" => mapped_as(plan, s, "gitlab_group"),
        "keycloak_groups" => plan.report.dropped(
            origin,
            "oauth2-proxy reads it only for its legacy keycloak provider",
        ),
        "azure_tenant" => plan
            .report
            .mapped(origin, format!("the issuer's tenant ({value})")),
        "azure_graph_group_field" if value.is_empty() || value == "id" => plan
            .report
            .dropped(origin, "groups are read as ids, its default"),
        "azure_graph_group_field" => plan.report.refused(
            origin,
            "Graph groups are read by id only: allowed groups named by displayName would match nobody",
        ),
        "entra_id_federated_token_auth" if flag_is(s, false) => plan.report.dropped(origin, "off"),
        "entra_id_federated_token_auth" => plan.report.unsupported(
            origin,
            "workload-identity client authentication: the filter needs the client secret",
        ),
        "google_groups" => plan.report.refused(
            origin,
            "Google group membership (Admin SDK with a service account) cannot be checked",
        ),
        "google_admin_email" | "google_service_account_json"
        | "google_use_application_default_credentials" | "google_target_principal"
        | "google_admin_api_user_scope" => {
            plan.report.dropped(origin, "only used to read Google groups")
        }
        "google_use_organization_id" => plan
            .report
            .unsupported(origin, "the user header carries the email or login"),
        "authenticated_emails_file" => match crate::sources::read_local(&value) {
            Some(text) => {
                let emails: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect();
                plan.report.mapped(
                    origin,
                    format!("authenticated_emails: {} addresses read from {value}", emails.len()),
                );
                plan.set("authenticated_emails", json!(emails));
            }
            None => plan.report.refused(
                origin,
                format!("{value} cannot be read here: pass a copy (same path) to list its addresses"),
            ),
        },
        "redirect_url" if value.starts_with('/') => {
            let prefix = settings
                .iter()
                .find(|s| s.opt.cfg == "proxy_prefix")
                .and_then(|s| values::string(s).ok())
                .unwrap_or_else(|| "/oauth2".into());
            if value == format!("{prefix}/callback") {
                plan.report
                    .dropped(origin, "relative: derived from each request, as oauth2-proxy does");
            } else {
                plan.report.unsupported(
                    origin,
                    format!("a relative callback other than {prefix}/callback"),
                );
            }
        }
        "redirect_url" => mapped_as(plan, s, "redirect_url"),
        "relative_redirect_url" => plan
            .report
            .dropped(origin, "a relative redirect_url is derived from each request"),
        "cookie_httponly" if flag_is(s, true) => {
            plan.report.dropped(origin, "cookies are always HttpOnly")
        }
        "cookie_httponly" => plan
            .report
            .unsupported(origin, "cookies are always HttpOnly (stricter)"),
        "cookie_expire" => match values::duration_ms(s) {
            Ok(0) => plan.report.refused(
                origin,
                "0 (a browser-session cookie): sessions need a lifetime here; set one",
            ),
            Ok(_) => mapped_as(plan, s, "cookie_expire"),
            Err(e) => plan.report.refused(origin, e),
        },
        "skip_auth_strip_headers" if flag_is(s, true) => {
            plan.report.dropped(origin, "identity headers are always stripped")
        }
        "skip_auth_strip_headers" => plan
            .report
            .unsupported(origin, "identity headers are always stripped (stricter)"),
        "ssl_insecure_skip_verify" if flag_is(s, false) => plan.report.dropped(origin, "off"),
        "ssl_insecure_skip_verify" => plan.report.unsupported(
            origin,
            "the IdP's certificate is always verified; for a private CA see provider_ca_files",
        ),
        "code_challenge_method" | "force_code_challenge_method" => plan
            .report
            .mapped(origin, format!("PKCE with S256, always (was {value:?})")),
        "insecure_oidc_skip_nonce" => plan
            .report
            .dropped(origin, "the nonce is always checked (stricter)"),
        "insecure_oidc_skip_issuer_verification" if flag_is(s, false) => {
            plan.report.dropped(origin, "off")
        }
        "insecure_oidc_skip_issuer_verification"
            if kind == Kind::EntraId
                && settings
                    .iter()
                    .find(|o| o.opt.cfg == "oidc_issuer_url")
                    .and_then(|o| values::string(o).ok())
                    .is_some_and(|u| wasm_oauth2_proxy::providers::entra::is_multi_tenant(&u)) =>
        {
            plan.report.dropped(
                origin,
                "Entra's multi-tenant issuer: each token's issuer is checked against \
                 login.microsoftonline.com/{tid}/v2.0 and its tenant against entra_id_allowed_tenants",
            )
        }
        "insecure_oidc_skip_issuer_verification" => plan.report.unsupported(
            origin,
            "the issuer is always verified; Entra's multi-tenant issuers: entra_id_allowed_tenants",
        ),
        "oidc_audience_claims" if values::list(s).is_ok_and(|l| l == ["aud"]) => {
            plan.report.dropped(origin, "`aud`, the filter's audience claim")
        }
        "oidc_audience_claims" => plan.report.unsupported(
            origin,
            "the audience is read from `aud` only (stricter); use oidc_extra_audiences",
        ),
        "skip_claims_from_profile_url" => plan.report.unsupported(
            origin,
            "the userinfo endpoint fills claims the ID token lacks (email, groups)",
        ),
        "session_store_type" if value == "cookie" || value.is_empty() => {
            plan.report.dropped(origin, "sessions live in cookies")
        }
        "session_store_type" => plan.report.unsupported(
            origin,
            "sessions live in encrypted cookies; there is no server-side session store",
        ),
        "pass_basic_auth" => plan.report.dropped(
            origin,
            "its X-Forwarded-User/Email are pass_user_headers; no Basic credentials are sent",
        ),
        "set_basic_auth" | "basic_auth_password" => plan.report.unsupported(
            origin,
            "no Basic Authorization header is sent (an app that checks it will refuse)",
        ),
        "pass_host_header" if flag_is(s, true) => plan.report.dropped(origin, "Envoy keeps Host"),
        "pass_host_header" => plan.report.unsupported(origin, "Envoy passes the Host header"),
        "proxy_websockets" if flag_is(s, true) => {
            plan.report.dropped(origin, "WebSocket upgrades are proxied")
        }
        "proxy_websockets" => plan
            .report
            .unsupported(origin, "WebSocket upgrades are proxied (authenticated)"),
        "validate_url" if kind == Kind::GitHub => mapped_as(plan, s, "validate_url"),
        "validate_url" => plan.report.dropped(
            origin,
            "tokens are verified with the issuer's keys and claims re-read at refresh",
        ),
        // A file inside oauth2-proxy's container cannot be read by the filter.
        "custom_sign_in_logo" if value == "-" || value.starts_with("https://") => {
            mapped_as(plan, s, "custom_sign_in_logo")
        }
        "custom_sign_in_logo" => plan.report.unsupported(
            origin,
            "a file cannot be read inside Envoy: give an https:// URL, or inline the image \
             as data:image/png;base64,… (at most 32 KiB)",
        ),
        "banner" | "footer" => {
            mapped_as(plan, s, cfg);
            if value.contains('<') {
                plan.report.note(
                    origin,
                    "oauth2-proxy renders it as HTML; the filter shows it as text, escaped",
                );
            }
        }
        "skip_auth_routes" => {
            mapped_as(plan, s, "skip_auth_routes");
            for r in values::list(s).unwrap_or_default() {
                if !r.contains('=') && !r.starts_with('^') && !r.starts_with('/') {
                    plan.report.note(
                        origin,
                        format!(
                            "`{r}` has no `=`: read as a path regex (`METHOD=regex` is the form), \
                             by oauth2-proxy too"
                        ),
                    );
                }
            }
        }
        "upstreams" | "http_address" => super::hosts::place(plan, s),
        other => plan
            .report
            .unsupported(origin, format!("no rule for `{other}` in this tool")),
    }
}
