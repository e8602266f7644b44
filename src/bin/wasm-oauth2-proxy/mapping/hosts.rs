//! Which hosts the filter calls and the Envoy cluster for each, named as Istio names the
//! cluster of a `ServiceEntry` or Service (`outbound|<port>||<host>`), so one configuration
//! serves the WasmPlugin and the standalone envoy.yaml alike. Also where the app and the
//! listener were (`upstreams`, `http_address`).

use serde_json::{json, Map, Value};
use wasm_oauth2_proxy::providers::Kind;

use super::plan::{Host, Plan};
use super::values;
use crate::settings::Setting;

/// `upstreams` and `http_address`: Envoy's app cluster and listener.
pub fn place(plan: &mut Plan, s: &Setting) {
    let origin = s.origin.as_str();
    if s.opt.cfg == "http_address" {
        let v = values::string(s).unwrap_or_default();
        let addr = v.trim_start_matches("http://");
        match addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        {
            Some((h, port)) => {
                let h = if h.is_empty() { "0.0.0.0" } else { h };
                plan.listen = Some((h.to_string(), port));
                plan.report.dropped(
                    origin,
                    format!("envoy.yaml listens on {h}:{port}; in Istio the app's sidecar receives the traffic"),
                );
            }
            None => plan.report.dropped(
                origin,
                format!("`{v}`: not an address:port Envoy can listen on"),
            ),
        }
        return;
    }
    for (i, u) in values::list(s).unwrap_or_default().iter().enumerate() {
        let parsed = url::Url::parse(u).ok();
        let target = parsed.as_ref().and_then(|p| {
            let path_ok = matches!(p.path(), "" | "/");
            let web = matches!(p.scheme(), "http" | "https");
            Some((p.host_str()?.to_string(), p.port_or_known_default()?)).filter(|_| path_ok && web)
        });
        match target {
            Some((host, port)) if i == 0 => {
                plan.report.dropped(
                    origin,
                    format!("the app: envoy.yaml's `app` cluster ({host}:{port}); in Istio the app's sidecar routes to it"),
                );
                plan.upstream = Some((host, port));
            }
            _ => plan.report.unsupported(
                origin,
                format!("`{u}`: one app at the root is proxied; route paths to other upstreams, files or static answers in Envoy"),
            ),
        }
    }
}

fn in_mesh(host: &str) -> bool {
    !host.contains('.') || host.ends_with(".svc") || host.ends_with(".svc.cluster.local")
}

/// Istio's cluster name for a host and port (`outbound|443||idp.example.com`); a Service of
/// the mesh is named by its full name.
pub fn istio_cluster(host: &str, port: u16, namespace: &str) -> String {
    let fqdn = if !host.contains('.') {
        format!("{host}.{namespace}.svc.cluster.local")
    } else if host.ends_with(".svc") {
        format!("{host}.cluster.local")
    } else {
        host.to_string()
    };
    format!("outbound|{port}||{fqdn}")
}

fn host_of(url: &str, namespace: &str) -> Option<Host> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    let port = u.port_or_known_default()?;
    let authority = wasm_oauth2_proxy::oidc::target(url).ok()?.authority;
    Some(Host {
        cluster: istio_cluster(&host, port, namespace),
        in_mesh: in_mesh(&host),
        tls: u.scheme() == "https",
        authority,
        host,
        port,
        called: true,
    })
}

fn url_at(config: &Map<String, Value>, key: &str) -> Option<String> {
    config.get(key)?.as_str().map(String::from)
}

/// Names `idp_cluster` and `idp_clusters` for every host the configuration makes the
/// filter call, and records them for the ServiceEntries and Envoy clusters.
pub fn assign(plan: &mut Plan, kind: Kind) {
    let ns = plan.namespace.clone();
    let c = &plan.config;
    let skip_discovery = c.get("skip_oidc_discovery") == Some(&json!(true));
    let main_url = if kind == Kind::GitHub {
        url_at(c, "redeem_url").unwrap_or_else(|| "https://github.com/".into())
    } else {
        url_at(c, "oidc_issuer_url").unwrap_or_default()
    };
    let mut others: Vec<String> = Vec::new();
    if skip_discovery || kind == Kind::GitHub {
        others.extend(
            ["redeem_url", "oidc_jwks_url", "profile_url"]
                .iter()
                .filter_map(|k| url_at(c, k)),
        );
    }
    match kind {
        Kind::GitHub => others
            .push(url_at(c, "validate_url").unwrap_or_else(|| "https://api.github.com/".into())),
        Kind::Google => others.extend(
            [
                "oauth2.googleapis.com",
                "www.googleapis.com",
                "openidconnect.googleapis.com",
            ]
            .iter()
            .map(|h| format!("https://{h}/")),
        ),
        Kind::EntraId if c.get("allowed_groups").is_some() => {
            others.push("https://graph.microsoft.com/".into())
        }
        _ => {}
    }
    others.extend(url_at(c, "backend_logout_url").map(|u| u.replace("{id_token}", "x")));
    if let Some(Value::Array(issuers)) = c.get("extra_jwt_issuers") {
        others.extend(
            issuers
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|e| e.rsplit_once('=').map(|(u, _)| u.to_string())),
        );
    }
    let Some(mut main) = host_of(&main_url, &ns) else {
        return;
    };
    let mut hosts = Vec::new();
    for h in others.iter().filter_map(|u| host_of(u, &ns)) {
        if h.authority.eq_ignore_ascii_case(&main.authority) {
            continue;
        }
        if !hosts
            .iter()
            .any(|o: &Host| o.authority.eq_ignore_ascii_case(&h.authority))
        {
            hosts.push(h);
        }
    }
    main.called = !(skip_discovery && kind != Kind::GitHub)
        || others
            .iter()
            .filter_map(|u| host_of(u, &ns))
            .any(|h| h.authority == main.authority);
    plan.set("idp_cluster", json!(main.cluster));
    let named: Map<String, Value> = hosts
        .iter()
        .map(|h| (h.authority.clone(), json!(h.cluster)))
        .collect();
    let mut lines = vec![(main.authority.clone(), main.cluster.clone(), "idp_cluster")];
    lines.extend(
        hosts
            .iter()
            .map(|h| (h.authority.clone(), h.cluster.clone(), "idp_clusters")),
    );
    if !named.is_empty() {
        plan.set("idp_clusters", Value::Object(named));
    }
    for (authority, cluster, key) in lines {
        plan.report
            .note(authority.as_str(), format!("{key}: {cluster}"));
    }
    if !main.called {
        plan.report.note(
            &main.authority,
            "the issuer's host is not called (skip_oidc_discovery): no ServiceEntry for it",
        );
    }
    hosts.insert(0, main);
    for h in hosts.iter().filter(|h| h.called && !h.tls) {
        plan.report.note(
            &h.authority,
            "plain HTTP: the filter's calls to it (tokens, keys) are not encrypted",
        );
    }
    plan.hosts = hosts;
}
