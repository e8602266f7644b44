//! `wasm-oauth2-proxy`: move an oauth2-proxy deployment to the filter (`convert`), and check
//! a filter configuration offline exactly as the filter checks it at load (`check-config`).
//! The filter's own configuration parser does every check; this tool has no second one.

// The filter's `cargo build --target wasm32-wasip1` builds every target of the crate; this
// tool reads files and YAML with native-only dependencies, so on wasm32 it is only a program
// that says so.
#[cfg(target_arch = "wasm32")]
fn main() {
    eprintln!("wasm-oauth2-proxy: the command-line tool runs natively, not as wasm");
    std::process::exit(2);
}

#[cfg(not(target_arch = "wasm32"))]
mod check;
#[cfg(not(target_arch = "wasm32"))]
mod convert;
#[cfg(not(target_arch = "wasm32"))]
mod envoy;
#[cfg(not(target_arch = "wasm32"))]
mod istio;
#[cfg(not(target_arch = "wasm32"))]
mod mapping;
#[cfg(not(target_arch = "wasm32"))]
mod options;
#[cfg(not(target_arch = "wasm32"))]
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod settings;
#[cfg(not(target_arch = "wasm32"))]
mod sources;
#[cfg(not(target_arch = "wasm32"))]
mod yaml;

#[cfg(not(target_arch = "wasm32"))]
const USAGE: &str = "\
usage:
  wasm-oauth2-proxy convert --config FILE [--config FILE...] --out DIR [options] [-- FLAGS...]
  wasm-oauth2-proxy check-config [--json] [--strict-env] FILE

convert reads an oauth2-proxy deployment and writes DIR/config.json, DIR/istio/*.yaml and,
with --envoy, DIR/envoy.yaml; it prints what became of every option. FILE is an
oauth2-proxy.cfg (TOML), an --alpha-config YAML, a Kubernetes manifest with an oauth2-proxy
container, or - for oauth2-proxy flags given after --.
  --env                  also read this process's OAUTH2_PROXY_* variables
  --envoy                also write a standalone Envoy config (DIR/envoy.yaml)
  --namespace NS         the app's namespace (default: the manifest's, else default)
  --image REPO           the OCI repository you push the filter to
                         (default registry.example.com/wasm-oauth2-proxy)
  --wasm-path PATH       the .wasm in envoy.yaml (default /etc/wasm-oauth2-proxy/wasm_oauth2_proxy.wasm)
  --envoy-admin-port N   envoy.yaml's admin port on loopback (default 9901)
  --ca-bundle PATH       CA bundle envoy.yaml checks the IdP's certificate against
                         (default /etc/ssl/certs/ca-certificates.crt)
exit: 0 converted; 1 an option the deployment relied on for security cannot be carried over,
or the converted configuration does not load; 2 usage or unreadable input.

check-config runs the filter's own configuration check on FILE (the JSON, a WasmPlugin, or an
Envoy config with the filter) and lists every error with its key, and the clusters it needs.
*_env variables come from this environment, or placeholders when unset (--strict-env: errors).
  --json                 one JSON object on stdout: {file, ok, errors, clusters, env}
exit: 0 valid; 1 invalid; 2 usage or unreadable input.
";

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("convert") => convert::main(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            0
        }
        _ => {
            eprint!("{USAGE}");
            2
        }
    };
    std::process::ExitCode::from(code)
}

#[cfg(not(target_arch = "wasm32"))]
fn check_config(args: &[String]) -> u8 {
    let mut json_out = false;
    let mut strict = false;
    let mut file = None;
    for a in args {
        match a.as_str() {
            "--json" => json_out = true,
            "--strict-env" => strict = true,
            f if !f.starts_with("--") && file.is_none() => file = Some(f.to_string()),
            other => {
                eprintln!("check-config: unexpected argument `{other}`\n{USAGE}");
                return 2;
            }
        }
    }
    let Some(file) = file else {
        eprint!("check-config: which file?\n{USAGE}");
        return 2;
    };
    let config = match std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {file}: {e}"))
        .and_then(|t| check::extract(&t, &file))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("check-config: {e}");
            return 2;
        }
    };
    let map = serde_json::from_str::<serde_json::Value>(&config)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let env = check::Env::for_config(&map, &|n| std::env::var(n).ok(), strict);
    let out = check::run(config.as_bytes(), &env);
    if json_out {
        println!("{}", check::render_json(&file, &out, &env));
    } else {
        print!("{}", check::render_text(&file, &out, &env));
    }
    u8::from(!out.errors.is_empty())
}
