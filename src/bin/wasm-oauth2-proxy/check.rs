//! `check-config`: the filter's own `Config::check` on a configuration, offline, as the
//! filter runs it at load; every error with its key, and the clusters the config needs.

use serde_json::{json, Map, Value};
use wasm_oauth2_proxy::config::{Config, ConfigError};

/// The environment a check runs with: each `*_env` variable the configuration names, from
/// this process's environment, or (unless `strict`) a placeholder of the right shape, so the
/// rest of the configuration is still checked where the secrets are not at hand.
pub struct Env {
    pub vars: Vec<(String, Option<String>, String)>,
}

const PLACEHOLDER_COOKIE: &str = "placeholder-cookie-secret-32byte";

impl Env {
    pub fn for_config(
        config: &Map<String, Value>,
        real: &dyn Fn(&str) -> Option<String>,
        strict: bool,
    ) -> Env {
        let mut vars = Vec::new();
        for (key, v) in config {
            let Some(base) = key.strip_suffix("_env") else {
                continue;
            };
            let names: Vec<String> = match v {
                Value::String(s) => s.split(',').map(|n| n.trim().to_string()).collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect(),
                _ => continue,
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                let value = real(&name).filter(|v| !v.is_empty());
                let placeholder = if base.starts_with("cookie_secret") {
                    PLACEHOLDER_COOKIE.to_string()
                } else {
                    format!("placeholder-{base}")
                };
                let used = match (&value, strict) {
                    (Some(v), _) => v.clone(),
                    (None, true) => String::new(),
                    (None, false) => placeholder,
                };
                vars.push((name, value, used));
            }
        }
        Env { vars }
    }

    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, used)| used.clone())
            .filter(|v| !v.is_empty())
    }
}

pub struct Outcome {
    pub errors: Vec<ConfigError>,
    pub clusters: Vec<(String, String)>,
    pub provider: String,
}

pub fn run(json_text: &[u8], env: &Env) -> Outcome {
    match Config::check(json_text, &|n| env.lookup(n)) {
        Ok(c) => Outcome {
            errors: Vec::new(),
            clusters: c.clusters(),
            provider: c.provider.kind.name().to_string(),
        },
        Err(errors) => Outcome {
            errors,
            clusters: Vec::new(),
            provider: String::new(),
        },
    }
}

/// The plugin configuration inside what the user has: the JSON itself (checked as it is,
/// even when it does not parse: that is the filter's first error), a WasmPlugin's
/// `pluginConfig`, or the wasm filter's `configuration` in an Envoy config.
pub fn extract(text: &str, name: &str) -> Result<String, String> {
    if text.trim_start().starts_with('{') {
        return Ok(text.to_string());
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .map_err(|e| format!("{name}: neither JSON nor YAML: {e}"))?;
    for d in &docs {
        if d["kind"].as_str() == Some("WasmPlugin") {
            return Ok(yaml_to_json(&d["spec"]["pluginConfig"]).to_string());
        }
        if let Some(v) = find_envoy_config(d) {
            return Ok(v);
        }
    }
    Err(format!("{name}: no filter configuration (JSON, a WasmPlugin, or an Envoy config with the wasm filter)"))
}

fn find_envoy_config(y: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => {
            let config = &y["config"]["configuration"];
            if y["name"].as_str() == Some("envoy.filters.http.wasm") || !config.is_badvalue() {
                if let Some(v) = y["typed_config"]["config"]["configuration"]["value"].as_str() {
                    return Some(v.to_string());
                }
            }
            h.values().find_map(find_envoy_config)
        }
        Yaml::Array(a) => a.iter().find_map(find_envoy_config),
        _ => None,
    }
}

pub fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Boolean(b) => json!(b),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => r.parse::<f64>().map_or(json!(r), |f| json!(f)),
        Yaml::String(s) => json!(s),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), yaml_to_json(v))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

pub fn render_text(name: &str, out: &Outcome, env: &Env) -> String {
    let mut s = String::new();
    if out.errors.is_empty() {
        s.push_str(&format!("ok: {name} loads (provider {})\n", out.provider));
        s.push_str("clusters the configuration needs (host  cluster):\n");
        for (i, (host, cluster)) in out.clusters.iter().enumerate() {
            let key = if i == 0 {
                "idp_cluster"
            } else {
                "idp_clusters"
            };
            s.push_str(&format!("  {host}  {cluster}  ({key})\n"));
        }
    } else {
        for e in &out.errors {
            s.push_str(&format!("error: {}: {}\n", e.key, e.problem));
        }
    }
    for (n, real, _) in &env.vars {
        if real.is_none() {
            s.push_str(&format!(
                "env: {n} is not set here: checked with a placeholder; Envoy must have it\n"
            ));
        }
    }
    s
}

pub fn render_json(name: &str, out: &Outcome, env: &Env) -> Value {
    json!({
        "file": name,
        "ok": out.errors.is_empty(),
        "errors": out.errors.iter().map(|e| json!({"key": e.key, "problem": e.problem})).collect::<Vec<_>>(),
        "clusters": out.clusters.iter().map(|(h, c)| json!({"host": h, "cluster": c})).collect::<Vec<_>>(),
        "env": env.vars.iter().map(|(n, real, _)| json!({"name": n, "set": real.is_some()})).collect::<Vec<_>>(),
    })
}
