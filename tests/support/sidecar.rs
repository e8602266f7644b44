//! The shipped sidecar configs (`envoy/sidecar*.yaml`), started as written: only the site
//! values each file lists in its header are replaced, each by exact text, and a value that is
//! no longer in the file fails the test instead of being silently skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::http::raw_request;
use super::proc::{tcp_open, wait_until, Proc, TempDir};
use super::tls::{TestCa, SERVER_NAME};
use super::Env;

/// The ports envoy/sidecar.yaml uses as written: listener, app, admin.
pub const LISTEN_PORT: u16 = 4180;
pub const APP_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9901;
pub const CLIENT_ID: &str = "oauth2-demo";
pub const WASM_PATH: &str = "/etc/wasm-oauth2-proxy/wasm_oauth2_proxy.wasm";
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const APP_ORIGIN: &str = "https://app.example.com";

/// The fixed ports allow one sidecar at a time, whichever module runs it.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold while a sidecar runs.
pub fn take_ports() -> std::sync::MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the test puts what the example names.
pub struct Site {
    pub wasm: Option<PathBuf>,
    pub idp_port: u16,
    pub wasm_port: Option<u16>,
    /// `None` keeps the file's CA bundle (the system's), which does not know the test CA.
    pub ca: Option<PathBuf>,
}

/// The app's origin as the test browser reaches the sidecar.
pub fn local_origin() -> String {
    format!("http://127.0.0.1:{LISTEN_PORT}")
}

/// A `(from, to)` replacement that must match at least once.
fn replace_all(text: &str, from: &str, to: &str, file: &str) -> Result<String, String> {
    if !text.contains(from) {
        return Err(format!("{file}: site value {from:?} is not in the file"));
    }
    Ok(text.replace(from, to))
}

/// Point one `<host>:443` service of the example (cluster address, URLs, SNI and certificate
/// name) at the test's TLS server on 127.0.0.1:`port` (certificate for `localhost`).
fn host_to_local(text: &str, host: &str, port: u16, file: &str) -> Result<String, String> {
    let t = replace_all(
        text,
        &format!("address: {host}, port_value: 443 }}"),
        &format!("address: {SERVER_NAME}, port_value: {port} }}"),
        file,
    )?;
    let t = replace_all(
        &t,
        &format!("https://{host}"),
        &format!("https://{SERVER_NAME}:{port}"),
        file,
    )?;
    replace_all(&t, host, SERVER_NAME, file)
}

/// The file's text with the site values replaced.
pub fn fill(root: &Path, file: &str, site: &Site) -> Result<String, String> {
    let path = root.join(file);
    let mut t = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(w) = &site.wasm {
        t = replace_all(&t, WASM_PATH, &w.display().to_string(), file)?;
    }
    if let Some(p) = site.wasm_port {
        t = host_to_local(&t, "wasm.example.com", p, file)?;
    }
    t = host_to_local(&t, "idp.example.com", site.idp_port, file)?;
    if let Some(ca) = &site.ca {
        t = replace_all(&t, CA_BUNDLE, &ca.display().to_string(), file)?;
    }
    replace_all(&t, APP_ORIGIN, &local_origin(), file)
}

/// The real IdP over TLS, the demo app on :8080 and Envoy running one of the sidecar files.
pub struct Sidecar {
    // Drop order: Envoy first.
    pub envoy: Proc,
    pub app: Proc,
    pub idp: Proc,
    pub idp_port: u16,
    pub client_secret: String,
    pub dir: TempDir,
}

impl Sidecar {
    pub fn issuer(idp_port: u16) -> String {
        format!("https://{SERVER_NAME}:{idp_port}")
    }
    pub fn idp_origin(&self) -> String {
        format!("{SERVER_NAME}:{}", self.idp_port)
    }

    /// Fail early and clearly when something else holds the example's fixed ports.
    pub fn ports_free() {
        for p in [LISTEN_PORT, APP_PORT, ADMIN_PORT] {
            assert!(
                !tcp_open(p),
                "port {p} is in use (envoy/sidecar.yaml listens on {LISTEN_PORT}, its app on \
                 {APP_PORT}, its admin on {ADMIN_PORT}); stop `just demo` or whatever holds it"
            );
        }
    }

    /// Start IdP (TLS, certificate from `ca`) and app; then Envoy with `yaml` (already
    /// filled), and wait until it is ready.
    pub fn start(env: &Env, dir: TempDir, ca: &TestCa, idp_port: u16, yaml: &str) -> Sidecar {
        let (sc, ready) = Self::start_within(env, dir, ca, idp_port, yaml, Duration::from_secs(90));
        if let Err(e) = ready {
            panic!("envoy did not become ready: {e}{}", sc.tails());
        }
        sc
    }

    /// Like `start`, but gives Envoy only `wait` and reports whether it became ready.
    pub fn start_within(
        env: &Env,
        dir: TempDir,
        ca: &TestCa,
        idp_port: u16,
        yaml: &str,
        wait: Duration,
    ) -> (Sidecar, Result<(), String>) {
        Self::start_at(env, dir, ca, idp_port, idp_port, yaml, wait, &[])
    }

    /// Like `start`, with the IdP listening on `idp_listen` while its issuer (and so
    /// everything that calls it) names `idp_port`, where something in front of it (a
    /// `TlsFront`) listens; `idp_env` goes to the IdP's environment.
    pub fn start_behind(
        env: &Env,
        dir: TempDir,
        ca: &TestCa,
        idp_port: u16,
        idp_listen: u16,
        yaml: &str,
        idp_env: &[(&str, &str)],
    ) -> Sidecar {
        let (sc, ready) = Self::start_at(
            env,
            dir,
            ca,
            idp_port,
            idp_listen,
            yaml,
            Duration::from_secs(90),
            idp_env,
        );
        if let Err(e) = ready {
            panic!("envoy did not become ready: {e}{}", sc.tails());
        }
        sc
    }

    #[allow(clippy::too_many_arguments)]
    fn start_at(
        env: &Env,
        dir: TempDir,
        ca: &TestCa,
        idp_port: u16,
        idp_listen: u16,
        yaml: &str,
        wait: Duration,
        idp_env: &[(&str, &str)],
    ) -> (Sidecar, Result<(), String>) {
        Self::ports_free();
        let client_secret = format!("secret-{}", super::random_token(12));
        let mut idp_cmd = Command::new("node");
        idp_cmd
            .arg(env.root.join("idp/server.js"))
            .current_dir(env.root.join("idp"))
            .env("IDP_PORT", idp_listen.to_string())
            .env("IDP_ISSUER", Self::issuer(idp_port))
            .env("IDP_CLIENT_ID", CLIENT_ID)
            .env("IDP_CLIENT_SECRET", &client_secret)
            .env(
                "IDP_REDIRECT_URIS",
                format!("{}/oauth2/callback", local_origin()),
            )
            .env("IDP_TLS_CERT", &ca.cert_pem)
            .env("IDP_TLS_KEY", &ca.key_pem)
            .envs(idp_env.iter().copied());
        let mut idp = Proc::spawn("idp", idp_cmd, &dir.path);
        let disco = format!(
            "{}/.well-known/openid-configuration",
            Self::issuer(idp_listen)
        );
        wait_until("the TLS IdP", Duration::from_secs(40), &mut idp, || {
            raw_request("GET", &disco, &[], None, Duration::from_secs(2))
                .map(|r| r.status == 200)
                .unwrap_or(false)
        })
        .unwrap_or_else(|e| panic!("IdP did not start: {e}\n{}", idp.tail(40)));

        let mut app_cmd = Command::new("node");
        app_cmd
            .arg(env.root.join("demo/app.js"))
            .current_dir(env.root.join("demo"))
            .env("APP_PORT", APP_PORT.to_string());
        let mut app = Proc::spawn("app", app_cmd, &dir.path);
        wait_until("the app", Duration::from_secs(20), &mut app, || {
            tcp_open(APP_PORT)
        })
        .unwrap_or_else(|e| panic!("app did not start: {e}\n{}", app.tail(40)));

        let (envoy, ready) = start_envoy(env, &dir, yaml, &client_secret, wait);
        let sc = Sidecar {
            envoy,
            app,
            idp,
            idp_port,
            client_secret,
            dir,
        };
        (sc, ready)
    }

    pub fn tails(&self) -> String {
        [&self.envoy, &self.idp, &self.app]
            .iter()
            .map(|p| format!("\n----- {} -----\n{}", p.name, p.tail(40)))
            .collect()
    }
}

/// Envoy with a filled sidecar file and the two secrets in its environment; waits up to
/// `wait` for admin `/ready` and the listener.
pub fn start_envoy(
    env: &Env,
    dir: &TempDir,
    yaml: &str,
    client_secret: &str,
    wait: Duration,
) -> (Proc, Result<(), String>) {
    let file = dir.path.join("sidecar.yaml");
    std::fs::write(&file, yaml).expect("write sidecar.yaml");
    let mut cmd = Command::new(&env.envoy);
    cmd.arg("-c")
        .arg(&file)
        .args(["--concurrency", "2", "--log-level", "warn"])
        .args(["--component-log-level", "wasm:info"])
        .arg("--use-dynamic-base-id")
        .env("OAUTH2_CLIENT_SECRET", client_secret)
        .env("OAUTH2_COOKIE_SECRET", super::random_cookie_secret());
    let mut envoy = Proc::spawn("envoy", cmd, &dir.path);
    let ready = format!("http://127.0.0.1:{ADMIN_PORT}/ready");
    let ready = wait_until("envoy /ready and :4180", wait, &mut envoy, || {
        raw_request("GET", &ready, &[], None, Duration::from_secs(2))
            .map(|r| r.status == 200)
            .unwrap_or(false)
            && tcp_open(LISTEN_PORT)
    });
    (envoy, ready)
}
