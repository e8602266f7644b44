//! One IdP (real oidc-provider or the misbehaving Rust OP) + one upstream app + one Envoy
//! running the filter, all on 127.0.0.1 with fresh ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::html;
use super::http::{format_hops, raw_request, Browser, Hop, Response};
use super::proc::{free_port, free_ports, tcp_open, wait_until, Proc, TempDir};
use super::upstream::Recorder;
use super::Env;

pub const CLIENT_ID: &str = "wop-e2e";

/// Which OpenID Provider the stack talks to.
#[derive(Clone)]
pub enum Idp {
    /// `node idp/server.js` (panva/oidc-provider).
    Node,
    /// Something already listening on this port (the Rust `bad_op`).
    External { port: u16 },
    /// `node idp/server.js` on a port of its own, whose issuer is
    /// `http://127.0.0.1:<front>`: whatever listens on `front` (a `FaultProxy`) stands
    /// between it and everyone else (Envoy's `idp` cluster and the browser).
    NodeBehind { front: u16 },
}

/// Which upstream app sits behind Envoy.
#[derive(Clone)]
pub enum App {
    /// `node demo/app.js`.
    Node,
    /// The Rust `Recorder` (records every request it receives).
    Recorder,
    /// A server the test runs itself, already listening on 127.0.0.1:`port` (bind it before
    /// building the stack, so the stack's free ports can never be its port).
    External { port: u16 },
}

#[derive(Clone)]
pub struct StackBuilder {
    idp: Idp,
    app: App,
    overrides: Map<String, Value>,
    client_secret: String,
    cookie_secret: String,
    secrets_via_env: bool,
    idp_env: Vec<(String, String)>,
    envoy_defaults: bool,
    extra_clusters: Vec<(String, u16)>,
    app_h2: bool,
    concurrency: usize,
    dynamic_listener: bool,
}

pub struct Stack {
    // Drop order matters: Envoy first, then the rest.
    pub envoy: Option<Proc>,
    pub app: Option<Proc>,
    pub recorder: Option<Recorder>,
    pub idp: Option<Proc>,
    pub env: Env,
    pub listen_port: u16,
    pub admin_port: u16,
    pub app_port: u16,
    pub idp_port: u16,
    pub client_id: String,
    pub client_secret: String,
    pub cookie_secret: String,
    pub plugin_config: Value,
    pub envoy_yaml: PathBuf,
    pub dir: TempDir,
    /// See [`StackBuilder::envoy_defaults`].
    pub envoy_defaults: bool,
    /// Extra plain-HTTP clusters on 127.0.0.1: (name, port).
    pub extra_clusters: Vec<(String, u16)>,
    /// See [`StackBuilder::app_h2`].
    pub app_h2: bool,
    /// Envoy's worker threads (`--concurrency`).
    pub concurrency: usize,
    /// See [`StackBuilder::dynamic_listener`].
    pub dynamic_listener: bool,
    /// Where the Node IdP itself listens when a proxy stands in front of it
    /// ([`Idp::NodeBehind`]); `None` when `idp_port` is the IdP's own port.
    pub idp_direct_port: Option<u16>,
    /// Envoy's hot-restart epoch (`--restart-epoch`) of the running process.
    pub epoch: u32,
    /// Earlier epochs' processes, draining after a hot restart (reaped on drop).
    pub retired: Vec<Proc>,
}

/// The lines of `envoy/local.yaml.tmpl` that harden Envoy in front of the filter
/// (path normalization, underscore headers refused). `envoy_defaults()` removes them, each
/// by exact text, so a test shows what the filter holds on its own.
const HARDENING_LINES: &[&str] = &[
    "          normalize_path: true\n",
    "          merge_slashes: true\n",
    "          path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT\n",
    "          common_http_protocol_options:\n",
    "            headers_with_underscores_action: REJECT_REQUEST\n",
];

impl StackBuilder {
    /// Plugin config override; `Value::Null` removes a default key.
    pub fn plugin(mut self, key: &str, v: Value) -> Self {
        self.overrides.insert(key.to_string(), v);
        self
    }
    pub fn idp(mut self, idp: Idp) -> Self {
        self.idp = idp;
        self
    }
    pub fn app(mut self, app: App) -> Self {
        self.app = app;
        self
    }
    pub fn client_secret(mut self, s: &str) -> Self {
        self.client_secret = s.to_string();
        self
    }
    pub fn cookie_secret(mut self, s: &str) -> Self {
        self.cookie_secret = s.to_string();
        self
    }
    /// Pass the secrets inline in the plugin JSON instead of `*_env`.
    /// Extra environment for `idp/server.js` (e.g. IDP_ID_TOKEN_ALG=ES256).
    pub fn idp_env(mut self, k: &str, v: &str) -> Self {
        self.idp_env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn inline_secrets(mut self) -> Self {
        self.secrets_via_env = false;
        self
    }
    /// Run Envoy with its own defaults instead of the template's hardening: no
    /// `normalize_path`, no `merge_slashes`, escaped slashes kept, headers with underscores
    /// allowed (as Istio's sidecars run). The filter must hold on its own.
    pub fn envoy_defaults(mut self) -> Self {
        self.envoy_defaults = true;
        self
    }
    /// Envoy speaks HTTP/2 (h2c) to the app, as a gRPC app needs.
    pub fn app_h2(mut self) -> Self {
        self.app_h2 = true;
        self
    }
    /// One more plain-HTTP cluster `name` to 127.0.0.1:`port` (e.g. an extra JWT issuer
    /// named in the plugin's `idp_clusters`).
    pub fn extra_cluster(mut self, name: &str, port: u16) -> Self {
        self.extra_clusters.push((name.to_string(), port));
        self
    }
    /// Envoy's worker threads (`--concurrency`); the default is `$WOP_ENVOY_CONCURRENCY`,
    /// or 2 (`just e2e-workers` runs the session modules again with 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// The listener comes from a file (`dynamic_resources.lds_config` with
    /// `path_config_source` and a `watched_directory`), so a test can update it while Envoy
    /// runs ([`Stack::update_listener`]) as a control plane or an operator would.
    pub fn dynamic_listener(mut self) -> Self {
        self.dynamic_listener = true;
        self
    }

    /// Start everything and wait until Envoy is ready. Panics (with log tails) on failure.
    /// Ports are picked free before Envoy binds them; when another socket took one in between,
    /// the whole stack starts again on new ports.
    pub fn start(self) -> Stack {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut st = self.clone().start_no_envoy();
            match st.start_envoy() {
                Ok(()) => return st,
                Err(_) if attempt < ATTEMPTS && st.lost_a_port() => {
                    eprintln!("stack: a port was taken before Envoy bound it; starting again");
                    attempt += 1;
                }
                Err(e) => st.fail(&format!("envoy did not become ready: {e}")),
            }
        }
    }

    /// Spawn the Node IdP on `st.idp_port` and wait for its discovery document. On failure
    /// the process is killed and the error says what it was doing.
    fn start_idp(&self, st: &mut Stack) -> Result<(), String> {
        let listen = st.idp_direct_port.unwrap_or(st.idp_port);
        let mut cmd = Command::new("node");
        cmd.arg(st.env.root.join("idp/server.js"))
            .current_dir(st.env.root.join("idp"))
            .env("IDP_PORT", listen.to_string())
            .env("IDP_ISSUER", st.issuer())
            .env("IDP_CLIENT_ID", &st.client_id)
            .env("IDP_CLIENT_SECRET", &st.client_secret)
            .env("IDP_REDIRECT_URIS", st.redirect_url())
            .envs(self.idp_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut p = Proc::spawn("idp", cmd, &st.dir.path);
        let disco = format!("http://127.0.0.1:{listen}/.well-known/openid-configuration");
        let r = wait_until(
            "the IdP's discovery document",
            Duration::from_secs(45),
            &mut p,
            || {
                raw_request("GET", &disco, &[], None, Duration::from_secs(2))
                    .map(|r| r.status == 200)
                    .unwrap_or(false)
            },
        );
        match r {
            Ok(()) => {
                st.idp = Some(p);
                Ok(())
            }
            Err(e) => {
                let doing = p.what_it_is_doing();
                let log = p.tail(20);
                p.kill();
                Err(format!("{e}; {doing}; its log: {log}"))
            }
        }
    }

    /// Start IdP + app, render the Envoy config, but don't run Envoy.
    pub fn start_no_envoy(self) -> Stack {
        let env = Env::get();
        let dir = TempDir::new("stack");
        // The Recorder binds its port first: ports picked after it can never be its port
        // (free_ports releases what it found, and the OS could hand one to the Recorder).
        let recorder = matches!(self.app, App::Recorder).then(Recorder::start);
        let ports = free_ports(4);
        let (listen_port, admin_port, app_port) = (ports[0], ports[1], ports[2]);
        let (idp_port, idp_direct_port) = match self.idp {
            Idp::Node => (ports[3], None),
            Idp::External { port } => (port, None),
            Idp::NodeBehind { front } => (front, Some(ports[3])),
        };
        let mut st = Stack {
            envoy: None,
            app: None,
            recorder: None,
            idp: None,
            env,
            listen_port,
            admin_port,
            app_port,
            idp_port,
            client_id: CLIENT_ID.to_string(),
            client_secret: self.client_secret.clone(),
            cookie_secret: self.cookie_secret.clone(),
            plugin_config: Value::Null,
            envoy_yaml: PathBuf::new(),
            dir,
            envoy_defaults: self.envoy_defaults,
            extra_clusters: self.extra_clusters.clone(),
            app_h2: self.app_h2,
            concurrency: self.concurrency,
            dynamic_listener: self.dynamic_listener,
            idp_direct_port,
            epoch: 0,
            retired: Vec::new(),
        };

        if let Idp::Node | Idp::NodeBehind { .. } = self.idp {
            // A Node IdP starts in about 0.4 s; one once sat 40 s without listening on a
            // loaded CI machine. Such a start is retried once on a fresh port, with what the
            // stuck process was doing kept for the failure message.
            const ATTEMPTS: usize = 2;
            let mut stuck = Vec::new();
            for attempt in 1..=ATTEMPTS {
                match self.start_idp(&mut st) {
                    Ok(()) => break,
                    Err(e) if attempt < ATTEMPTS => {
                        eprintln!("stack: the IdP did not start ({e}); starting it again");
                        stuck.push(e);
                        let taken = [st.listen_port, st.admin_port, st.app_port, st.idp_port];
                        let fresh = std::iter::repeat_with(free_port)
                            .find(|p| !taken.contains(p))
                            .unwrap_or(st.idp_port);
                        match st.idp_direct_port.as_mut() {
                            Some(direct) => *direct = fresh,
                            None => st.idp_port = fresh,
                        }
                    }
                    Err(e) => {
                        stuck.push(e);
                        st.fail(&format!("IdP did not start: {}", stuck.join("; then ")))
                    }
                }
            }
        }

        match self.app {
            App::Node => {
                let mut cmd = Command::new("node");
                // demo/app.js raises Node's header limit itself, as the demo needs it too.
                cmd.arg(st.env.root.join("demo/app.js"))
                    .current_dir(st.env.root.join("demo"))
                    .env("APP_PORT", app_port.to_string());
                let mut p = Proc::spawn("app", cmd, &st.dir.path);
                let r = wait_until("the app's port", Duration::from_secs(20), &mut p, || {
                    tcp_open(app_port)
                });
                st.app = Some(p);
                if let Err(e) = r {
                    st.fail(&format!("app did not start: {e}"));
                }
            }
            App::Recorder => {
                if let Some(rec) = recorder {
                    st.app_port = rec.port();
                    st.recorder = Some(rec);
                }
            }
            App::External { port } => st.app_port = port,
        }

        // Plugin configuration.
        let mut cfg = json!({
            "provider": "oidc",
            "oidc_issuer_url": st.issuer(),
            "idp_cluster": "idp",
            "client_id": st.client_id,
            "redirect_url": st.redirect_url(),
            "email_domains": ["*"],
            "cookie_secure": false,
            "set_xauthrequest": true,
            "pass_access_token": true,
            "pass_authorization_header": true,
        });
        let obj = cfg.as_object_mut().expect("object");
        if self.secrets_via_env {
            obj.insert("client_secret_env".into(), json!("OAUTH2_CLIENT_SECRET"));
            obj.insert("cookie_secret_env".into(), json!("OAUTH2_COOKIE_SECRET"));
        } else {
            obj.insert("client_secret".into(), json!(st.client_secret));
            obj.insert("cookie_secret".into(), json!(st.cookie_secret));
        }
        for (k, v) in self.overrides {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
        st.plugin_config = cfg;
        st.envoy_yaml = st.dir.path.join("envoy.yaml");
        st.write_envoy_config();
        st
    }
}

/// Render `envoy/local.yaml.tmpl` (same substitutions as scripts/render_envoy.py).
pub fn render_template(tmpl: &str, subs: &[(&str, String)]) -> String {
    let mut out = tmpl.to_string();
    for (k, v) in subs {
        out = out.replace(&format!("@{k}@"), v);
    }
    out
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            idp: Idp::Node,
            app: App::Node,
            overrides: Map::new(),
            client_secret: format!("secret-{}", super::random_token(12)),
            cookie_secret: super::random_cookie_secret(),
            secrets_via_env: true,
            idp_env: Vec::new(),
            envoy_defaults: false,
            extra_clusters: Vec::new(),
            app_h2: false,
            concurrency: std::env::var("WOP_ENVOY_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            dynamic_listener: false,
        }
    }

    /// The IdP's own base URL for the suite's test endpoints (`/test/counters`): straight
    /// to the Node process, even while a proxy in front of it is down.
    pub fn idp_direct(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.idp_direct_port.unwrap_or(self.idp_port)
        )
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.idp_port)
    }
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen_port)
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }
    /// `127.0.0.1:<listen>` — the browser jar key for Envoy.
    pub fn origin(&self) -> String {
        format!("127.0.0.1:{}", self.listen_port)
    }
    pub fn idp_origin(&self) -> String {
        format!("127.0.0.1:{}", self.idp_port)
    }
    pub fn redirect_url(&self) -> String {
        format!("http://127.0.0.1:{}/oauth2/callback", self.listen_port)
    }

    pub fn render_envoy_yaml(&self) -> String {
        let tmpl_path = self.env.root.join("envoy/local.yaml.tmpl");
        let tmpl = std::fs::read_to_string(&tmpl_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", tmpl_path.display()));
        let q = |s: String| s.replace('\'', "''");
        let wasm = std::fs::canonicalize(&self.env.wasm).unwrap_or(self.env.wasm.clone());
        let mut yaml = render_template(
            &tmpl,
            &[
                ("LISTEN_PORT", self.listen_port.to_string()),
                ("ADMIN_PORT", self.admin_port.to_string()),
                ("APP_PORT", self.app_port.to_string()),
                ("IDP_PORT", self.idp_port.to_string()),
                ("WASM_PATH", q(wasm.display().to_string())),
                (
                    "PLUGIN_CONFIG",
                    q(serde_json::to_string(&self.plugin_config).expect("json")),
                ),
            ],
        );
        if self.envoy_defaults {
            for line in HARDENING_LINES {
                assert!(
                    yaml.contains(line),
                    "envoy/local.yaml.tmpl no longer has {line:?}: update HARDENING_LINES"
                );
                yaml = yaml.replacen(line, "", 1);
            }
        }
        if self.app_h2 {
            let app = "  - name: app\n    type: STATIC\n    connect_timeout: 2s\n";
            assert!(
                yaml.contains(app),
                "envoy/local.yaml.tmpl: the app cluster changed"
            );
            yaml = yaml.replacen(
                app,
                &format!(
                    "{app}    typed_extension_protocol_options:\n      \
                     envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
                     \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
                     explicit_http_config:\n          http2_protocol_options: {{}}\n"
                ),
                1,
            );
        }
        // The template ends with the clusters list.
        for (name, port) in &self.extra_clusters {
            yaml.push_str(&format!(
                "  - name: {name}\n    type: STATIC\n    connect_timeout: 2s\n    \
                 load_assignment:\n      cluster_name: {name}\n      endpoints:\n      \
                 - lb_endpoints:\n        - endpoint:\n            address:\n              \
                 socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
            ));
        }
        yaml
    }

    /// Spawns Envoy and waits until it either exits (`Some(Err(status))`, e.g. a refused
    /// plugin configuration) or serves (`Some(Ok(()))`); `None` when neither happens in time.
    pub fn spawn_envoy_and_wait(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<(), std::process::ExitStatus>> {
        self.spawn_envoy();
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.envoy.as_mut().and_then(|p| p.exited()) {
                return Some(Err(status));
            }
            if self.envoy_ready() && super::proc::tcp_open(self.listen_port) {
                return Some(Ok(()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Spawn Envoy (without waiting).
    pub fn spawn_envoy(&mut self) {
        self.envoy = Some(self.envoy_command(None));
    }

    /// Envoy at epoch 0 (a fresh base id, written to `base-id` for a later hot restart),
    /// or, with `Some(base_id)`, the next epoch of a running one.
    fn envoy_command(&self, hot_restart_of: Option<u64>) -> Proc {
        let mut cmd = Command::new(&self.env.envoy);
        cmd.arg("-c")
            .arg(&self.envoy_yaml)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // Envoy's defaults (600 s to drain, 900 s before the parent of a hot restart
            // is told to go) would keep a test's old process around for its whole run.
            .args(["--drain-time-s", "2", "--parent-shutdown-time-s", "4"])
            .env("OAUTH2_CLIENT_SECRET", &self.client_secret)
            .env("OAUTH2_COOKIE_SECRET", &self.cookie_secret);
        match hot_restart_of {
            None => {
                cmd.arg("--use-dynamic-base-id")
                    .arg("--base-id-path")
                    .arg(self.dir.path.join("base-id"));
            }
            Some(base_id) => {
                cmd.args(["--base-id", &base_id.to_string()])
                    .args(["--restart-epoch", &self.epoch.to_string()]);
            }
        }
        let name = match self.epoch {
            0 => "envoy".to_string(),
            n => format!("envoy-epoch{n}"),
        };
        Proc::spawn(&name, cmd, &self.dir.path)
    }

    /// Hot restart (`--restart-epoch`): a new Envoy process with the same config, secrets
    /// and base id takes the listening sockets over from the running one, which drains
    /// and exits. Returns once the new epoch serves.
    pub fn hot_restart(&mut self) {
        let base_id: u64 = std::fs::read_to_string(self.dir.path.join("base-id"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| self.fail("no base-id file from the running Envoy"));
        self.epoch += 1;
        let next = self.envoy_command(Some(base_id));
        if let Some(old) = self.envoy.replace(next) {
            self.retired.push(old);
        }
        let epoch = u64::from(self.epoch);
        let admin = self.admin_port;
        let mut p = self.envoy.take().expect("envoy");
        let r = wait_until(
            "the new epoch's admin to answer",
            Duration::from_secs(60),
            &mut p,
            || {
                raw_request(
                    "GET",
                    &format!("http://127.0.0.1:{admin}/server_info"),
                    &[],
                    None,
                    Duration::from_secs(2),
                )
                .map(|r| {
                    let v = r.json();
                    let at = &v["command_line_options"]["restart_epoch"];
                    v["state"] == "LIVE"
                        && (at.as_u64() == Some(epoch) || at == &json!(epoch.to_string()))
                })
                .unwrap_or(false)
            },
        );
        self.envoy = Some(p);
        if let Err(e) = r {
            self.fail(&format!("hot restart to epoch {}: {e}", self.epoch));
        }
    }

    /// Whether every earlier epoch's process has exited.
    pub fn retired_gone(&mut self) -> bool {
        self.retired.iter_mut().all(|p| p.exited().is_some())
    }

    /// The Envoy config files for the current plugin configuration: one bootstrap, or with
    /// [`StackBuilder::dynamic_listener`] a bootstrap without the listener plus `lds/lds.yaml`.
    fn write_envoy_config(&self) {
        let yaml = self.render_envoy_yaml();
        if !self.dynamic_listener {
            std::fs::write(&self.envoy_yaml, yaml).expect("write envoy.yaml");
            return;
        }
        let (bootstrap, listener) = split_listener(&yaml, &self.lds_dir());
        std::fs::create_dir_all(self.lds_dir()).expect("create lds dir");
        std::fs::write(&self.envoy_yaml, bootstrap).expect("write envoy.yaml");
        std::fs::write(self.lds_dir().join("lds.yaml"), listener).expect("write lds.yaml");
    }

    fn lds_dir(&self) -> PathBuf {
        self.dir.path.join("lds")
    }

    /// Hands Envoy a new listener carrying `plugin_config` (the file moved into the
    /// watched directory in one rename, as configuration management does) and waits for
    /// its verdict: `true` when Envoy took the update, `false` when it refused it (then the
    /// old listener keeps serving). `self.plugin_config` follows only an accepted update.
    pub fn update_listener(&mut self, plugin_config: Value) -> bool {
        assert!(
            self.dynamic_listener,
            "update_listener needs StackBuilder::dynamic_listener"
        );
        let before = self.stat("listener_manager.lds.update_attempt");
        let accepted_before = self.stat("listener_manager.lds.update_success");
        let old = std::mem::replace(&mut self.plugin_config, plugin_config);
        let (_, listener) = split_listener(&self.render_envoy_yaml(), &self.lds_dir());
        let tmp = self.lds_dir().join(".lds.yaml.next");
        std::fs::write(&tmp, listener).expect("write the next lds.yaml");
        std::fs::rename(&tmp, self.lds_dir().join("lds.yaml")).expect("move lds.yaml in");
        let start = std::time::Instant::now();
        while self.stat("listener_manager.lds.update_attempt") == before {
            if start.elapsed() > Duration::from_secs(30) {
                self.fail("Envoy never looked at the new listener file");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let accepted = self.stat("listener_manager.lds.update_success") > accepted_before;
        if !accepted {
            self.plugin_config = old;
        }
        accepted
    }

    /// Envoy's admin `/stats` lines whose name matches the regex `filter`, as name → value
    /// text (histograms keep their summary text).
    pub fn stats(&self, filter: &str) -> std::collections::BTreeMap<String, String> {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let url = format!("http://127.0.0.1:{}/stats?filter={q}", self.admin_port);
        let r = raw_request("GET", &url, &[], None, Duration::from_secs(5))
            .unwrap_or_else(|e| self.fail(&format!("GET {url}: {e}")));
        r.text()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    /// Envoy's own account of the Wasm VMs (admin `/stats`).
    pub fn vm_stats(&self) -> VmStats {
        let all = self.stats(r"^wasm\.");
        let n = |k: &str| all.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        VmStats {
            created: n("wasm.envoy.wasm.runtime.v8.created"),
            active: n("wasm.envoy.wasm.runtime.v8.active"),
            // `wasm.<vm_id>.vm_reload{,_success,_failure,_backoff}`: Envoy restarting a VM
            // that failed (failure_policy FAIL_RELOAD; with FAIL_CLOSED a failed VM stays
            // failed and every request gets a 503).
            reloads: all
                .iter()
                .filter(|(k, _)| k.contains(".vm_reload"))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum(),
        }
    }

    /// The filter never took its Wasm VM down: Envoy reloaded none, runs as many VMs as at
    /// `baseline`, and logged no VM failure (a trap, a panic). With [`Configs::Same`] it
    /// created none since either; with [`Configs::Updated`] it was handed new plugin
    /// configurations (it builds a VM for each) and refused exactly `refused` of them, which
    /// it logs as a failure to configure the plugin — and nothing else.
    pub fn assert_vm_never_restarted(&self, baseline: VmStats, configs: Configs, ctx: &str) {
        let now = self.vm_stats();
        self.check(
            now.reloads == 0
                && now.active == baseline.active
                && (configs != Configs::Same || now.created == baseline.created),
            || format!("{ctx}: Envoy's Wasm VMs changed: {baseline:?} then {now:?}"),
        );
        let log = self.envoy_log();
        let failures: Vec<&str> = log
            .lines()
            .filter(|l| VM_FAILURE_LINES.iter().any(|needle| l.contains(needle)))
            .collect();
        let refusals = failures
            .iter()
            .filter(|l| l.contains(CONFIG_REFUSED))
            .count();
        let refused = match configs {
            Configs::Same => 0,
            Configs::Updated { refused } => refused,
        };
        self.check(
            refusals == refused && failures.len() == refused,
            || format!("{ctx}: Envoy logged Wasm VM failures (want {refused} refused configurations): {failures:#?}"),
        );
    }

    /// One counter or gauge of Envoy's admin `/stats` (0 when Envoy does not have it).
    pub fn stat(&self, name: &str) -> u64 {
        let exact = format!("^{}$", regex_lite::escape(name));
        self.stats(&exact)
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Envoy admin `/ready` == 200.
    pub fn envoy_ready(&self) -> bool {
        raw_request(
            "GET",
            &format!("http://127.0.0.1:{}/ready", self.admin_port),
            &[],
            None,
            Duration::from_secs(2),
        )
        .map(|r| r.status == 200)
        .unwrap_or(false)
    }

    /// Spawn Envoy and wait for admin /ready and the listener.
    pub fn start_envoy(&mut self) -> Result<(), String> {
        self.spawn_envoy();
        let admin = self.admin_port;
        let listen = self.listen_port;
        let mut p = self.envoy.take().expect("envoy");
        let r = wait_until(
            "envoy admin /ready == 200",
            Duration::from_secs(90),
            &mut p,
            || {
                raw_request(
                    "GET",
                    &format!("http://127.0.0.1:{admin}/ready"),
                    &[],
                    None,
                    Duration::from_secs(2),
                )
                .map(|r| r.status == 200)
                .unwrap_or(false)
                    && tcp_open(listen)
            },
        );
        self.envoy = Some(p);
        r
    }

    /// Restart Envoy with the same ports and config (e.g. after changing the config file),
    /// waiting a moment and trying again while another socket holds one of its ports.
    pub fn restart_envoy(&mut self) {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            if let Some(mut p) = self.envoy.take() {
                p.kill();
            }
            self.write_envoy_config();
            match self.start_envoy() {
                Ok(()) => return,
                Err(_) if attempt < ATTEMPTS && self.lost_a_port() => {
                    eprintln!("stack: Envoy's port is taken; restarting it again");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => self.fail(&format!("envoy restart failed: {e}")),
            }
        }
    }

    /// Envoy could not bind a port it was given.
    fn lost_a_port(&self) -> bool {
        self.envoy_log().contains("Address already in use")
    }

    /// Connections each Envoy worker has accepted on the public listener so far (Envoy's
    /// `listener.<address>.worker_<n>.downstream_cx_total`), by worker number.
    pub fn worker_connections(&self) -> Vec<u64> {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=worker_.*downstream_cx_total",
            self.admin_port
        );
        let r = raw_request("GET", &url, &[], None, Duration::from_secs(5))
            .unwrap_or_else(|e| self.fail(&format!("GET {url}: {e}")));
        let prefix = format!("listener.127.0.0.1_{}.worker_", self.listen_port);
        let mut counts: Vec<(usize, u64)> = r
            .text()
            .lines()
            .filter_map(|l| {
                let (worker, n) = l
                    .strip_prefix(&prefix)?
                    .split_once(".downstream_cx_total:")?;
                Some((worker.parse().ok()?, n.trim().parse().ok()?))
            })
            .collect();
        counts.sort_unstable();
        counts.into_iter().map(|(_, n)| n).collect()
    }

    pub fn envoy_log(&self) -> String {
        self.envoy
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default()
    }

    /// Tails of every child's log.
    pub fn tails(&self) -> String {
        let mut s = String::new();
        for p in [&self.envoy, &self.idp, &self.app].into_iter().flatten() {
            s.push_str(&format!(
                "\n----- {} log ({}) -----\n{}\n",
                p.name,
                p.log.display(),
                p.tail(40)
            ));
        }
        if let Some(r) = &self.recorder {
            let reqs = r.requests();
            s.push_str(&format!(
                "\n----- recorder: {} request(s) -----\n",
                reqs.len()
            ));
            for q in reqs.iter().rev().take(10) {
                s.push_str(&format!("{} {}\n", q.method, q.target));
            }
        }
        s
    }

    /// Panic with a message and every child's log tail.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.tails())
    }

    /// assert with log tails.
    pub fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.fail(&msg());
        }
    }

    // ------------------------------------------------------------------ browser flows

    /// Drive the real IdP's login (and consent, if shown) pages, starting from `start_url`,
    /// until the browser leaves the IdP. Returns the final response and all hops.
    pub fn login(
        &self,
        b: &mut Browser,
        start_url: &str,
        user: &str,
        pass: &str,
    ) -> (Response, Vec<Hop>) {
        idp_login(b, start_url, &self.idp_origin(), user, pass).unwrap_or_else(|e| self.fail(&e))
    }

    /// Log in through `/` (or `start_path`) and assert we end at the app with 200.
    pub fn login_ok(&self, b: &mut Browser, start_path: &str, user: &str) -> (Response, Vec<Hop>) {
        let (resp, hops) = self.login(b, &self.url(start_path), user, user);
        self.check(
            resp.status == 200 && resp.url.starts_with(&self.base()),
            || {
                format!(
                "login as {user} via {start_path} did not end at the app with 200:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
            },
        );
        self.check(
            b.cookies(&self.origin())
                .iter()
                .any(|c| c.name.starts_with("_oauth2_proxy") && !c.name.ends_with("_csrf")),
            || {
                format!(
                    "login as {user}: no session cookie in the jar:\n{}",
                    format_hops(&hops)
                )
            },
        );
        (resp, hops)
    }

    /// Forget the IdP's own session (so the next login shows the login form again).
    pub fn forget_idp_session(&self, b: &mut Browser) {
        let o = self.idp_origin();
        b.jar.retain(|c| c.origin != o);
    }
}

/// Drive the real IdP's login (and consent, if shown) pages at `idp_origin`, starting from
/// `start_url`, until the browser leaves the IdP. Returns the final response and all hops.
pub fn idp_login(
    b: &mut Browser,
    start_url: &str,
    idp_origin: &str,
    user: &str,
    pass: &str,
) -> Result<(Response, Vec<Hop>), String> {
    let (mut resp, mut hops) = b.follow_get(start_url);
    for _ in 0..6 {
        let u = url::Url::parse(&resp.url).map_err(|e| format!("bad url {}: {e}", resp.url))?;
        if super::http::origin_of(&u) != idp_origin || resp.is_redirect() {
            break;
        }
        let page = resp.text();
        let forms = html::forms(&page);
        let form = forms
            .iter()
            .find(|f| f.has_password())
            .or_else(|| forms.iter().find(|f| f.action.ends_with("/confirm")))
            .cloned();
        let Some(form) = form else { break };
        if form.has_password() && resp.status == 401 {
            return Err(format!(
                "IdP rejected the credentials for {user}:\n{}\n{}",
                format_hops(&hops),
                resp.short()
            ));
        }
        let mut fields = form.fields();
        if form.has_password() {
            for (k, v) in fields.iter_mut() {
                match k.as_str() {
                    "login" | "username" | "email" | "user" => *v = user.to_string(),
                    "password" => *v = pass.to_string(),
                    _ => {}
                }
            }
        }
        let action = u
            .join(&form.action)
            .map_err(|e| format!("form action {}: {e}", form.action))?
            .to_string();
        let (r, h) = b.submit_form(&action, &fields);
        resp = r;
        hops.extend(h);
    }
    Ok((resp, hops))
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e stack logs (dir {}):{}",
                self.dir.path.display(),
                self.tails()
            );
            eprintln!("plugin config: {}", self.plugin_config);
        }
        if let Some(mut p) = self.envoy.take() {
            p.kill();
        }
        for p in self.retired.iter_mut() {
            p.kill();
        }
    }
}

/// What Envoy reports about the Wasm VMs ([`Stack::vm_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmStats {
    /// `wasm.envoy.wasm.runtime.v8.created`: VMs created since start (one per worker, one
    /// on the main thread, one Envoy creates to check the plugin, and one more for each
    /// new plugin configuration).
    pub created: u64,
    /// `wasm.envoy.wasm.runtime.v8.active`: VMs alive now.
    pub active: u64,
    /// The sum of `wasm.<vm_id>.vm_reload*`.
    pub reloads: u64,
}

/// What a test did to the plugin's configuration, for [`Stack::assert_vm_never_restarted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Configs {
    /// Nothing: Envoy runs the configuration it started with.
    Same,
    /// New plugin configurations were handed to Envoy, `refused` of them bad.
    Updated { refused: usize },
}

/// How Envoy logs a plugin configuration the filter refused (its VM for the new
/// configuration is marked failed and dropped; the running ones are untouched).
const CONFIG_REFUSED: &str = "Failed to configure base Wasm plugin";

/// What Envoy logs when a Wasm VM fails: a trap (an `unreachable`, which a Rust panic
/// becomes), a panic message, a VM marked failed.
const VM_FAILURE_LINES: &[&str] = &[
    "panicked at",
    "Uncaught",
    "RuntimeError",
    "Wasm VM failed",
    "wasm trap",
];

/// `yaml` (a rendered `envoy/local.yaml.tmpl`) as a bootstrap whose listener comes from
/// `lds_dir/lds.yaml`, and that file's text (the listener as an LDS resource).
fn split_listener(yaml: &str, lds_dir: &std::path::Path) -> (String, String) {
    let (head, rest) = yaml
        .split_once("  listeners:\n")
        .expect("envoy/local.yaml.tmpl: no `  listeners:` under static_resources");
    let (listener, clusters) = rest
        .split_once("\n  clusters:")
        .expect("envoy/local.yaml.tmpl: the clusters no longer follow the listeners");
    // The listener is the list item `  - name: main` with its body two spaces further in;
    // as the one resource of the file it moves two spaces out and gains its type.
    let mut lines: Vec<String> = listener
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string())
        .collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("- name: main"),
        "envoy/local.yaml.tmpl: the listener changed"
    );
    lines[0] =
        "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: main".into();
    let lds = format!("resources:\n{}\n", lines.join("\n"));
    let dir = lds_dir.display();
    let bootstrap = format!(
        "{head}  clusters:{clusters}\n\
         # The listener is read from a file, and read again whenever a file is moved into\n\
         # its directory (Envoy's filesystem subscription; LDS needs a node id).\n\
         node: {{ id: wop-e2e, cluster: wop-e2e }}\n\
         dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    \
         path_config_source:\n      path: '{dir}/lds.yaml'\n      \
         watched_directory: {{ path: '{dir}' }}\n"
    );
    (bootstrap, lds)
}
