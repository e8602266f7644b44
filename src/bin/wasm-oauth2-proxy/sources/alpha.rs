//! oauth2-proxy's `--alpha-config` YAML (`AlphaOptions` in `pkg/apis/options/alpha_options.go`,
//! documented in `docs/docs/configuration/alpha_config.md`): `upstreamConfig`, `server`,
//! `metricsServer`, `providers` and the injected headers, each read back into the legacy
//! option it replaces (`legacy_options.go` converts the other way).

use yaml_rust2::Yaml;

use super::Input;
use crate::options;
use crate::report::Verdict;
use crate::settings::{setting, Layer, Raw};

/// `Provider` fields (`pkg/apis/options/providers.go`) and the legacy option each one is.
const PROVIDER: &[(&str, &str)] = &[
    ("clientID", "client_id"),
    ("clientSecret", "client_secret"),
    ("clientSecretFile", "client_secret_file"),
    ("provider", "provider"),
    ("name", "provider_display_name"),
    ("caFiles", "provider_ca_files"),
    ("useSystemTrustStore", "use_system_trust_store"),
    ("loginURL", "login_url"),
    ("redeemURL", "redeem_url"),
    ("profileURL", "profile_url"),
    ("skipClaimsFromProfileURL", "skip_claims_from_profile_url"),
    ("resource", "resource"),
    ("validateURL", "validate_url"),
    ("scope", "scope"),
    ("allowedGroups", "allowed_groups"),
    ("code_challenge_method", "code_challenge_method"),
    ("backendLogoutURL", "backend_logout_url"),
];

/// The provider-specific sections and their fields.
const SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "oidcConfig",
        &[
            ("issuerURL", "oidc_issuer_url"),
            (
                "insecureAllowUnverifiedEmail",
                "insecure_oidc_allow_unverified_email",
            ),
            (
                "insecureSkipIssuerVerification",
                "insecure_oidc_skip_issuer_verification",
            ),
            ("insecureSkipNonce", "insecure_oidc_skip_nonce"),
            ("skipDiscovery", "skip_oidc_discovery"),
            ("jwksURL", "oidc_jwks_url"),
            ("publicKeyFiles", "oidc_public_key_files"),
            ("emailClaim", "oidc_email_claim"),
            ("groupsClaim", "oidc_groups_claim"),
            ("userIDClaim", "user_id_claim"),
            ("audienceClaims", "oidc_audience_claims"),
            ("extraAudiences", "oidc_extra_audiences"),
        ],
    ),
    (
        "keycloakConfig",
        &[("groups", "keycloak_groups"), ("roles", "allowed_roles")],
    ),
    (
        "azureConfig",
        &[
            ("tenant", "azure_tenant"),
            ("graphGroupField", "azure_graph_group_field"),
        ],
    ),
    (
        "microsoftEntraIDConfig",
        &[
            ("allowedTenants", "entra_id_allowed_tenants"),
            ("federatedTokenAuth", "entra_id_federated_token_auth"),
        ],
    ),
    (
        "githubConfig",
        &[
            ("org", "github_org"),
            ("team", "github_team"),
            ("repo", "github_repo"),
            ("token", "github_token"),
            ("users", "github_users"),
        ],
    ),
    (
        "gitlabConfig",
        &[("group", "gitlab_groups"), ("projects", "gitlab_projects")],
    ),
    (
        "googleConfig",
        &[
            ("group", "google_groups"),
            ("adminEmail", "google_admin_email"),
            ("serviceAccountJson", "google_service_account_json"),
            (
                "useApplicationDefaultCredentials",
                "google_use_application_default_credentials",
            ),
            ("targetPrincipal", "google_target_principal"),
        ],
    ),
    (
        "bitbucketConfig",
        &[
            ("team", "bitbucket_team"),
            ("repository", "bitbucket_repository"),
        ],
    ),
    (
        "loginGovConfig",
        &[
            ("jwtKey", "jwt_key"),
            ("jwtKeyFile", "jwt_key_file"),
            ("pubjwkURL", "pubjwk_url"),
        ],
    ),
];

fn raw(y: &Yaml) -> Option<Raw> {
    Some(match y {
        Yaml::String(s) => Raw::Str(s.clone()),
        Yaml::Boolean(b) => Raw::Bool(*b),
        Yaml::Integer(i) => Raw::Int(*i),
        Yaml::Array(a) => Raw::List(
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        ),
        _ => return None,
    })
}

fn set(input: &mut Input, cfg: &str, value: Raw, origin: String) {
    match setting(options::by_cfg(cfg), value, origin.clone()) {
        Some(s) => input.settings.set(Layer::Alpha, s),
        None => input.settings.unknown.push(origin),
    }
}

pub fn read(docs: &[Yaml], file: &str, input: &mut Input) -> Result<(), String> {
    let Some(root) = docs.first().filter(|d| d.as_hash().is_some()) else {
        return Err(format!(
            "{file}: not an oauth2-proxy alpha config (a YAML mapping)"
        ));
    };
    let known = [
        "upstreamConfig",
        "injectRequestHeaders",
        "injectResponseHeaders",
        "server",
        "metricsServer",
        "providers",
    ];
    for (k, _) in root.as_hash().into_iter().flatten() {
        let k = k.as_str().unwrap_or("?");
        if !known.contains(&k) {
            input.settings.unknown.push(format!("{k} ({file})"));
        }
    }

    let uris: Vec<String> = root["upstreamConfig"]["upstreams"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(|u| u["uri"].as_str().map(String::from))
        .collect();
    if !uris.is_empty() {
        set(
            input,
            "upstreams",
            Raw::List(uris),
            format!("upstreamConfig ({file})"),
        );
    }
    for (section, cfg) in [
        ("server", "http_address"),
        ("metricsServer", "metrics_address"),
    ] {
        if let Some(a) = root[section]["BindAddress"].as_str() {
            set(
                input,
                cfg,
                Raw::Str(a.into()),
                format!("{section}.BindAddress ({file})"),
            );
        }
        if let Some(a) = root[section]["SecureBindAddress"].as_str() {
            let cfg = if section == "server" {
                "https_address"
            } else {
                "metrics_secure_address"
            };
            set(
                input,
                cfg,
                Raw::Str(a.into()),
                format!("{section}.SecureBindAddress ({file})"),
            );
        }
    }

    let providers = root["providers"].as_vec().map_or(&[][..], Vec::as_slice);
    if providers.len() > 1 {
        input.findings.push((
            Verdict::Refused,
            format!("providers ({file})"),
            format!(
                "{} providers: the filter logs in with one; only providers[0] is converted",
                providers.len()
            ),
        ));
    }
    if let Some(p) = providers.first() {
        for (field, cfg) in PROVIDER {
            if let Some(v) = raw(&p[*field]) {
                set(input, cfg, v, format!("providers[0].{field} ({file})"));
            }
        }
        for (section, fields) in SECTIONS {
            for (field, cfg) in *fields {
                if let Some(v) = raw(&p[*section][*field]) {
                    set(
                        input,
                        cfg,
                        v,
                        format!("providers[0].{section}.{field} ({file})"),
                    );
                }
            }
        }
        if !p["loginURLParameters"].is_badvalue() {
            input.findings.push((
                Verdict::Unsupported,
                format!("providers[0].loginURLParameters ({file})"),
                "extra parameters on the IdP's login URL are not passed".into(),
            ));
        }
    }
    super::alpha_headers::read(root, file, input);
    Ok(())
}
