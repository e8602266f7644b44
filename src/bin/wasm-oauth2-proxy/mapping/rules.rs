//! What becomes of each oauth2-proxy option whose fate does not depend on its value or the
//! provider. The others are `Custom` and decided in `custom.rs`.

pub enum Rule {
    /// The filter has the option under the same name and meaning.
    Same,
    Drop(&'static str),
    Unsupported(&'static str),
    Refuse(&'static str),
    Custom,
}

const LOGGING: &str = "the filter logs each auth event as one JSON line through Envoy's log; \
                       requests are in Envoy's access log";
const LISTENER: &str = "the listener is Envoy's (TLS, addresses): the Istio sidecar's or \
                        Gateway's, or envoy.yaml's";
const METRICS: &str = "the filter's metrics are in Envoy's /stats (wasmcustom.wasm_oauth2_proxy.*)";
const REDIS: &str = "sessions live in encrypted cookies; there is no server-side session store";

pub fn rule(cfg: &str) -> Rule {
    use Rule::*;
    match cfg {
        "proxy_prefix" | "ping_path" | "ping_user_agent" | "ready_path" | "reverse_proxy"
        | "whitelist_domains" | "api_routes" | "skip_auth_regex" | "skip_jwt_bearer_tokens"
        | "extra_jwt_issuers" | "skip_provider_button" | "skip_auth_preflight"
        | "session_cookie_minimal" | "cookie_name" | "cookie_domains" | "cookie_path"
        | "cookie_refresh" | "cookie_secure" | "cookie_samesite" | "cookie_csrf_per_request"
        | "cookie_csrf_per_request_limit" | "cookie_csrf_expire" | "pass_access_token"
        | "pass_user_headers" | "pass_authorization_header" | "set_xauthrequest"
        | "set_authorization_header" | "prefer_email_to_user"
        | "insecure_oidc_allow_unverified_email" | "skip_oidc_discovery" | "oidc_jwks_url"
        | "oidc_email_claim" | "oidc_groups_claim" | "oidc_extra_audiences" | "login_url"
        | "redeem_url" | "profile_url" | "scope" | "user_id_claim" | "allowed_groups"
        | "backend_logout_url" | "email_domains" | "provider_display_name" => Same,

        "real_client_ip_header" => Drop(
            "the client's address is Envoy's business (use_remote_address, xff_num_trusted_hops)",
        ),
        "encode_state" => Drop("the login state is the filter's own, sealed in its CSRF cookie"),
        "allow_query_semicolons" => Drop("the filter never reads the query to decide"),
        "gcp_healthchecks" => Drop("ping_path and ready_path answer health checks"),
        "auth_logging" | "auth_logging_format" | "standard_logging" | "standard_logging_format"
        | "request_logging" | "request_logging_format" | "errors_to_info_log"
        | "exclude_logging_paths" | "logging_local_time" | "silence_ping_logging"
        | "request_id_header" | "logging_filename" | "logging_max_size" | "logging_max_age"
        | "logging_max_backups" | "logging_compress" => Drop(LOGGING),
        "display_htpasswd_form" => Drop("there is no password form"),
        "show_debug_on_error" => Drop("error pages never show details"),
        "flush_interval" => Drop("Envoy streams responses as they come"),
        "upstream_timeout" => Drop("the route's `timeout` (60s in envoy.yaml)"),
        "ssl_upstream_insecure_skip_verify" => {
            Drop("the app is reached in the pod, over plain HTTP (envoy.yaml's `app` cluster)")
        }
        "metrics_address" | "metrics_secure_address" | "metrics_tls_cert_file"
        | "metrics_tls_key_file" => Drop(METRICS),
        "https_address" | "tls_cert_file" | "tls_key_file" | "tls_min_version"
        | "tls_cipher_suites" => Drop(LISTENER),
        "use_system_trust_store" => Drop(
            "the IdP's certificate is checked against the system CA bundle (istio/idp.yaml, envoy.yaml)",
        ),
        "approval_prompt" => Drop("not sent; the IdP's own consent behaviour applies"),
        "redis_connection_url" | "redis_username" | "redis_password" | "redis_use_sentinel"
        | "redis_sentinel_password" | "redis_sentinel_master_name"
        | "redis_sentinel_connection_urls" | "redis_use_cluster"
        | "redis_cluster_connection_urls" | "redis_ca_path" | "redis_insecure_skip_tls_verify"
        | "redis_connection_idle_timeout" => Unsupported(REDIS),

        "trusted_ips" => Unsupported(
            "the filter never admits by address: these clients must log in (stricter)",
        ),
        "force_https" => Unsupported(
            "redirect HTTP to HTTPS in Envoy (a route's `https_redirect`) or the Istio Gateway",
        ),
        "force_json_errors" => {
            Unsupported("non-browser requests get JSON errors; browsers get pages")
        }
        "signature_key" => Unsupported("the GAP-Signature header is never set"),
        "htpasswd_user_groups" => Unsupported("there are no htpasswd users"),
        "custom_templates_dir" => Unsupported(
            "the pages are the filter's own; `custom_sign_in_logo`, `banner`, `footer` and \
             `provider_display_name` brand them",
        ),
        "custom_sign_in_logo" | "banner" | "footer" => Custom,
        "provider_ca_files" => Unsupported(
            "give the IdP's CA to istio/idp.yaml's DestinationRule (`caCertificates`) or \
             envoy.yaml's `trusted_ca`",
        ),
        "oidc_enabled_signing_algs" => Unsupported(
            "the filter's algorithms are tied to the key type (RS*, PS*, ES256, ES384, EdDSA)",
        ),
        "auth_request_response_mode" => Unsupported("the IdP answers with a query redirect"),
        "resource" => Unsupported("Azure AD v1's `resource` parameter is not sent"),
        "prompt" => Unsupported("OIDC's `prompt` is not sent; the IdP's default applies"),
        "jwt_key" | "jwt_key_file" | "pubjwk_url" => Unsupported("login.gov only"),

        "htpasswd_file" => Refuse(
            "users of an htpasswd file could not log in: the filter logs in through the IdP only",
        ),
        "bitbucket_team" | "bitbucket_repository" => {
            Refuse("the bitbucket provider is not supported, nor its team or repository rule")
        }
        "oidc_public_key_files" => Refuse(
            "tokens verified with keys from files: the filter verifies with the issuer's JWKS",
        ),
        "acr_values" => Refuse(
            "the authentication level (acr) cannot be requested nor checked by the filter",
        ),

        _ => Custom,
    }
}
