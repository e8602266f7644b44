//! oauth2-proxy's legacy options: each one's config-file name, flag and value type, as
//! oauth2-proxy declares them (`pkg/apis/options/options.go`, `legacy_options.go`,
//! `legacy_provider.go`, `legacy_cookie.go`, `legacy_sessions.go`, `legacy_logging.go`,
//! `legacy_page_templates.go`, `legacy_server.go`). The environment variable is derived as
//! oauth2-proxy's loader derives it (`pkg/apis/options/load.go`): `OAUTH2_PROXY_` and the
//! config-file name in capitals.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Str,
    Bool,
    /// pflag's `StringSlice`: repeatable, and each value comma-separated.
    List,
    /// Go's `time.Duration`.
    Duration,
    Int,
}

#[derive(Debug)]
pub struct Opt {
    /// The config-file name, which also names the option everywhere in this tool.
    pub cfg: &'static str,
    pub flag: &'static str,
    pub ty: Type,
}

use Type::{Bool as B, Duration as D, Int as I, List as L, Str as S};

const fn o(cfg: &'static str, flag: &'static str, ty: Type) -> Opt {
    Opt { cfg, flag, ty }
}

pub const OPTIONS: &[Opt] = &[
    // options.go
    o("proxy_prefix", "proxy-prefix", S),
    o("ping_path", "ping-path", S),
    o("ping_user_agent", "ping-user-agent", S),
    o("ready_path", "ready-path", S),
    o("reverse_proxy", "reverse-proxy", B),
    o("real_client_ip_header", "real-client-ip-header", S),
    o("trusted_ips", "trusted-ip", L),
    o("force_https", "force-https", B),
    o("redirect_url", "redirect-url", S),
    o("relative_redirect_url", "relative-redirect-url", B),
    o("authenticated_emails_file", "authenticated-emails-file", S),
    o("email_domains", "email-domain", L),
    o("whitelist_domains", "whitelist-domain", L),
    o("htpasswd_file", "htpasswd-file", S),
    o("htpasswd_user_groups", "htpasswd-user-group", L),
    o("api_routes", "api-route", L),
    o("skip_auth_regex", "skip-auth-regex", L),
    o("skip_auth_routes", "skip-auth-route", L),
    o("skip_jwt_bearer_tokens", "skip-jwt-bearer-tokens", B),
    o("extra_jwt_issuers", "extra-jwt-issuers", L),
    o("skip_provider_button", "skip-provider-button", B),
    o("ssl_insecure_skip_verify", "ssl-insecure-skip-verify", B),
    o("skip_auth_preflight", "skip-auth-preflight", B),
    o("force_json_errors", "force-json-errors", B),
    o("encode_state", "encode-state", B),
    o("allow_query_semicolons", "allow-query-semicolons", B),
    o("signature_key", "signature-key", S),
    o("gcp_healthchecks", "gcp-healthchecks", B),
    // legacy_sessions.go
    o("session_store_type", "session-store-type", S),
    o("session_cookie_minimal", "session-cookie-minimal", B),
    o("redis_connection_url", "redis-connection-url", S),
    o("redis_username", "redis-username", S),
    o("redis_password", "redis-password", S),
    o("redis_use_sentinel", "redis-use-sentinel", B),
    o("redis_sentinel_password", "redis-sentinel-password", S),
    o(
        "redis_sentinel_master_name",
        "redis-sentinel-master-name",
        S,
    ),
    o(
        "redis_sentinel_connection_urls",
        "redis-sentinel-connection-urls",
        L,
    ),
    o("redis_use_cluster", "redis-use-cluster", B),
    o(
        "redis_cluster_connection_urls",
        "redis-cluster-connection-urls",
        L,
    ),
    o("redis_ca_path", "redis-ca-path", S),
    o(
        "redis_insecure_skip_tls_verify",
        "redis-insecure-skip-tls-verify",
        B,
    ),
    o(
        "redis_connection_idle_timeout",
        "redis-connection-idle-timeout",
        I,
    ),
    // legacy_cookie.go
    o("cookie_name", "cookie-name", S),
    o("cookie_secret", "cookie-secret", S),
    o("cookie_secret_file", "cookie-secret-file", S),
    o("cookie_domains", "cookie-domain", L),
    o("cookie_path", "cookie-path", S),
    o("cookie_expire", "cookie-expire", D),
    o("cookie_refresh", "cookie-refresh", D),
    o("cookie_secure", "cookie-secure", B),
    o("cookie_httponly", "cookie-httponly", B),
    o("cookie_samesite", "cookie-samesite", S),
    o("cookie_csrf_per_request", "cookie-csrf-per-request", B),
    o(
        "cookie_csrf_per_request_limit",
        "cookie-csrf-per-request-limit",
        I,
    ),
    o("cookie_csrf_expire", "cookie-csrf-expire", D),
    // legacy_logging.go
    o("auth_logging", "auth-logging", B),
    o("auth_logging_format", "auth-logging-format", S),
    o("standard_logging", "standard-logging", B),
    o("standard_logging_format", "standard-logging-format", S),
    o("request_logging", "request-logging", B),
    o("request_logging_format", "request-logging-format", S),
    o("errors_to_info_log", "errors-to-info-log", B),
    o("exclude_logging_paths", "exclude-logging-path", L),
    o("logging_local_time", "logging-local-time", B),
    o("silence_ping_logging", "silence-ping-logging", B),
    o("request_id_header", "request-id-header", S),
    o("logging_filename", "logging-filename", S),
    o("logging_max_size", "logging-max-size", I),
    o("logging_max_age", "logging-max-age", I),
    o("logging_max_backups", "logging-max-backups", I),
    o("logging_compress", "logging-compress", B),
    // legacy_page_templates.go
    o("custom_templates_dir", "custom-templates-dir", S),
    o("custom_sign_in_logo", "custom-sign-in-logo", S),
    o("banner", "banner", S),
    o("footer", "footer", S),
    o("display_htpasswd_form", "display-htpasswd-form", B),
    o("show_debug_on_error", "show-debug-on-error", B),
    // legacy_options.go: upstreams, headers, server
    o("flush_interval", "flush-interval", D),
    o("pass_host_header", "pass-host-header", B),
    o("proxy_websockets", "proxy-websockets", B),
    o(
        "ssl_upstream_insecure_skip_verify",
        "ssl-upstream-insecure-skip-verify",
        B,
    ),
    o("upstreams", "upstream", L),
    o("upstream_timeout", "upstream-timeout", D),
    o("pass_basic_auth", "pass-basic-auth", B),
    o("pass_access_token", "pass-access-token", B),
    o("pass_user_headers", "pass-user-headers", B),
    o("pass_authorization_header", "pass-authorization-header", B),
    o("set_basic_auth", "set-basic-auth", B),
    o("set_xauthrequest", "set-xauthrequest", B),
    o("set_authorization_header", "set-authorization-header", B),
    o("prefer_email_to_user", "prefer-email-to-user", B),
    o("basic_auth_password", "basic-auth-password", S),
    o("skip_auth_strip_headers", "skip-auth-strip-headers", B),
    o("metrics_address", "metrics-address", S),
    o("metrics_secure_address", "metrics-secure-address", S),
    o("metrics_tls_cert_file", "metrics-tls-cert-file", S),
    o("metrics_tls_key_file", "metrics-tls-key-file", S),
    o("http_address", "http-address", S),
    o("https_address", "https-address", S),
    o("tls_cert_file", "tls-cert-file", S),
    o("tls_key_file", "tls-key-file", S),
    o("tls_min_version", "tls-min-version", S),
    o("tls_cipher_suites", "tls-cipher-suite", L),
    // legacy_provider.go
    o("client_id", "client-id", S),
    o("client_secret", "client-secret", S),
    o("client_secret_file", "client-secret-file", S),
    o("keycloak_groups", "keycloak-group", L),
    o("azure_tenant", "azure-tenant", S),
    o("azure_graph_group_field", "azure-graph-group-field", S),
    o("entra_id_allowed_tenants", "entra-id-allowed-tenant", L),
    o(
        "entra_id_federated_token_auth",
        "entra-id-federated-token-auth",
        B,
    ),
    o("bitbucket_team", "bitbucket-team", S),
    o("bitbucket_repository", "bitbucket-repository", S),
    o("github_org", "github-org", S),
    o("github_team", "github-team", S),
    o("github_repo", "github-repo", S),
    o("github_token", "github-token", S),
    o("github_users", "github-user", L),
    o("gitlab_groups", "gitlab-group", L),
    o("gitlab_projects", "gitlab-project", L),
    // `google_group` is the older config name of the same flag (legacy_provider.go reads both).
    o("google_groups", "google-group", L),
    o("google_admin_email", "google-admin-email", S),
    o(
        "google_service_account_json",
        "google-service-account-json",
        S,
    ),
    o(
        "google_use_application_default_credentials",
        "google-use-application-default-credentials",
        B,
    ),
    o("google_target_principal", "google-target-principal", S),
    o(
        "google_use_organization_id",
        "google-use-organization-id",
        B,
    ),
    o(
        "google_admin_api_user_scope",
        "google-admin-api-user-scope",
        S,
    ),
    o("provider", "provider", S),
    o("provider_display_name", "provider-display-name", S),
    o("provider_ca_files", "provider-ca-file", L),
    o("use_system_trust_store", "use-system-trust-store", B),
    o("oidc_issuer_url", "oidc-issuer-url", S),
    o(
        "insecure_oidc_allow_unverified_email",
        "insecure-oidc-allow-unverified-email",
        B,
    ),
    o(
        "insecure_oidc_skip_issuer_verification",
        "insecure-oidc-skip-issuer-verification",
        B,
    ),
    o("insecure_oidc_skip_nonce", "insecure-oidc-skip-nonce", B),
    o("skip_oidc_discovery", "skip-oidc-discovery", B),
    o("oidc_jwks_url", "oidc-jwks-url", S),
    o("oidc_email_claim", "oidc-email-claim", S),
    o("oidc_groups_claim", "oidc-groups-claim", S),
    o("oidc_audience_claims", "oidc-audience-claim", L),
    o("oidc_extra_audiences", "oidc-extra-audience", L),
    o("oidc_public_key_files", "oidc-public-key-file", L),
    o("oidc_enabled_signing_algs", "oidc-enabled-signing-alg", L),
    o("login_url", "login-url", S),
    o(
        "auth_request_response_mode",
        "auth-request-response-mode",
        S,
    ),
    o("redeem_url", "redeem-url", S),
    o("profile_url", "profile-url", S),
    o(
        "skip_claims_from_profile_url",
        "skip-claims-from-profile-url",
        B,
    ),
    o("resource", "resource", S),
    o("validate_url", "validate-url", S),
    o("scope", "scope", S),
    o("prompt", "prompt", S),
    o("approval_prompt", "approval-prompt", S),
    o("user_id_claim", "user-id-claim", S),
    o("allowed_groups", "allowed-group", L),
    o("allowed_roles", "allowed-role", L),
    o("backend_logout_url", "backend-logout-url", S),
    o("acr_values", "acr-values", S),
    o("jwt_key", "jwt-key", S),
    o("jwt_key_file", "jwt-key-file", S),
    o("pubjwk_url", "pubjwk-url", S),
    o("code_challenge_method", "code-challenge-method", S),
    o(
        "force_code_challenge_method",
        "force-code-challenge-method",
        S,
    ),
];

/// Config-file names older oauth2-proxy releases used for an option that has a newer name:
/// `google_group` (still read, `legacy_provider.go`) and `gitlab_group` (a string in the
/// v6 `options.go`, now the list `gitlab_groups`).
const OLD_CFG_NAMES: &[(&str, &str)] = &[
    ("google_group", "google_groups"),
    ("gitlab_group", "gitlab_groups"),
];

/// oauth2-proxy's own flags that are not options of the proxy: where its configuration
/// comes from, or what the binary does instead of serving.
pub const META_FLAGS: &[&str] = &[
    "config",
    "alpha-config",
    "convert-config-to-alpha",
    "version",
];

pub fn by_cfg(name: &str) -> Option<&'static Opt> {
    let name = OLD_CFG_NAMES
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| *new);
    OPTIONS.iter().find(|o| o.cfg == name)
}

pub fn by_flag(flag: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.flag == flag)
}

pub fn by_env(var: &str) -> Option<&'static Opt> {
    let cfg = var.strip_prefix("OAUTH2_PROXY_")?.to_ascii_lowercase();
    by_cfg(&cfg)
}
