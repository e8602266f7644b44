"""Envoy bootstraps for the benchmark: one listener, the same connection manager and the same
upstream in every configuration; only the auth filter in front of the router differs.
Built as dicts (Envoy reads JSON bootstraps) so every variant shares one definition.
`bootstrap_listeners` puts several such listeners, one per configuration, into one Envoy
(`python3 -m bench.paired`)."""

from __future__ import annotations


def _cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        # Close idle upstream connections before the servers behind them do (demo/app.js and
        # idp/server.js keep them 65 s): a request Envoy sends on a connection the server is
        # closing at that moment gets a 503 (`upstream_reset_before_response_started`).
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "60s"},
                "explicit_http_config": {"http_protocol_options": {}},
            },
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def _wasm(name: str, path: str, configuration: str, env_keys: list[str]) -> dict:
    vm = {
        "vm_id": name,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": path}},
    }
    if env_keys:
        vm["environment_variables"] = {"host_env_keys": env_keys}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "fail_open": False,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "vm_config": vm,
            },
        },
    }


def listener(name: str, port: int, filters: list[dict], stat_prefix: str = "bench",
             cluster: str = "app") -> dict:
    """One benchmark listener: the shared connection manager with `filters` before the router,
    which sends every request to `cluster`. Its request counters are
    `http.<stat_prefix>.downstream_rq_*`."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        # Chunked session cookies (several 4 KB cookies) must fit.
        "max_request_headers_kb": 96,
        # As every config in the repo: underscore spellings of headers are refused.
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "route_config": {
            "name": "local_route",
            "virtual_hosts": [{
                "name": "app",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
            }],
        },
        "http_filters": [*filters, {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    }


def bootstrap(port: int, admin: int, app_port: int, idp_port: int,
              filters: list[dict], secrets: list[dict] | None = None) -> dict:
    return bootstrap_listeners(admin, app_port, idp_port, [listener("main", port, filters)], secrets)


def bootstrap_listeners(admin: int, app_port: int, idp_port: int, listeners: list[dict],
                        secrets: list[dict] | None = None,
                        extra_clusters: dict[str, int] | None = None) -> dict:
    """One Envoy with every listener in `listeners` (see `listener`), the same clusters, and
    `extra_clusters` (name: a loopback port; e.g. another listener of the same Envoy)."""
    static = {
        "listeners": listeners,
        "clusters": [_cluster("app", app_port), _cluster("idp", idp_port),
                     *(_cluster(n, p) for n, p in (extra_clusters or {}).items())],
    }
    if secrets:
        static["secrets"] = secrets
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        # As envoy/*.yaml: free pages (V8's compile scratch memory) go back to the OS.
        "memory_allocator_manager": {"bytes_to_release": 64 << 20,
                                     "memory_release_interval": "1s"},
        "static_resources": static,
    }


# `name` is the plugin's name, root_id and vm_id. Envoy gives plugins with the same vm_id and
# the same code one VM (per thread); within it, root_id picks the root context. Several
# listeners in one Envoy therefore pass distinct names to get a VM each.


def trivial_filter(wasm_path: str, name: str = "bench-trivial") -> list[dict]:
    return [_wasm(name, wasm_path, "", [])]


def gate_filter(wasm_path: str, plugin_config: str, name: str = "wasm-oauth2-proxy") -> list[dict]:
    return [_wasm(name, wasm_path, plugin_config,
                  ["OAUTH2_CLIENT_SECRET", "OAUTH2_COOKIE_SECRET"])]


def native_oauth2(idp_port: int, port: int, client_id: str) -> list[dict]:
    """Envoy's own oauth2 filter against the same IdP; secrets as static SDS secrets."""
    idp = f"http://127.0.0.1:{idp_port}"
    filt = {
        "name": "envoy.filters.http.oauth2",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.oauth2.v3.OAuth2",
            "config": {
                "token_endpoint": {"cluster": "idp", "uri": f"{idp}/token", "timeout": "5s"},
                "authorization_endpoint": f"{idp}/auth",
                "redirect_uri": f"http://127.0.0.1:{port}/callback",
                "redirect_path_matcher": {"path": {"exact": "/callback"}},
                "signout_path": {"path": {"exact": "/signout"}},
                "credentials": {
                    "client_id": client_id,
                    "token_secret": {"name": "oauth2-token"},
                    "hmac_secret": {"name": "oauth2-hmac"},
                },
                "auth_scopes": ["openid", "email", "profile"],
                "auth_type": "BASIC_AUTH",
                "forward_bearer_token": True,
            },
        },
    }
    return [filt]


def native_oauth2_secrets(client_secret: str, hmac_secret: str) -> list[dict]:
    return [
        {"name": "oauth2-token", "generic_secret": {"secret": {"inline_string": client_secret}}},
        {"name": "oauth2-hmac", "generic_secret": {"secret": {"inline_string": hmac_secret}}},
    ]


def jwt_authn(issuer: str, audience: str, jwks: str, cache: bool) -> list[dict]:
    provider = {
        "issuer": issuer,
        "audiences": [audience],
        "local_jwks": {"inline_string": jwks},
        "forward": True,
        "forward_payload_header": "x-jwt-payload",
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 100}
    return [{
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }]
