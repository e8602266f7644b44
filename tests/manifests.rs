//! The Istio resources in `wasmplugin/`: every WasmPlugin validates against Istio's own CRD
//! schema (vendored in tests/fixtures/istio/), its `pluginConfig` loads with the filter's own
//! config parser, and the pieces around it (Secret, Deployment patch, ServiceEntry,
//! DestinationRule) name each other consistently, so an example cannot drift from the code.

mod openapi;

use std::path::PathBuf;

use serde_json::{json, Value};

use openapi::{yaml_docs, Crd};
use wasm_oauth2_proxy::config::Config;

const CRD: &str = "tests/fixtures/istio/wasmplugin-crd.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crd() -> Crd {
    Crd::from_yaml(&std::fs::read_to_string(root().join(CRD)).expect("read CRD"))
}

/// Every document of every YAML file in wasmplugin/, with its file name.
fn resources() -> Vec<(String, Value)> {
    let dir = root().join("wasmplugin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("wasmplugin/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(p).expect("read");
            yaml_docs(&text, &name)
                .into_iter()
                .map(move |d| (name.clone(), d))
        })
        .collect()
}

fn one(kind: &str) -> Value {
    let found: Vec<Value> = resources()
        .into_iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "want exactly one {kind} in wasmplugin/");
    found[0].clone()
}

/// The Deployment patch: the one document without a kind (a strategic-merge patch).
fn deployment_patch() -> Value {
    let (name, d) = resources()
        .into_iter()
        .find(|(_, d)| d.get("kind").is_none())
        .expect("a patch document");
    assert_eq!(name, "deployment-patch.yaml");
    d
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
    let mut plugins = 0;
    for (file, doc) in resources() {
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
            None => assert_eq!(file, "deployment-patch.yaml"),
            Some(other) => panic!("{file}: no check for kind {other}; add one"),
        }
    }
    assert_eq!(plugins, 1);
}

/// Breaks a WasmPlugin in one way.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn the_validator_rejects_what_the_apiserver_would() {
    let crd = crd();
    let good = one("WasmPlugin");
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

#[test]
fn plugin_config_loads_with_the_filters_own_parser() {
    let wp = one("WasmPlugin");
    let names = host_env_names(&wp);
    assert_eq!(names, ["OAUTH2_CLIENT_SECRET", "OAUTH2_COOKIE_SECRET"]);
    let env = |k: &str| match k {
        "OAUTH2_CLIENT_SECRET" => Some("client-secret".to_string()),
        "OAUTH2_COOKIE_SECRET" => Some(cookie_secret()),
        _ => None,
    };
    let cfg = parse_plugin_config(&wp, &env).unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    assert_eq!(cfg.client_secret, "client-secret");
    assert!(
        cfg.cookie.secure,
        "cookies must be Secure in the Istio example"
    );
    // The secrets come only from the sidecar's environment: without it the filter refuses.
    let err = parse_plugin_config(&wp, &|_| None).expect_err("loads without its secrets");
    assert!(err.contains("_env"), "{err}");
}

#[test]
fn the_pieces_name_each_other() {
    let wp = one("WasmPlugin");
    let cfg_json = &wp["spec"]["pluginConfig"];
    let se = one("ServiceEntry");
    let dr = one("DestinationRule");
    let secret = one("Secret");
    let patch = deployment_patch();

    // idp_cluster is the cluster Istio builds for the ServiceEntry: outbound|<port>||<host>.
    let host = se["spec"]["hosts"][0].as_str().expect("host");
    let port = se["spec"]["ports"][0]["number"].as_u64().expect("port");
    assert_eq!(cfg_json["idp_cluster"], format!("outbound|{port}||{host}"));
    let issuer = url::Url::parse(cfg_json["oidc_issuer_url"].as_str().expect("issuer")).unwrap();
    assert_eq!(issuer.scheme(), "https");
    assert_eq!(issuer.host_str(), Some(host));
    assert_eq!(issuer.port_or_known_default(), Some(port as u16));

    // ...and the DestinationRule makes that cluster verify TLS for the IdP's name.
    assert_eq!(dr["spec"]["host"], host);
    let tls = dr["spec"]["trafficPolicy"]["portLevelSettings"]
        .as_array()
        .expect("portLevelSettings")
        .iter()
        .find(|p| p["port"]["number"] == port)
        .map(|p| p["tls"].clone())
        .expect("TLS settings for the IdP port");
    assert_eq!(tls["mode"], "SIMPLE");
    assert_eq!(tls["sni"], host);
    assert_eq!(tls["subjectAltNames"], json!([host]));
    assert!(tls.get("insecureSkipVerify").is_none());

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
            .unwrap_or_else(|| panic!("deployment-patch.yaml does not set {name}"));
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret_name, "{name}");
        let key = r["key"].as_str().expect("key");
        assert!(
            secret["stringData"].get(key).is_some(),
            "secret.yaml has no key {key} for {name}"
        );
    }
    for doc in [&se, &dr] {
        assert_eq!(doc["metadata"]["namespace"], wp["metadata"]["namespace"]);
    }
    // The plugin's config reads exactly those variables.
    assert_eq!(cfg_json["client_secret_env"], "OAUTH2_CLIENT_SECRET");
    assert_eq!(cfg_json["cookie_secret_env"], "OAUTH2_COOKIE_SECRET");
    assert!(cfg_json.get("client_secret").is_none() && cfg_json.get("cookie_secret").is_none());
}

#[test]
fn wasmplugin_pins_an_oci_image_by_digest() {
    let wp = one("WasmPlugin");
    let url = wp["spec"]["url"].as_str().expect("url");
    assert!(url.starts_with("oci://"), "{url}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        url.ends_with(&format!(":{version}")),
        "{url} should be tagged {version}"
    );
    let sha = wp["spec"]["sha256"].as_str().expect("sha256");
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(wp["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(wp["spec"]["phase"], "AUTHN");
}
