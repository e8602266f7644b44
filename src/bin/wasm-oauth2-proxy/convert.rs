//! `convert`: read the deployment, map it, check the result with the filter's own parser,
//! write the files, print the report.

use std::path::{Path, PathBuf};

use crate::mapping::{self, SecretSource};
use crate::sources::{self, flags, Input};
use crate::{check, envoy, istio};

struct Args {
    configs: Vec<String>,
    flags: Vec<String>,
    env: bool,
    envoy: bool,
    out: Option<PathBuf>,
    namespace: Option<String>,
    image: String,
    wasm_path: String,
    admin_port: u16,
    ca_bundle: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        configs: Vec::new(),
        flags: Vec::new(),
        env: false,
        envoy: false,
        out: None,
        namespace: None,
        image: "registry.example.com/wasm-oauth2-proxy".into(),
        wasm_path: "/etc/wasm-oauth2-proxy/wasm_oauth2_proxy.wasm".into(),
        admin_port: 9901,
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--" => {
                a.flags = it.by_ref().cloned().collect();
            }
            "--config" => a.configs.push(value("--config")?),
            "--out" => a.out = Some(PathBuf::from(value("--out")?)),
            "--env" => a.env = true,
            "--envoy" => a.envoy = true,
            "--namespace" => a.namespace = Some(value("--namespace")?),
            "--image" => a.image = value("--image")?,
            "--wasm-path" => a.wasm_path = value("--wasm-path")?,
            "--ca-bundle" => a.ca_bundle = value("--ca-bundle")?,
            "--envoy-admin-port" => {
                a.admin_port = value("--envoy-admin-port")?
                    .parse()
                    .map_err(|_| "--envoy-admin-port takes a port number".to_string())?
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if a.configs.is_empty() && a.flags.is_empty() && !a.env {
        return Err("nothing to convert: give --config FILE, --env, or flags after --".into());
    }
    Ok(a)
}

pub fn main(args: &[String]) -> u8 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprint!("convert: {e}\n{}", crate::USAGE);
            return 2;
        }
    };
    let Some(out) = a.out.clone() else {
        eprint!("convert: --out DIR is required\n{}", crate::USAGE);
        return 2;
    };
    let mut input = Input::default();
    for c in a.configs.iter().filter(|c| *c != "-") {
        if let Err(e) = sources::read_file(Path::new(c), &mut input) {
            eprintln!("convert: {e}");
            return 2;
        }
    }
    if a.env {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        crate::settings::from_env(&vars, &mut input.settings, " (environment)");
    }
    let meta = flags::read(&a.flags, &mut input.settings, "");
    for (path, what) in [
        (meta.config, "--config"),
        (meta.alpha_config, "--alpha-config"),
    ] {
        if let Some(p) = path {
            if let Err(e) = sources::read_file(Path::new(&p), &mut input) {
                eprintln!("convert: {what} {p}: {e}");
                return 2;
            }
        }
    }
    if input.settings.is_empty() && input.findings.is_empty() {
        eprintln!("convert: no oauth2-proxy option found in the input");
        return 2;
    }
    let namespace = a
        .namespace
        .clone()
        .or_else(|| input.workload.as_ref().and_then(|w| w.namespace.clone()))
        .unwrap_or_else(|| "default".into());
    let mut plan = mapping::convert(&input, &namespace);
    if a.namespace.is_none()
        && input
            .workload
            .as_ref()
            .and_then(|w| w.namespace.as_ref())
            .is_none()
    {
        plan.report.note(
            "--namespace (not given)",
            "resources and Service names use `default`",
        );
    }
    if let Some(w) = &input.workload {
        let app = plan
            .upstream
            .as_ref()
            .map_or("the app's port".to_string(), |(_, p)| {
                format!("the app's port {p}")
            });
        plan.report.note(
            &format!("{} {}", w.kind, w.name),
            format!(
                "with the WasmPlugin, remove its `{}` container and point the Service's \
                 targetPort at {app}",
                w.container
            ),
        );
    }
    verify(&mut plan);
    match write(&a, &out, &plan, &input) {
        Ok(written) => plan.report.written = written,
        Err(e) => {
            eprintln!("convert: {e}");
            return 2;
        }
    }
    print!("{}", plan.report.render());
    u8::from(plan.report.refusals() > 0)
}

/// The converted configuration through the filter's own check, with the secrets it will
/// read: their values where the input had them (a bad cookie secret shows here).
fn verify(plan: &mut mapping::Plan) {
    let known: Vec<(String, String)> = plan
        .secrets
        .iter()
        .filter_map(|s| match &s.source {
            SecretSource::Value(v) => Some((s.env.to_string(), v.clone())),
            _ => None,
        })
        .collect();
    let env = check::Env::for_config(
        &plan.config,
        &|n| known.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
        false,
    );
    let json = serde_json::Value::Object(plan.config.clone()).to_string();
    for e in check::run(json.as_bytes(), &env).errors {
        plan.report.refused(
            &format!("{} (converted)", e.key),
            format!("the filter refuses it: {}", e.problem),
        );
    }
}

fn write(a: &Args, out: &Path, plan: &mapping::Plan, input: &Input) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let mut put = |rel: &str, text: &str| -> Result<(), String> {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    let config = serde_json::to_string_pretty(&serde_json::Value::Object(plan.config.clone()))
        .map_err(|e| e.to_string())?;
    put("config.json", &format!("{config}\n"))?;
    let release = istio::release()?;
    let files = istio::files(plan, input.workload.as_ref(), &a.image, &release);
    put("istio/wasmplugin.yaml", &files.wasmplugin)?;
    if let Some(s) = &files.secret {
        put("istio/secret.yaml", s)?;
    }
    put("istio/deployment-patch.yaml", &files.patch)?;
    if let Some(s) = &files.idp {
        put("istio/idp.yaml", s)?;
    }
    if a.envoy {
        let opts = envoy::Options {
            wasm_path: &a.wasm_path,
            admin_port: a.admin_port,
            ca_bundle: &a.ca_bundle,
        };
        put("envoy.yaml", &envoy::render(plan, &opts)?)?;
    }
    Ok(written)
}
