//! A standalone Envoy for a plan: `envoy/sidecar.yaml` itself (its listener hardening,
//! FAIL_CLOSED, secrets from the environment), with the plan's listener, app, plugin
//! configuration and one cluster per IdP host, named as the configuration names them.

use crate::mapping::Plan;

const SIDECAR: &str = include_str!("../../../envoy/sidecar.yaml");
const CLUSTERS_START: &str = "  # Discovery, JWKS and token requests";
const CONFIG_START: &str = "                  value: |\n";
const CONFIG_END: &str = "                vm_config:\n";

pub struct Options<'a> {
    pub wasm_path: &'a str,
    pub admin_port: u16,
    pub ca_bundle: &'a str,
}

/// Replaces the one occurrence of `from`; the template changed if there is not exactly one.
fn swap(text: &str, from: &str, to: &str) -> Result<String, String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(format!(
            "envoy/sidecar.yaml has {n} occurrences of {from:?}; this tool needs one"
        )),
    }
}

fn cluster(h: &crate::mapping::Host, ca_bundle: &str) -> String {
    let name = serde_json::Value::String(h.cluster.clone()).to_string();
    let address_type = if h.host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "LOGICAL_DNS\n    dns_lookup_family: V4_PREFERRED"
    };
    let mut out = format!(
        "  # {authority}{called}\n  - name: {name}\n    type: {address_type}\n    connect_timeout: 5s\n    \
         circuit_breakers:\n      thresholds:\n      - max_connections: 64\n        \
         max_pending_requests: 64\n        max_requests: 64\n    load_assignment:\n      \
         cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            \
         address:\n              socket_address: {{ address: {host}, port_value: {port} }}\n",
        authority = h.authority,
        called = if h.called { "" } else { " (named by idp_cluster, not called: discovery is skipped)" },
        host = h.host,
        port = h.port,
    );
    if h.tls {
        out.push_str(&format!(
            "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \
             \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        \
             sni: {host}\n        common_tls_context:\n          tls_params:\n            \
             tls_minimum_protocol_version: TLSv1_2\n          validation_context:\n            \
             trusted_ca:\n              filename: {ca_bundle}\n            \
             match_typed_subject_alt_names:\n            - san_type: DNS\n              matcher:\n                \
             exact: {host}\n",
            host = h.host
        ));
    }
    out
}

pub fn render(plan: &Plan, opts: &Options) -> Result<String, String> {
    let body = SIDECAR
        .find("admin:\n")
        .and_then(|i| SIDECAR.get(i..))
        .ok_or("envoy/sidecar.yaml: no `admin:`")?;
    let (listen_host, listen_port) = plan.listen.clone().unwrap_or(("0.0.0.0".into(), 4180));
    let (mut app_host, app_port) = plan.upstream.clone().unwrap_or(("127.0.0.1".into(), 8080));
    if app_host == "localhost" {
        app_host = "127.0.0.1".into();
    }
    let mut y = body.to_string();
    if app_host.parse::<std::net::IpAddr>().is_err() {
        // The template's app cluster takes an address; a name needs DNS.
        y = swap(
            &y,
            "  - name: app\n    type: STATIC\n",
            "  - name: app\n    type: LOGICAL_DNS\n",
        )?;
    }
    y = swap(
        &y,
        "socket_address: { address: 127.0.0.1, port_value: 9901 }",
        &format!(
            "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
            opts.admin_port
        ),
    )?;
    y = swap(
        &y,
        "socket_address: { address: 0.0.0.0, port_value: 4180 }",
        &format!("socket_address: {{ address: {listen_host}, port_value: {listen_port} }}"),
    )?;
    y = swap(
        &y,
        "socket_address: { address: 127.0.0.1, port_value: 8080 }",
        &format!("socket_address: {{ address: {app_host}, port_value: {app_port} }}"),
    )?;
    y = swap(
        &y,
        "filename: /etc/wasm-oauth2-proxy/wasm_oauth2_proxy.wasm",
        &format!("filename: {}", opts.wasm_path),
    )?;
    let keys: String = plan
        .secrets
        .iter()
        .map(|s| format!("                    - {}\n", s.env))
        .collect();
    y = swap(
        &y,
        "                    - OAUTH2_CLIENT_SECRET\n                    - OAUTH2_COOKIE_SECRET\n",
        &keys,
    )?;
    let start = y
        .find(CONFIG_START)
        .ok_or("envoy/sidecar.yaml: no configuration value")?;
    let end = y
        .find(CONFIG_END)
        .ok_or("envoy/sidecar.yaml: no vm_config")?;
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(plan.config.clone()))
        .map_err(|e| e.to_string())?;
    let indented: String = json
        .lines()
        .map(|l| format!("                    {l}\n"))
        .collect();
    y = format!(
        "{}{CONFIG_START}{indented}{}",
        y.get(..start).unwrap_or(""),
        y.get(end..).unwrap_or("")
    );
    let cut = y
        .find(CLUSTERS_START)
        .ok_or("envoy/sidecar.yaml: no IdP cluster")?;
    y.truncate(cut);
    y.push_str(
        "  # The IdP's hosts, one cluster each, named as the plugin configuration names them.\n",
    );
    for h in &plan.hosts {
        y.push_str(&cluster(h, opts.ca_bundle));
    }
    Ok(format!(
        "# Generated by `wasm-oauth2-proxy convert --envoy` from envoy/sidecar.yaml: Envoy in the\n\
         # pod in place of oauth2-proxy, listening on {listen_host}:{listen_port}, sending\n\
         # authenticated requests to the app on {app_host}:{app_port}. The filter reads its secrets\n\
         # from Envoy's environment ({}).\n#\n#   envoy -c envoy.yaml\n\n{y}",
        plan.secrets.iter().map(|s| s.env).collect::<Vec<_>>().join(", ")
    ))
}
