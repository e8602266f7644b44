//! Reading an oauth2-proxy deployment from what the user has: its TOML `oauth2-proxy.cfg`,
//! an `--alpha-config` YAML, a Kubernetes manifest with an oauth2-proxy container, its
//! command line, its `OAUTH2_PROXY_*` environment.

pub mod alpha;
mod alpha_headers;
pub mod flags;
pub mod kube;

use std::path::Path;

use crate::options;
use crate::settings::{setting, Layer, Raw, Settings};

/// The app's workload, when the input was a Kubernetes manifest.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub labels: Vec<(String, String)>,
    pub container: String,
}

#[derive(Debug, Default)]
pub struct Input {
    pub settings: Settings,
    pub workload: Option<Workload>,
    /// What the readers met that is not an option (alpha headers, several providers...),
    /// already judged: (verdict word, from, what).
    pub findings: Vec<(crate::report::Verdict, String, String)>,
}

/// Reads one `--config` file, recognising its format by its content.
pub fn read_file(path: &Path, input: &mut Input) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) || toml::from_str::<toml::Table>(&text).is_err();
    if !is_yaml {
        return read_cfg(&text, &name, input);
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{name}: neither oauth2-proxy's TOML nor YAML: {e}"))?;
    if docs.iter().any(|d| !d["kind"].is_badvalue()) {
        kube::read(&docs, &name, input)
    } else {
        alpha::read(&docs, &name, input)
    }
}

/// `oauth2-proxy.cfg`: TOML whose keys are the options' config names.
pub fn read_cfg(text: &str, name: &str, input: &mut Input) -> Result<(), String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("{name}: not oauth2-proxy's TOML: {e}"))?;
    let base = name.rsplit('/').next().unwrap_or(name);
    for (key, value) in table {
        let origin = format!("{key} ({base})");
        let raw = match value {
            toml::Value::String(s) => Raw::Str(s),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Integer(i) => Raw::Int(i),
            toml::Value::Array(a) => Raw::List(
                a.into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            ),
            other => {
                input
                    .settings
                    .unknown
                    .push(format!("{origin} (a {} value)", other.type_str()));
                continue;
            }
        };
        match setting(options::by_cfg(&key), raw, origin.clone()) {
            Some(s) => input.settings.set(Layer::ConfigFile, s),
            None => input.settings.unknown.push(origin),
        }
    }
    Ok(())
}

/// A file an option names (`authenticated_emails_file`, `client_secret_file`...), read where
/// the tool runs: the pod's path may exist here too, or the user passes a copy.
pub fn read_local(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}
