//! The Istio resources in `wasmplugin/`: every WasmPlugin validates against Istio's own CRD
//! schema (vendored in tests/fixtures/istio/), its `pluginConfig` loads with the filter's own
//! config parser, and the pieces around it (Secret, Deployment patch, ServiceEntry,
//! DestinationRule) name each other consistently, so an example cannot drift from the code.
//!
//! Each set of resources applied together is checked on its own: `wasmplugin/` (OIDC with
//! Keycloak) and `wasmplugin/github/` (GitHub, which reuses `wasmplugin/deployment-patch.yaml`).

mod openapi;

use std::path::PathBuf;

use serde_json::{json, Value};

use openapi::{yaml_docs, Crd};
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::oidc;
use wasm_oauth2_proxy::providers::Kind;

const CRD: &str = "tests/fixtures/istio/wasmplugin-crd.yaml";

/// Resources applied together: the YAML files of `dir`, plus files of another set they
/// reuse by reference.
struct Set {
    dir: &'static str,
    shared: &'static [&'static str],
}

const MAIN: Set = Set {
    dir: "wasmplugin",
    shared: &[],
};

const SETS: &[Set] = &[
    MAIN,
    Set {
        dir: "wasmplugin/github",
        shared: &["wasmplugin/deployment-patch.yaml"],
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crd() -> Crd {
    Crd::from_yaml(&std::fs::read_to_string(root().join(CRD)).expect("read CRD"))
}

impl Set {
    /// Every document of every YAML file of the set, with its path from the repository root.
    fn resources(&self) -> Vec<(String, Value)> {
        let dir = root().join(self.dir);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}/: {e}", self.dir))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| format!("{}/{}", self.dir, p.file_name().unwrap().to_string_lossy()))
            .collect();
        files.sort();
        files.extend(self.shared.iter().map(|f| f.to_string()));
        files
            .iter()
            .flat_map(|name| {
                let text = std::fs::read_to_string(root().join(name))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                yaml_docs(&text, name)
                    .into_iter()
                    .map(move |d| (name.clone(), d))
            })
            .collect()
    }

    fn all(&self, kind: &str) -> Vec<Value> {
        self.resources()
            .into_iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .collect()
    }

    fn one(&self, kind: &str) -> Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "want exactly one {kind} in {}/", self.dir);
        found[0].clone()
    }

    /// The Deployment patch: the one document without a kind (a strategic-merge patch).
    fn deployment_patch(&self) -> Value {
        let found: Vec<(String, Value)> = self
            .resources()
            .into_iter()
            .filter(|(_, d)| d.get("kind").is_none())
            .collect();
        assert_eq!(found.len(), 1, "want one patch document for {}/", self.dir);
        assert!(
            found[0].0.ends_with("/deployment-patch.yaml"),
            "{}",
            found[0].0
        );
        found[0].1.clone()
    }
}

#[test]
fn every_directory_of_wasmplugin_is_a_checked_set() {
    let mut dirs = vec!["wasmplugin".to_string()];
    for e in std::fs::read_dir(root().join("wasmplugin")).expect("wasmplugin/") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            dirs.push(format!(
                "wasmplugin/{}",
                p.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    dirs.sort();
    let mut known: Vec<String> = SETS.iter().map(|s| s.dir.to_string()).collect();
    known.sort();
    assert_eq!(
        dirs, known,
        "a new directory in wasmplugin/ needs a place in SETS"
    );
}

fn host_env_names(wp: &Value) -> Vec<String> {
    wp["spec"]["vmConfig"]["env"]
        .as_array()
        .expect("vmConfig.env")
        .iter()
        .filter(|e| e["valueFrom"] == "HOST")
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect()
}

fn cookie_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

fn parse_plugin_config(wp: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let bytes = serde_json::to_vec(&wp["spec"]["pluginConfig"]).expect("json");
    Config::parse(&bytes, env).map_err(|e| format!("{}: {}", e.key, e.problem))
}

#[test]
fn crd_is_vendored_with_its_source() {
    let text = std::fs::read_to_string(root().join(CRD)).expect("read CRD");
    assert!(
        text.starts_with(
            "# Source: github.com/istio/api kubernetes/customresourcedefinitions.gen.yaml @ "
        ),
        "{CRD} must start with its source line"
    );
    let c = crd();
    assert_eq!(
        (c.group.as_str(), c.kind.as_str()),
        ("extensions.istio.io", "WasmPlugin")
    );
    assert!(c.versions.iter().any(|(v, _)| v == "v1alpha1"));
}

#[test]
fn every_resource_is_known_and_every_wasmplugin_matches_the_crd() {
    let crd = crd();
    for set in SETS {
        let mut plugins = 0;
        for (file, doc) in set.resources() {
            match doc["kind"].as_str() {
                Some("WasmPlugin") => {
                    let errs = crd.validate(&doc);
                    assert!(
                        errs.is_empty(),
                        "{file}: not valid per {CRD}:\n{}",
                        errs.join("\n")
                    );
                    plugins += 1;
                }
                Some("Secret") => assert_eq!(doc["apiVersion"], "v1", "{file}"),
                Some("ServiceEntry") | Some("DestinationRule") => {
                    assert_eq!(doc["apiVersion"], "networking.istio.io/v1", "{file}")
                }
                None => assert!(file.ends_with("/deployment-patch.yaml"), "{file}"),
                Some(other) => panic!("{file}: no check for kind {other}; add one"),
            }
        }
        assert_eq!(plugins, 1, "{}/", set.dir);
    }
}

/// Breaks a WasmPlugin in one way.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn the_validator_rejects_what_the_apiserver_would() {
    let crd = crd();
    let good = MAIN.one("WasmPlugin");
    assert!(crd.validate(&good).is_empty());
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "unknown field",
            Box::new(|w| w["spec"]["failOpen"] = json!(true)),
        ),
        (
            "not one of",
            Box::new(|w| w["spec"]["failStrategy"] = json!("FAIL_SOMETIMES")),
        ),
        (
            "does not match",
            Box::new(|w| w["spec"]["sha256"] = json!("abc")),
        ),
        (
            "missing required field url",
            Box::new(|w| {
                w["spec"].as_object_mut().unwrap().remove("url");
            }),
        ),
        (
            "url must have schema",
            Box::new(|w| w["spec"]["url"] = json!("ftp://registry/x:1")),
        ),
        (
            "value may only be set",
            Box::new(|w| w["spec"]["vmConfig"]["env"][0]["value"] = json!("inline-secret")),
        ),
        (
            "only one of targetRefs or selector",
            Box::new(|w| {
                w["spec"]["targetRefs"] = json!([{"kind": "Service", "name": "oauth2-demo"}])
            }),
        ),
        (
            "wildcard not allowed",
            Box::new(|w| w["spec"]["selector"]["matchLabels"]["app"] = json!("*")),
        ),
        (
            "duplicate list-map key",
            Box::new(|w| {
                let e = w["spec"]["vmConfig"]["env"][0].clone();
                w["spec"]["vmConfig"]["env"].as_array_mut().unwrap().push(e)
            }),
        ),
        (
            "expected string",
            Box::new(|w| w["spec"]["phase"] = json!(3)),
        ),
        (
            "apiVersion",
            Box::new(|w| w["apiVersion"] = json!("extensions.istio.io/v1")),
        ),
        (
            "DNS-1123",
            Box::new(|w| w["metadata"]["name"] = json!("OAuth2_Proxy")),
        ),
    ];
    for (want, mutate) in cases {
        let mut w = good.clone();
        mutate(&mut w);
        let errs = crd.validate(&w);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "a WasmPlugin with a '{want}' problem passed: {errs:?}"
        );
    }
}

fn secrets_env(k: &str) -> Option<String> {
    match k {
        "OAUTH2_CLIENT_SECRET" => Some("client-secret".to_string()),
        "OAUTH2_COOKIE_SECRET" => Some(cookie_secret()),
        _ => None,
    }
}

#[test]
fn plugin_config_loads_with_the_filters_own_parser() {
    for set in SETS {
        let dir = set.dir;
        let wp = set.one("WasmPlugin");
        let names = host_env_names(&wp);
        assert_eq!(
            names,
            ["OAUTH2_CLIENT_SECRET", "OAUTH2_COOKIE_SECRET"],
            "{dir}/"
        );
        let cfg = parse_plugin_config(&wp, &secrets_env)
            .unwrap_or_else(|e| panic!("{dir}/ pluginConfig: {e}"));
        assert_eq!(cfg.client_secret, "client-secret", "{dir}/");
        assert!(
            cfg.cookie.secure,
            "{dir}/: cookies must be Secure in the Istio example"
        );
        // The secrets come only from the sidecar's environment: without it the filter refuses.
        let err = parse_plugin_config(&wp, &|_| None).expect_err("loads without its secrets");
        assert!(err.contains("_env"), "{dir}/: {err}");
    }
}

#[test]
fn github_plugin_config_calls_github_through_its_clusters() {
    let set = &SETS[1];
    let wp = set.one("WasmPlugin");
    let cfg = parse_plugin_config(&wp, &secrets_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.provider.kind, Kind::GitHub);
    let endpoints = cfg.provider.endpoints().expect("GitHub's endpoints");
    assert_eq!(
        endpoints.token_endpoint,
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(
        endpoints.authorization_endpoint,
        "https://github.com/login/oauth/authorize"
    );
    assert_eq!(
        cfg.provider
            .github()
            .map(|g| g.api.clone())
            .unwrap_or_default(),
        "https://api.github.com"
    );
    assert_eq!(
        cfg.cluster_for("github.com"),
        Some("outbound|443||github.com")
    );
    assert_eq!(
        cfg.cluster_for("api.github.com"),
        Some("outbound|443||api.github.com")
    );
    // Without a cluster for the API host the filter refuses the configuration at load.
    let mut no_api = wp.clone();
    no_api["spec"]["pluginConfig"]
        .as_object_mut()
        .unwrap()
        .remove("idp_clusters");
    let err = parse_plugin_config(&no_api, &secrets_env).expect_err("loads without idp_clusters");
    assert!(
        err.starts_with("validate_url:") && err.contains("api.github.com"),
        "{err}"
    );
}

/// `outbound|<port>||<host>`, the name Istio gives a ServiceEntry port's cluster.
fn outbound(cluster: &str) -> (String, u16) {
    let rest = cluster
        .strip_prefix("outbound|")
        .unwrap_or_else(|| panic!("{cluster} is not an outbound|<port>||<host> cluster"));
    let (port, host) = rest
        .split_once("||")
        .unwrap_or_else(|| panic!("{cluster} is not an outbound|<port>||<host> cluster"));
    (host.to_string(), port.parse().expect("port"))
}

/// The ServiceEntry and DestinationRule that make `outbound|<port>||<host>` a verified TLS
/// cluster for `host`; returns their names.
fn check_external_host(set: &Set, host: &str, port: u16) -> (String, String) {
    let dir = set.dir;
    let ses: Vec<Value> = set
        .all("ServiceEntry")
        .into_iter()
        .filter(|se| {
            se["spec"]["hosts"]
                .as_array()
                .is_some_and(|h| h.contains(&json!(host)))
        })
        .collect();
    assert_eq!(ses.len(), 1, "{dir}/: want one ServiceEntry for {host}");
    let se = &ses[0];
    assert_eq!(se["spec"]["hosts"], json!([host]), "{dir}/");
    assert_eq!(se["spec"]["location"], "MESH_EXTERNAL", "{dir}/ {host}");
    assert!(
        se["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["number"] == port),
        "{dir}/: the ServiceEntry for {host} has no port {port}"
    );
    let drs: Vec<Value> = set
        .all("DestinationRule")
        .into_iter()
        .filter(|dr| dr["spec"]["host"] == host)
        .collect();
    assert_eq!(drs.len(), 1, "{dir}/: want one DestinationRule for {host}");
    let tls = drs[0]["spec"]["trafficPolicy"]["portLevelSettings"]
        .as_array()
        .expect("portLevelSettings")
        .iter()
        .find(|p| p["port"]["number"] == port)
        .map(|p| p["tls"].clone())
        .unwrap_or_else(|| panic!("{dir}/: no TLS settings for {host}:{port}"));
    assert_eq!(tls["mode"], "SIMPLE", "{dir}/ {host}");
    assert_eq!(tls["sni"], host, "{dir}/ {host}");
    assert_eq!(tls["subjectAltNames"], json!([host]), "{dir}/ {host}");
    assert!(tls.get("insecureSkipVerify").is_none(), "{dir}/ {host}");
    let name = |d: &Value| d["metadata"]["name"].as_str().expect("name").to_string();
    (name(se), name(&drs[0]))
}

#[test]
fn the_pieces_name_each_other() {
    for set in SETS {
        pieces_name_each_other(set);
    }
}

fn pieces_name_each_other(set: &Set) {
    let dir = set.dir;
    let wp = set.one("WasmPlugin");
    let cfg_json = &wp["spec"]["pluginConfig"];
    let cfg = parse_plugin_config(&wp, &secrets_env).unwrap_or_else(|e| panic!("{dir}/: {e}"));
    let secret = set.one("Secret");
    let patch = set.deployment_patch();

    // Every cluster the plugin names is one Istio builds for a ServiceEntry,
    // outbound|<port>||<host>, and its DestinationRule makes it verify TLS for that host.
    let mut clusters = vec![cfg.idp_cluster.clone()];
    for (key, cluster) in &cfg.idp_clusters {
        let (host, port) = outbound(cluster);
        let (key_host, key_port) = match key.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().expect("port")),
            None => (key.as_str(), 443),
        };
        assert_eq!(
            (key_host, key_port),
            (host.as_str(), port),
            "{dir}/: idp_clusters sends {key} to {cluster}"
        );
        clusters.push(cluster.clone());
    }
    let mut used = Vec::new();
    for cluster in &clusters {
        let (host, port) = outbound(cluster);
        used.push(check_external_host(set, &host, port));
    }
    // ...and no ServiceEntry or DestinationRule of the set is there for nothing.
    let names = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = set
            .all(kind)
            .iter()
            .map(|d| d["metadata"]["name"].as_str().expect("name").to_string())
            .collect();
        v.sort();
        v
    };
    let mut used_se: Vec<String> = used.iter().map(|(se, _)| se.clone()).collect();
    let mut used_dr: Vec<String> = used.iter().map(|(_, dr)| dr.clone()).collect();
    used_se.sort();
    used_dr.sort();
    assert_eq!(names("ServiceEntry"), used_se, "{dir}/");
    assert_eq!(names("DestinationRule"), used_dr, "{dir}/");

    // Every URL the filter calls goes over HTTPS through the cluster for its own host.
    let mut urls = vec![cfg.issuer().to_string()];
    if let Some(e) = cfg.provider.endpoints() {
        urls.push(e.token_endpoint.clone());
    }
    if cfg.provider.kind == Kind::GitHub {
        urls.push(format!(
            "{}/user",
            cfg.provider
                .github()
                .map(|g| g.api.clone())
                .unwrap_or_default()
        ));
    }
    for u in &urls {
        let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{dir}/: {u}: {e}"));
        assert_eq!(parsed.scheme(), "https", "{dir}/: {u}");
        let host = parsed.host_str().expect("host");
        let port = parsed.port_or_known_default().expect("port");
        let authority = oidc::target(u).expect("target").authority;
        assert_eq!(
            cfg.cluster_for(&authority),
            Some(format!("outbound|{port}||{host}").as_str()),
            "{dir}/: {u} is not called through its host's cluster"
        );
    }

    // Every HOST env var the plugin reads is put on istio-proxy from a key of the Secret.
    let containers = patch["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "istio-proxy");
    let env = containers[0]["env"].as_array().expect("env");
    let secret_name = secret["metadata"]["name"].as_str().expect("secret name");
    assert_eq!(secret["metadata"]["namespace"], wp["metadata"]["namespace"]);
    for name in host_env_names(&wp) {
        let e = env
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{dir}/: the deployment patch does not set {name}"));
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret_name, "{dir}/: {name}");
        let key = r["key"].as_str().expect("key");
        assert!(
            secret["stringData"].get(key).is_some(),
            "{dir}/: the Secret has no key {key} for {name}"
        );
    }
    for kind in ["ServiceEntry", "DestinationRule"] {
        for doc in set.all(kind) {
            assert_eq!(
                doc["metadata"]["namespace"], wp["metadata"]["namespace"],
                "{dir}/: {kind}"
            );
        }
    }
    // The plugin's config reads exactly those variables.
    assert_eq!(
        cfg_json["client_secret_env"], "OAUTH2_CLIENT_SECRET",
        "{dir}/"
    );
    assert_eq!(
        cfg_json["cookie_secret_env"], "OAUTH2_COOKIE_SECRET",
        "{dir}/"
    );
    assert!(
        cfg_json.get("client_secret").is_none() && cfg_json.get("cookie_secret").is_none(),
        "{dir}/: secrets inline"
    );
}

#[test]
fn wasmplugin_pins_an_oci_image_by_digest() {
    let main = MAIN.one("WasmPlugin");
    for set in SETS {
        let dir = set.dir;
        let wp = set.one("WasmPlugin");
        let url = wp["spec"]["url"].as_str().expect("url");
        assert!(url.starts_with("oci://"), "{dir}/: {url}");
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            url.ends_with(&format!(":{version}")),
            "{dir}/: {url} should be tagged {version}"
        );
        let sha = wp["spec"]["sha256"].as_str().expect("sha256");
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(wp["spec"]["failStrategy"], "FAIL_CLOSE", "{dir}/");
        assert_eq!(wp["spec"]["phase"], "AUTHN", "{dir}/");
        // One image for every set (scripts/pin.py pins each of them).
        assert_eq!(wp["spec"]["url"], main["spec"]["url"], "{dir}/");
        assert_eq!(wp["spec"]["sha256"], main["spec"]["sha256"], "{dir}/");
    }
}
