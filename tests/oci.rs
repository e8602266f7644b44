//! The OCI packaging end to end: `scripts/oci.py` builds the image layout from the optimized
//! filter and pushes it to a real registry (Debian's `docker-registry`, the CNCF
//! distribution server) on loopback; an independent client (`skopeo`) pulls both tags back
//! by digest, and the pulled manifests and blobs go through the same acceptance rules as
//! Istio's image fetcher (pkg/wasm/imagefetcher.go) before the extracted module is compared
//! with the built file.
//!
//! Needs WOP_WASM (the optimized .wasm) and WOP_ROOT (the repository); `just oci-test` sets
//! both. A missing registry, skopeo or .wasm fails the test: nothing here is skipped.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const MT_WASM_CONTENT: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const REPO: &str = "wasm-oauth2-proxy";
const VERSION: &str = env!("CARGO_PKG_VERSION");

// Test-only registry account; the bcrypt hash (cost 5) is of TEST_PASSWORD.
const TEST_USER: &str = "wop";
const TEST_PASSWORD: &str = "wop-oci-test";
const TEST_HTPASSWD: &str = "wop:$2b$05$Fj/tTWFwSwrGL7MQpUfGvewvynZwmornjLctR65ayUpVX8anYDVam";

struct Env {
    wasm: PathBuf,
    root: PathBuf,
    registry: PathBuf,
}

fn required(name: &str) -> PathBuf {
    let v = std::env::var_os(name).unwrap_or_else(|| {
        panic!("oci: {name} is not set; run `just oci-test` (it sets WOP_WASM and WOP_ROOT)")
    });
    let p = PathBuf::from(v);
    assert!(p.exists(), "oci: {name}={} does not exist", p.display());
    p
}

impl Env {
    fn get() -> Env {
        let registry = std::env::var_os("WOP_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
        assert!(
            registry.exists(),
            "oci: {} is missing (apt package docker-registry; `just setup` installs it)",
            registry.display()
        );
        Env {
            wasm: required("WOP_WASM"),
            root: required("WOP_ROOT"),
            registry,
        }
    }

    fn oci_py(&self) -> Command {
        let mut c = Command::new("python3");
        c.arg(self.root.join("scripts/oci.py"));
        c
    }
}

/// Scratch directory, removed on drop unless the test failed (then kept for its logs).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "wop-oci-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("oci: keeping {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A docker-registry on 127.0.0.1 with filesystem storage; killed when dropped, so also
/// when an assertion fails.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(env: &Env, dir: &Path, htpasswd: Option<&str>) -> Registry {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            l.local_addr().expect("local addr").port()
        };
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).expect("create storage dir");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: wop-oci-test-secret\n",
            storage.display()
        );
        if let Some(entries) = htpasswd {
            let file = dir.join("htpasswd");
            std::fs::write(&file, format!("{entries}\n")).expect("write htpasswd");
            config += &format!(
                "auth:\n  htpasswd:\n    realm: wop-test\n    path: {}\n",
                file.display()
            );
        }
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).expect("create registry log");
        let child = Command::new(&env.registry)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("oci: cannot start {}: {e}", env.registry.display()));
        let mut reg = Registry { child, port, log };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = http_status(self.port, "/v2/") {
                // 401 is the auth-enabled registry answering.
                if status == 200 || status == 401 {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("oci: docker-registry exited ({st}):\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "oci: docker-registry not ready after 30s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn repo(&self) -> String {
        format!("127.0.0.1:{}/{REPO}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn output(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("oci: cannot run {what} ({cmd:?}): {e}"))
}

/// Runs `cmd`, fails the test unless it exits 0, returns its stdout.
fn run(cmd: Command, what: &str) -> String {
    let out = output(cmd, what);
    assert!(
        out.status.success(),
        "oci: {what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

/// The layout `oci.py build` writes for the filter, in a scratch dir.
fn build_layout(env: &Env, dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let mut c = env.oci_py();
    c.arg("build")
        .arg("--wasm")
        .arg(&env.wasm)
        .arg("--out")
        .arg(&layout);
    run(c, "oci.py build");
    layout
}

fn expected_digest(env: &Env, tag: &str) -> String {
    let mut c = env.oci_py();
    c.args(["digest", "--tag", tag])
        .arg("--wasm")
        .arg(&env.wasm);
    let hex = run(c, "oci.py digest").trim().to_string();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "oci: digest --tag {tag} printed {hex:?}, not a sha256 hex"
    );
    hex
}

/// An image pulled by skopeo into a `dir:` directory: the manifest exactly as served, and
/// blobs by digest.
struct Pulled {
    dir: PathBuf,
    manifest: Value,
}

impl Pulled {
    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let data = std::fs::read(self.dir.join(hex))
            .unwrap_or_else(|e| panic!("oci: blob {digest} not pulled: {e}"));
        assert_eq!(
            sha256_hex(&data),
            hex,
            "oci: pulled blob {digest} is corrupt"
        );
        data
    }

    fn layers(&self) -> &Vec<Value> {
        self.manifest["layers"].as_array().expect("layers array")
    }
}

fn pull_by_digest(repo: &str, hex: &str, into: &Path, creds: Option<&str>) -> Pulled {
    let src = format!("docker://{repo}@sha256:{hex}");
    let mut inspect = vec!["inspect", "--raw", "--tls-verify=false"];
    let mut copy = vec!["copy", "--quiet", "--src-tls-verify=false"];
    if let Some(c) = creds {
        inspect.extend(["--creds", c]);
        copy.extend(["--src-creds", c]);
    }
    inspect.push(&src);
    let raw = run(skopeo(&inspect), "skopeo inspect --raw").into_bytes();
    assert_eq!(
        sha256_hex(&raw),
        hex,
        "oci: registry served another manifest"
    );

    let dest = format!("dir:{}", into.display());
    copy.extend([src.as_str(), dest.as_str()]);
    run(skopeo(&copy), "skopeo copy");
    let manifest_raw = std::fs::read(into.join("manifest.json")).expect("pulled manifest.json");
    assert_eq!(
        sha256_hex(&manifest_raw),
        hex,
        "oci: skopeo rewrote the manifest"
    );
    let manifest = serde_json::from_slice(&manifest_raw).expect("manifest is JSON");
    Pulled {
        dir: into.to_path_buf(),
        manifest,
    }
}

/// The first tar entry named `plugin.wasm` (by base name) in a tar+gzip layer, as Istio's
/// extractWasmPluginBinary picks it; extraction by GNU tar, independent of oci.py.
fn plugin_from_tar_gz(layer: &[u8], scratch: &Path) -> Result<Vec<u8>, String> {
    std::fs::create_dir_all(scratch).expect("create extraction dir");
    let archive = scratch.join("layer.tar.gz");
    std::fs::write(&archive, layer).expect("write layer");
    let mut list = Command::new("tar");
    list.arg("-tzf").arg(&archive);
    let out = output(list, "tar -tzf");
    if !out.status.success() {
        return Err(format!(
            "layer is not a tar.gz: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    let entry = names
        .lines()
        .find(|n| Path::new(n).file_name().is_some_and(|f| f == "plugin.wasm"))
        .ok_or_else(|| format!("no plugin.wasm in the layer (entries: {names:?})"))?;
    let into = scratch.join("untar");
    std::fs::create_dir_all(&into).expect("create untar dir");
    let mut x = Command::new("tar");
    x.arg("-xzf").arg(&archive).arg("-C").arg(&into).arg(entry);
    run(x, "tar -xzf");
    std::fs::read(into.join(entry)).map_err(|e| format!("read extracted {entry}: {e}"))
}

/// Istio's ImageFetcher decision, step by step: Docker schema 2 manifests are a different
/// path; otherwise the "compat" variant (last layer tar+gzip holding plugin.wasm), and
/// failing that the "oci" variant (exactly two layers, one of them the raw module).
fn istio_extract(p: &Pulled, scratch: &Path) -> Result<Vec<u8>, String> {
    let mt = p.manifest["mediaType"].as_str().unwrap_or("");
    if mt == MT_DOCKER_MANIFEST {
        return Err("a Docker schema 2 manifest, not OCI".into());
    }
    let layers = p.layers();
    let compat = match layers.last() {
        None => Err("number of layers must be greater than zero".to_string()),
        Some(last) if last["mediaType"] != MT_TAR_GZIP => Err(format!(
            "invalid media type {} (expect {MT_TAR_GZIP})",
            last["mediaType"]
        )),
        Some(last) => plugin_from_tar_gz(&p.blob(last["digest"].as_str().unwrap()), scratch),
    };
    let compat_err = match compat {
        Ok(wasm) => return Ok(wasm),
        Err(e) => e,
    };
    if layers.len() != 2 {
        return Err(format!(
            "compat: {compat_err}; oci: number of layers must be 2 but got {}",
            layers.len()
        ));
    }
    layers
        .iter()
        .find(|l| l["mediaType"] == MT_WASM_CONTENT)
        .map(|l| p.blob(l["digest"].as_str().unwrap()))
        .ok_or_else(|| format!("compat: {compat_err}; oci: no {MT_WASM_CONTENT} layer"))
}

fn layer_types(p: &Pulled) -> Vec<&str> {
    p.layers()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap_or(""))
        .collect()
}

/// `url:` and `sha256:` lines that `oci.py push` prints for `tag`.
fn wasmplugin_lines(push_out: &str, repo: &str, tag: &str) -> String {
    let url = format!("url: oci://{repo}:{tag}");
    let mut lines = push_out.lines().map(str::trim);
    lines
        .find(|l| *l == url)
        .unwrap_or_else(|| panic!("oci: push printed no `{url}`:\n{push_out}"));
    let sha = lines
        .next()
        .and_then(|l| l.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("oci: no `sha256:` line after `{url}`:\n{push_out}"));
    sha.to_string()
}

#[test]
fn push_then_pull_by_digest_yields_the_built_filter_in_both_istio_variants() {
    let env = Env::get();
    let built = std::fs::read(&env.wasm).expect("read WOP_WASM");
    assert_eq!(&built[..4], b"\0asm", "oci: WOP_WASM is not a wasm module");
    let built_sha = sha256_hex(&built);

    let scratch = Scratch::new("push");
    let registry = Registry::start(&env, &scratch.0.join("registry"), None);
    let layout = build_layout(&env, &scratch.0);
    let repo = registry.repo();

    let mut push = env.oci_py();
    push.args(["push", "--registry", &repo])
        .arg("--layout")
        .arg(&layout);
    let out = run(push, "oci.py push");

    let wasm_tag = format!("{VERSION}-wasm");
    for (tag, name) in [(VERSION, "compat"), (wasm_tag.as_str(), "oci-variant")] {
        let hex = wasmplugin_lines(&out, &repo, tag);
        assert_eq!(
            hex,
            expected_digest(&env, tag),
            "oci: pushed {tag} digest differs from `oci.py digest`"
        );

        let by_tag = run(
            skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{repo}:{tag}"),
            ]),
            "skopeo inspect by tag",
        );
        assert_eq!(
            sha256_hex(by_tag.as_bytes()),
            hex,
            "oci: tag {tag} points elsewhere"
        );

        let pulled = pull_by_digest(&repo, &hex, &scratch.0.join(name), None);
        assert_eq!(pulled.manifest["mediaType"], MT_MANIFEST);
        assert_eq!(pulled.manifest["schemaVersion"], 2);
        let types = layer_types(&pulled);
        if tag == VERSION {
            // One layer: also what Istio releases before "last layer" support accept.
            assert_eq!(types, [MT_TAR_GZIP], "oci: compat image layers");
            assert_eq!(
                pulled.manifest["annotations"]["module.wasm.image/variant"],
                "compat"
            );
        } else {
            assert_eq!(
                types,
                [MT_WASM_CONFIG, MT_WASM_CONTENT],
                "oci: oci-variant layers"
            );
            let config: Value = serde_json::from_slice(
                &pulled.blob(pulled.layers()[0]["digest"].as_str().unwrap()),
            )
            .expect("runtime config is JSON");
            assert_eq!(config["type"], "envoy_proxy");
            let abis = config["abiVersions"].as_array().expect("abiVersions");
            assert!(
                abis.iter().any(|a| a
                    .as_str()
                    .is_some_and(|s| s.starts_with("proxy_abi_version_0_2_"))),
                "oci: runtime config ABIs {abis:?}"
            );
        }
        // The config blob must be fetchable: go-containerregistry reads it to list layers.
        pulled.blob(pulled.manifest["config"]["digest"].as_str().unwrap());

        let extracted = istio_extract(&pulled, &scratch.0.join(format!("{name}-x")))
            .unwrap_or_else(|e| panic!("oci: Istio would reject {tag}: {e}"));
        assert_eq!(
            &extracted[..4],
            b"\0asm",
            "oci: {tag} module has no wasm magic"
        );
        assert_eq!(
            sha256_hex(&extracted),
            built_sha,
            "oci: {tag} module differs"
        );
    }
}

#[test]
fn layout_is_byte_reproducible_and_matches_digest() {
    let env = Env::get();
    let scratch = Scratch::new("repro");
    let a = build_layout(&env, &scratch.0.join("a"));
    let b = build_layout(&env, &scratch.0.join("b"));
    let files = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read layout dir") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&p).expect("read layout file")));
                }
            }
        }
        out.sort();
        out
    };
    let (fa, fb) = (files(&a), files(&b));
    // oci-layout, index.json, 2 manifests, 2 configs, runtime config, layer, module.
    assert_eq!(
        fa.len(),
        9,
        "oci: unexpected layout files {:?}",
        fa.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(fa == fb, "oci: two builds of the layout differ");

    let index: Value =
        serde_json::from_slice(&std::fs::read(a.join("index.json")).unwrap()).unwrap();
    let refs: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("index manifests")
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                m["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let wasm_tag = format!("{VERSION}-wasm");
    for tag in [VERSION, wasm_tag.as_str()] {
        let digest = format!("sha256:{}", expected_digest(&env, tag));
        assert!(
            refs.contains(&(tag.to_string(), digest.clone())),
            "oci: index.json {refs:?} lacks {tag} -> {digest}"
        );
    }
}

#[test]
fn push_answers_the_registry_auth_challenge_with_oci_credentials() {
    let env = Env::get();
    let built_sha = sha256_hex(&std::fs::read(&env.wasm).expect("read WOP_WASM"));
    let scratch = Scratch::new("auth");
    let registry = Registry::start(&env, &scratch.0.join("registry"), Some(TEST_HTPASSWD));
    let layout = build_layout(&env, &scratch.0);
    let repo = registry.repo();
    let push = |creds: Option<(&str, &str)>| {
        let mut c = env.oci_py();
        c.args(["push", "--registry", &repo, "--tag", VERSION])
            .arg("--layout")
            .arg(&layout)
            .env_remove("OCI_USERNAME")
            .env_remove("OCI_PASSWORD");
        if let Some((u, p)) = creds {
            c.env("OCI_USERNAME", u).env("OCI_PASSWORD", p);
        }
        c
    };

    let anonymous = output(push(None), "oci.py push without credentials");
    assert!(
        !anonymous.status.success(),
        "oci: anonymous push was accepted"
    );
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("OCI_USERNAME"),
        "oci: anonymous push failed without naming the credentials:\n{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let wrong = output(
        push(Some((TEST_USER, "not-it"))),
        "oci.py push, wrong password",
    );
    assert!(
        !wrong.status.success(),
        "oci: push with a wrong password was accepted"
    );

    let out = run(
        push(Some((TEST_USER, TEST_PASSWORD))),
        "oci.py push with credentials",
    );
    let hex = wasmplugin_lines(&out, &repo, VERSION);

    // The registry really is closed: skopeo without credentials is refused.
    let denied = output(
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repo}@sha256:{hex}"),
        ]),
        "skopeo inspect without credentials",
    );
    assert!(!denied.status.success(), "oci: registry served anonymously");

    let creds = format!("{TEST_USER}:{TEST_PASSWORD}");
    let pulled = pull_by_digest(&repo, &hex, &scratch.0.join("pulled"), Some(&creds));
    let extracted = istio_extract(&pulled, &scratch.0.join("x"))
        .unwrap_or_else(|e| panic!("oci: Istio would reject the image: {e}"));
    assert_eq!(sha256_hex(&extracted), built_sha);
}
