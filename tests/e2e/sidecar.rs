//! The shipped Envoy configs, used as written: every file in `envoy/` passes
//! `envoy --mode validate` with the real filter, `envoy/sidecar.yaml` carries a real login
//! against the IdP over verified TLS, refuses an IdP whose certificate it cannot verify, and
//! `envoy/sidecar-remote.yaml` downloads the pinned `.wasm` and gates with it. The plugin
//! configuration inside each sidecar file loads with the filter's own parser and every host
//! it calls has a verified TLS cluster; `envoy/sidecar-github.yaml` differs from
//! `envoy/sidecar.yaml` only in its plugin configuration and its clusters for GitHub.
//!
//! Same environment as the e2e suite (WOP_ENVOY, WOP_WASM, WOP_ROOT; `just e2e`). The
//! sidecar files listen on fixed ports (4180, 8080, 9901), so these tests take turns.

use std::process::Command;
use std::time::Duration;

use crate::support::http::{format_hops, Browser};
use crate::support::proc::{free_port, TempDir};
use crate::support::sidecar::{fill, local_origin, take_ports, Sidecar, Site};
use crate::support::stack::{idp_login, render_template};
use crate::support::tls::{FileServer, TestCa};
use crate::support::Env;
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::providers::Kind;

/// The examples pin this build's digests (`scripts/pin.py --check`); the remote variant
/// cannot load anything else.
fn assert_pins(env: &Env) {
    let out = Command::new("python3")
        .arg(env.root.join("scripts/pin.py"))
        .arg("--check")
        .arg("--wasm")
        .arg(&env.wasm)
        .output()
        .expect("run scripts/pin.py");
    assert!(
        out.status.success(),
        "the examples pin another build:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn validate(env: &Env, yaml: &str, name: &str, dir: &TempDir) {
    // Envoy picks the parser by extension.
    let file = dir.path.join(format!("{}.yaml", name.replace('/', "_")));
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(&env.envoy)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&file)
        .env("OAUTH2_CLIENT_SECRET", "validate-secret")
        .env(
            "OAUTH2_COOKIE_SECRET",
            crate::support::random_cookie_secret(),
        )
        .output()
        .expect("run envoy --mode validate");
    assert!(
        out.status.success(),
        "envoy --mode validate rejected {name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Log in as john through the sidecar and check what the app received.
fn login_through(sc: &Sidecar) {
    let mut b = Browser::new();
    let start = format!("{}/headers", local_origin());
    let (resp, hops) = idp_login(&mut b, &start, &sc.idp_origin(), "john", "john")
        .unwrap_or_else(|e| panic!("{e}{}", sc.tails()));
    assert!(
        resp.status == 200 && resp.url == start,
        "login through the sidecar did not end at the app:\n{}\nfinal: {}{}",
        format_hops(&hops),
        resp.short(),
        sc.tails()
    );
    let seen = resp.json();
    let h = |n: &str| seen[n].as_str().unwrap_or_default().to_string();
    assert_eq!(h("x-auth-request-email"), "john@example.com", "{seen}");
    assert_eq!(h("x-forwarded-email"), "john@example.com", "{seen}");
    assert!(h("authorization").starts_with("Bearer "), "{seen}");
    // cookie_secure is on in the example: the session cookie must say so.
    let cb = hops
        .iter()
        .find(|hop| hop.url.contains("/oauth2/callback"))
        .unwrap_or_else(|| panic!("no callback hop:\n{}", format_hops(&hops)));
    assert!(
        cb.set_cookies
            .iter()
            .any(|c| c.starts_with("_oauth2_proxy=") && c.contains("; Secure")),
        "session cookie without Secure: {cb}"
    );
}

/// envoy/sidecar.yaml with the built filter, in front of the IdP over TLS; Envoy trusts the
/// IdP's CA only with `envoy_trusts_idp` (otherwise the file's own CA bundle stays).
fn local_sidecar(tag: &str, envoy_trusts_idp: bool) -> Sidecar {
    let env = Env::get();
    let dir = TempDir::new(tag);
    let ca = TestCa::new(&dir.path, "idp");
    ca.trust();
    let idp_port = free_port();
    let site = Site {
        wasm: Some(std::fs::canonicalize(&env.wasm).expect("wasm")),
        idp_port,
        wasm_port: None,
        ca: envoy_trusts_idp.then(|| ca.ca_pem.clone()),
    };
    let yaml = fill(&env.root, "envoy/sidecar.yaml", &site).unwrap_or_else(|e| panic!("{e}"));
    Sidecar::start(&env, dir, &ca, idp_port, &yaml)
}

/// The demo template rendered as `demo/run.py --github` renders it: demo/config-github.json
/// and one more cluster for the mock GitHub's API host (scripts/render_envoy.py --cluster).
fn render_github_demo(env: &Env, wasm: &std::path::Path, dir: &TempDir) -> String {
    let out = dir.path.join("local-github.yaml");
    let run = Command::new("python3")
        .arg(env.root.join("scripts/render_envoy.py"))
        .arg("--template")
        .arg(env.root.join("envoy/local.yaml.tmpl"))
        .arg("--out")
        .arg(&out)
        .args(["--cluster", "github_api=9001"])
        .args([
            "LISTEN_PORT=4180",
            "ADMIN_PORT=9901",
            "APP_PORT=8080",
            "IDP_PORT=9000",
        ])
        .arg(format!("WASM_PATH={}", wasm.display()))
        .arg(format!(
            "PLUGIN_CONFIG=@{}",
            env.root.join("demo/config-github.json").display()
        ))
        .output()
        .expect("run scripts/render_envoy.py");
    assert!(
        run.status.success(),
        "render_envoy.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(&out).expect("rendered")
}

#[test]
fn s01_every_envoy_config_validates() {
    let env = Env::get();
    let dir = TempDir::new("validate");
    let wasm = std::fs::canonicalize(&env.wasm).expect("wasm path");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(env.root.join("envoy")).expect("envoy/") {
        let name = format!(
            "envoy/{}",
            entry.expect("entry").file_name().to_string_lossy()
        );
        let text = std::fs::read_to_string(env.root.join(&name)).expect("read");
        let yaml = if name.ends_with(".tmpl") {
            let cfg = std::fs::read_to_string(env.root.join("demo/config.json")).expect("config");
            let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("demo/config.json");
            // The GitHub demo's rendering of the same template (`just demo-github`).
            let github = render_github_demo(&env, &wasm, &dir);
            validate(&env, &github, "envoy/local.yaml.tmpl (GitHub demo)", &dir);
            render_template(
                &text,
                &[
                    ("LISTEN_PORT", "4180".into()),
                    ("ADMIN_PORT", "9901".into()),
                    ("APP_PORT", "8080".into()),
                    ("IDP_PORT", "9000".into()),
                    ("WASM_PATH", wasm.display().to_string()),
                    ("PLUGIN_CONFIG", cfg.to_string().replace('\'', "''")),
                ],
            )
        } else if text.contains("filename: /etc/wasm-oauth2-proxy/") {
            // Validation loads the .wasm: put the real one where the example expects it.
            text.replace(
                crate::support::sidecar::WASM_PATH,
                &wasm.display().to_string(),
            )
        } else {
            text
        };
        validate(&env, &yaml, &name, &dir);
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "envoy/local.yaml.tmpl",
            "envoy/sidecar-github.yaml",
            "envoy/sidecar-remote.yaml",
            "envoy/sidecar.yaml"
        ],
        "a new file in envoy/ needs a place in these tests"
    );
}

/// The shipped sidecar files (every `envoy/sidecar*.yaml`).
fn sidecar_files(env: &Env) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(env.root.join("envoy"))
        .expect("envoy/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("sidecar") && n.ends_with(".yaml"))
        .map(|n| format!("envoy/{n}"))
        .collect();
    files.sort();
    files
}

/// The Envoy config of `file` as JSON.
fn envoy_json(env: &Env, file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(env.root.join(file)).expect("read");
    let mut docs = crate::openapi::yaml_docs(&text, file);
    assert_eq!(docs.len(), 1, "{file}: one YAML document");
    docs.remove(0)
}

/// The wasm filter's `config` in the one listener of a sidecar file.
fn wasm_filter_config(cfg: &serde_json::Value, file: &str) -> serde_json::Value {
    let listeners = cfg["static_resources"]["listeners"]
        .as_array()
        .expect("listeners");
    assert_eq!(listeners.len(), 1, "{file}");
    let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array().expect("http_filters");
    let wasm: Vec<&serde_json::Value> = filters
        .iter()
        .filter(|f| f["name"] == "envoy.filters.http.wasm")
        .collect();
    assert_eq!(wasm.len(), 1, "{file}: one wasm filter");
    wasm[0]["typed_config"]["config"].clone()
}

#[test]
fn s01b_sidecar_plugin_configs_load_and_call_their_hosts_over_verified_tls() {
    use base64::Engine;
    let env = Env::get();
    let files = sidecar_files(&env);
    assert_eq!(
        files,
        [
            "envoy/sidecar-github.yaml",
            "envoy/sidecar-remote.yaml",
            "envoy/sidecar.yaml"
        ]
    );
    let cookie = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    for file in &files {
        let cfg = envoy_json(&env, file);
        let wasm = wasm_filter_config(&cfg, file);
        assert_eq!(wasm["failure_policy"], "FAIL_CLOSED", "{file}");
        assert_eq!(
            wasm["vm_config"]["environment_variables"]["host_env_keys"],
            serde_json::json!(["OAUTH2_CLIENT_SECRET", "OAUTH2_COOKIE_SECRET"]),
            "{file}"
        );
        let json = wasm["configuration"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: configuration.value"));
        let secrets = |k: &str| match k {
            "OAUTH2_CLIENT_SECRET" => Some("client-secret".to_string()),
            "OAUTH2_COOKIE_SECRET" => Some(cookie.clone()),
            _ => None,
        };
        let plugin = Config::parse(json.as_bytes(), &secrets)
            .unwrap_or_else(|e| panic!("{file}: the plugin configuration is refused: {e}"));
        // Secrets only from Envoy's environment.
        let raw: serde_json::Value = serde_json::from_str(json).expect("json");
        assert!(
            raw.get("client_secret").is_none() && raw.get("cookie_secret").is_none(),
            "{file}: inline secret"
        );
        assert!(Config::parse(json.as_bytes(), &|_| None).is_err(), "{file}");
        assert!(plugin.cookie.secure, "{file}: cookies must be Secure");

        // Every URL the filter calls goes over HTTPS to a cluster for that very host, which
        // verifies the host's certificate (SNI, SAN, CA bundle).
        let mut urls = vec![plugin.issuer().to_string()];
        if let Some(e) = plugin.provider.endpoints() {
            urls.push(e.token_endpoint.clone());
        }
        if plugin.provider.kind == Kind::GitHub {
            urls.push(format!(
                "{}/user",
                plugin
                    .provider
                    .github()
                    .map(|g| g.api.clone())
                    .unwrap_or_default()
            ));
        }
        let clusters = cfg["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        let mut used = vec![plugin.idp_cluster.clone()];
        used.extend(plugin.idp_clusters.iter().map(|(_, c)| c.clone()));
        for u in &urls {
            let parsed = url::Url::parse(u).expect("url");
            assert_eq!(parsed.scheme(), "https", "{file}: {u}");
            let host = parsed.host_str().expect("host");
            let port = parsed.port_or_known_default().expect("port");
            let authority = wasm_oauth2_proxy::oidc::target(u)
                .expect("target")
                .authority;
            let name = plugin
                .cluster_for(&authority)
                .unwrap_or_else(|| panic!("{file}: no cluster for {u}"));
            let c = clusters
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("{file}: the plugin names cluster {name}, not defined"));
            let addr = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            assert_eq!(addr["address"], host, "{file}: cluster {name} for {u}");
            assert_eq!(addr["port_value"], port, "{file}: cluster {name} for {u}");
            let tls = &c["transport_socket"]["typed_config"];
            assert_eq!(tls["sni"], host, "{file}: cluster {name}");
            let v = &tls["common_tls_context"]["validation_context"];
            assert_eq!(
                v["trusted_ca"]["filename"],
                crate::support::sidecar::CA_BUNDLE,
                "{file}: cluster {name}"
            );
            assert_eq!(
                v["match_typed_subject_alt_names"],
                serde_json::json!([{"san_type": "DNS", "matcher": {"exact": host}}]),
                "{file}: cluster {name}"
            );
            used.retain(|c| c != name);
        }
        assert!(
            used.is_empty(),
            "{file}: clusters named but never called: {used:?}"
        );
    }
}

#[test]
fn s02_sidecar_login_with_the_idp_over_verified_tls() {
    let _ports = take_ports();
    let sc = local_sidecar("sidecar", true);

    // An API call without a session never reaches the app.
    let r = Browser::new().get_with(
        &format!("{}/headers", local_origin()),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 401, "{}{}", r.short(), sc.tails());

    login_through(&sc);
}

#[test]
fn s03_sidecar_refuses_an_idp_it_cannot_verify() {
    let _ports = take_ports();
    // The file's own CA bundle (the system's) does not know the test CA: the IdP's
    // certificate cannot be verified, so its metadata never loads and nobody gets in.
    let sc = local_sidecar("sidecar-badca", false);
    let mut b = Browser::new();
    let r = b.get(&format!("{}/", local_origin()));
    assert_eq!(
        r.status,
        503,
        "an unverifiable IdP must give 503: {}{}",
        r.short(),
        sc.tails()
    );
    assert!(
        !r.text().contains("Hello"),
        "the app answered: {}",
        r.text()
    );
    let stats = Browser::new()
        .get_with(
            &format!(
                "http://127.0.0.1:{}/stats?filter=idp.ssl",
                crate::support::sidecar::ADMIN_PORT
            ),
            &[("Accept", "text/plain")],
        )
        .text();
    let failed = stats
        .lines()
        .filter(|l| l.contains("cluster.idp.ssl.fail_verify"))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum::<u64>();
    assert!(
        failed > 0,
        "expected certificate verification failures on cluster idp:\n{stats}"
    );
}

#[test]
fn s04_remote_variant_downloads_the_pinned_wasm() {
    let _ports = take_ports();
    let env = Env::get();
    assert_pins(&env);
    let wasm = std::fs::read(&env.wasm).expect("read wasm");
    let (sc, files) = remote_sidecar("sidecar-remote", wasm, Duration::from_secs(90));
    let sc = sc.unwrap_or_else(|(sc, e)| panic!("envoy did not become ready: {e}{}", sc.tails()));
    assert!(
        files.fetched(),
        "Envoy did not fetch the .wasm: {:?}",
        files.hits.lock().map(|h| h.clone())
    );
    login_through(&sc);
}

#[test]
fn s04b_remote_variant_refuses_a_wasm_with_another_sha256() {
    let _ports = take_ports();
    let env = Env::get();
    // The real filter plus one custom section: a valid module that would run exactly as the
    // real one, but not the bytes the file pins.
    let mut wasm = std::fs::read(&env.wasm).expect("read wasm");
    wasm.extend_from_slice(&[0, 5, 4, b'e', b'v', b'i', b'l']);
    let (sc, files) = remote_sidecar("sidecar-remote-bad", wasm, Duration::from_secs(20));
    let (sc, ready) = match sc {
        Ok(sc) => (sc, true),
        Err((sc, _)) => (sc, false),
    };
    assert!(
        files.fetched(),
        "Envoy did not fetch the .wasm: {:?}",
        files.hits.lock().map(|h| h.clone())
    );
    // Fail closed: either the listener never comes up, or it answers without the app.
    if ready || crate::support::proc::tcp_open(crate::support::sidecar::LISTEN_PORT) {
        let r = Browser::new().get(&format!("{}/headers", local_origin()));
        assert!(
            r.status >= 500 && !r.text().contains("x-forwarded"),
            "a .wasm with the wrong sha256 must not serve: {}{}",
            r.short(),
            sc.tails()
        );
    }
    // Every download is refused (Envoy retries, then gives up on the plugin: its retries take
    // about 20 s, so the verdict may come just after the wait above).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sc.envoy.log_text().contains("failed to load") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let fetches = files.hits.lock().map(|h| h.len()).unwrap_or(0);
    assert!(
        fetches > 1 && sc.envoy.log_text().contains("failed to load"),
        "expected refused downloads ({fetches}) and a plugin that failed to load:{}",
        sc.tails()
    );
}

/// envoy/sidecar-remote.yaml downloading `wasm` from a local HTTPS server.
#[allow(clippy::type_complexity)]
fn remote_sidecar(
    tag: &str,
    wasm: Vec<u8>,
    wait: Duration,
) -> (Result<Sidecar, (Sidecar, String)>, FileServer) {
    let env = Env::get();
    let dir = TempDir::new(tag);
    let ca = TestCa::new(&dir.path, "servers");
    ca.trust();
    let files = FileServer::start(&ca, wasm);
    let idp_port = free_port();
    let site = Site {
        wasm: None,
        idp_port,
        wasm_port: Some(files.port),
        ca: Some(ca.ca_pem.clone()),
    };
    let yaml =
        fill(&env.root, "envoy/sidecar-remote.yaml", &site).unwrap_or_else(|e| panic!("{e}"));
    let (sc, ready) = Sidecar::start_within(&env, dir, &ca, idp_port, &yaml, wait);
    let sc = match ready {
        Ok(()) => Ok(sc),
        Err(e) => Err((sc, e)),
    };
    (sc, files)
}

#[test]
fn s05_remote_variant_differs_only_in_where_the_wasm_comes_from() {
    let env = Env::get();
    let read = |f: &str| std::fs::read_to_string(env.root.join(f)).expect("read");
    // Header comments aside, the remote file is the local one with the code source swapped
    // and one more cluster.
    let body = |t: &str| {
        let i = t.find("\nadmin:").expect("admin:");
        t[i..].to_string()
    };
    let local = body(&read("envoy/sidecar.yaml"));
    let remote = body(&read("envoy/sidecar-remote.yaml"));
    let local_code = "                    local:\n                      filename: /etc/wasm-oauth2-proxy/wasm_oauth2_proxy.wasm\n";
    let start = remote
        .find("                    remote:\n")
        .expect("remote:");
    let end = remote[start..]
        .find("                  environment_variables:")
        .expect("environment_variables after code")
        + start;
    let cluster = remote
        .find("\n  # Where Envoy downloads the filter from")
        .expect("wasm_source cluster");
    let swapped = format!(
        "{}{}{}\n",
        &remote[..start],
        local_code,
        &remote[end..cluster]
    );
    let first_difference = swapped
        .trim_end()
        .lines()
        .zip(local.trim_end().lines())
        .find(|(r, l)| r != l);
    assert!(
        first_difference.is_none() && swapped.trim_end().len() == local.trim_end().len(),
        "envoy/sidecar-remote.yaml drifted from envoy/sidecar.yaml at {first_difference:?}"
    );
    assert!(remote[cluster..].contains("name: wasm_source"));
}

#[test]
fn s05b_github_variant_differs_only_in_its_plugin_config_and_clusters() {
    let env = Env::get();
    let read = |f: &str| std::fs::read_to_string(env.root.join(f)).expect("read");
    // Header comments, the plugin's JSON and the clusters after `app` aside, the GitHub file is
    // the OIDC one: the same listener hardening, fail-closed filter and secrets from the env.
    let shape = |t: &str| {
        let t = &t[t.find("\nadmin:").expect("admin:")..];
        let json_start = t.find("value: |\n").expect("value: |") + "value: |\n".len();
        let json_end = t.find("                vm_config:").expect("vm_config");
        let app_end = t
            .find("port_value: 8080 }\n")
            .expect("the app cluster's address")
            + "port_value: 8080 }\n".len();
        format!("{}{}", &t[..json_start], &t[json_end..app_end])
    };
    let oidc = shape(&read("envoy/sidecar.yaml"));
    let github = shape(&read("envoy/sidecar-github.yaml"));
    let first_difference = github.lines().zip(oidc.lines()).find(|(g, o)| g != o);
    assert!(
        first_difference.is_none() && github.len() == oidc.len(),
        "envoy/sidecar-github.yaml drifted from envoy/sidecar.yaml at {first_difference:?}"
    );
    let cfg = envoy_json(&env, "envoy/sidecar-github.yaml");
    let names: Vec<&str> = cfg["static_resources"]["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["app", "github", "github_api"]);
}

#[test]
fn s06_examples_pin_this_build() {
    assert_pins(&Env::get());
}
