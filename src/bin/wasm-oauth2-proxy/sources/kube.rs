//! A Kubernetes manifest (Deployment, StatefulSet, DaemonSet, Job or Pod) with an
//! oauth2-proxy container: its `args` (and `command` after the binary), `env`, `envFrom`,
//! and a `--config` file mounted from a ConfigMap, each resolved against the ConfigMaps and
//! Secrets of the same file where they are there.

use base64::Engine;
use yaml_rust2::Yaml;

use super::{flags, Input, Workload};
use crate::report::Verdict;
use crate::settings::{self, Layer, Raw, SecretRef};

const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"];

fn s(y: &Yaml) -> Option<&str> {
    y.as_str()
}

fn items(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

/// `data` (base64 for a Secret) and `stringData` of the ConfigMap or Secret named `name`.
fn object_data(docs: &[Yaml], kind: &str, name: &str) -> Option<Vec<(String, String)>> {
    let doc = docs
        .iter()
        .find(|d| s(&d["kind"]) == Some(kind) && s(&d["metadata"]["name"]) == Some(name))?;
    let mut out = Vec::new();
    for field in ["data", "stringData"] {
        let Some(map) = doc[field].as_hash() else {
            continue;
        };
        for (k, v) in map {
            let (Some(k), Some(v)) = (k.as_str(), scalar(v)) else {
                continue;
            };
            let v = if kind == "Secret" && field == "data" {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()?;
                String::from_utf8(bytes).ok()?
            } else {
                v
            };
            out.push((k.to_string(), v));
        }
    }
    Some(out)
}

/// A YAML scalar as the string Kubernetes would pass (`true`, `8080` unquoted included).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(v) | Yaml::Real(v) => Some(v.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

enum EnvVal {
    Value(String),
    Ref(SecretRef),
}

pub fn read(docs: &[Yaml], file: &str, input: &mut Input) -> Result<(), String> {
    let found = docs.iter().find_map(|d| {
        let kind = s(&d["kind"]).filter(|k| WORKLOADS.contains(k))?;
        let pod = if kind == "Pod" {
            &d["spec"]
        } else {
            &d["spec"]["template"]["spec"]
        };
        let c = items(&pod["containers"]).iter().find(|c| {
            s(&c["name"]) == Some("oauth2-proxy")
                || s(&c["image"]).is_some_and(|i| i.contains("oauth2-proxy"))
        })?;
        Some((d, kind, pod, c))
    });
    let Some((doc, kind, pod, container)) = found else {
        return Err(format!(
            "{file}: no Deployment, StatefulSet, DaemonSet, Job or Pod with an oauth2-proxy container"
        ));
    };
    let cname = s(&container["name"]).unwrap_or("oauth2-proxy").to_string();
    // Options keep the names the user wrote (`OAUTH2_PROXY_FOO`, `--foo`); the workload is
    // named once, in the report's last note.
    let what = String::new();

    // Environment first: `$(VAR)` in args refers to it.
    let mut env: Vec<(String, EnvVal)> = Vec::new();
    for from in items(&container["envFrom"]) {
        let prefix = s(&from["prefix"]).unwrap_or("");
        for (kind, field) in [("ConfigMap", "configMapRef"), ("Secret", "secretRef")] {
            let Some(name) = s(&from[field]["name"]) else {
                continue;
            };
            match object_data(docs, kind, name) {
                Some(data) => env.extend(
                    data.into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), EnvVal::Value(v))),
                ),
                None => input.findings.push((
                    Verdict::Refused,
                    format!("envFrom {kind} {name}{what}"),
                    format!(
                        "not in {file}: the options it sets are unknown (pass the {kind} too: \
                         --config with a file holding both)"
                    ),
                )),
            }
        }
    }
    for e in items(&container["env"]) {
        let Some(name) = s(&e["name"]) else { continue };
        let value = if let Some(v) = scalar(&e["value"]) {
            EnvVal::Value(v)
        } else if let (Some(sn), Some(key)) = (
            s(&e["valueFrom"]["secretKeyRef"]["name"]),
            s(&e["valueFrom"]["secretKeyRef"]["key"]),
        ) {
            match object_data(docs, "Secret", sn).and_then(|d| lookup(&d, key)) {
                Some(v) => EnvVal::Value(v),
                None => EnvVal::Ref(SecretRef {
                    name: sn.to_string(),
                    key: key.to_string(),
                }),
            }
        } else if let (Some(cm), Some(key)) = (
            s(&e["valueFrom"]["configMapKeyRef"]["name"]),
            s(&e["valueFrom"]["configMapKeyRef"]["key"]),
        ) {
            match object_data(docs, "ConfigMap", cm).and_then(|d| lookup(&d, key)) {
                Some(v) => EnvVal::Value(v),
                None => {
                    input.findings.push((
                        Verdict::Refused,
                        format!("{name}{what}"),
                        format!("from ConfigMap {cm} key {key}, which is not in {file}"),
                    ));
                    continue;
                }
            }
        } else {
            input.findings.push((
                Verdict::Unsupported,
                format!("{name}{what}"),
                "a value from the pod's own fields (fieldRef/resourceFieldRef): not read".into(),
            ));
            continue;
        };
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value));
    }
    for (name, value) in &env {
        let raw = match value {
            EnvVal::Value(v) => Raw::Str(v.clone()),
            EnvVal::Ref(_) => Raw::Str(String::new()),
        };
        let origin = format!("{name}{what}");
        if !name.starts_with("OAUTH2_PROXY_") {
            continue;
        }
        match settings::setting(crate::options::by_env(name), raw, origin.clone()) {
            Some(mut st) => {
                if let EnvVal::Ref(r) = value {
                    st.secret_ref = Some(r.clone());
                }
                input.settings.set(Layer::Env, st);
            }
            None => input.settings.unknown.push(origin),
        }
    }

    // The command line: args, and command after the binary (`[oauth2-proxy, --flag]`).
    let mut args: Vec<String> = items(&container["command"])
        .iter()
        .skip(1)
        .chain(items(&container["args"]))
        .filter_map(scalar)
        .collect();
    for a in &mut args {
        *a = expand(a, &env);
    }
    let meta = flags::read(&args, &mut input.settings, &what);
    if let Some(path) = meta.config {
        match mounted_file(docs, pod, container, &path) {
            Some(text) => {
                input.findings.push((
                    Verdict::Note,
                    format!("--config {path}"),
                    "read from the ConfigMap mounted there: its options are listed by name".into(),
                ));
                super::read_cfg(&text, &path, input)?
            }
            None => input.findings.push((
                Verdict::Refused,
                format!("--config {path}{what}"),
                "not found in a ConfigMap of this file: its options are unknown \
                 (pass the file itself with another --config)"
                    .into(),
            )),
        }
    }
    if let Some(path) = meta.alpha_config {
        match mounted_file(docs, pod, container, &path) {
            Some(text) => {
                let alpha = yaml_rust2::YamlLoader::load_from_str(&text)
                    .map_err(|e| format!("{path}{what}: not YAML: {e}"))?;
                super::alpha::read(&alpha, &path, input)?;
            }
            None => input.findings.push((
                Verdict::Refused,
                format!("--alpha-config {path}{what}"),
                "not found in a ConfigMap of this file: its options are unknown".into(),
            )),
        }
    }

    let labels_at = if kind == "Pod" {
        &doc["metadata"]["labels"]
    } else if doc["spec"]["selector"]["matchLabels"].as_hash().is_some() {
        &doc["spec"]["selector"]["matchLabels"]
    } else {
        &doc["spec"]["template"]["metadata"]["labels"]
    };
    let labels = labels_at
        .as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default();
    input.workload = Some(Workload {
        kind: kind.to_string(),
        name: s(&doc["metadata"]["name"]).unwrap_or("app").to_string(),
        namespace: s(&doc["metadata"]["namespace"]).map(String::from),
        labels,
        container: cname,
    });
    Ok(())
}

fn lookup(data: &[(String, String)], key: &str) -> Option<String> {
    data.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Kubernetes' `$(VAR)` expansion in args, from the container's own env values.
fn expand(arg: &str, env: &[(String, EnvVal)]) -> String {
    let mut out = arg.to_string();
    for (name, v) in env {
        if let EnvVal::Value(v) = v {
            out = out.replace(&format!("$({name})"), v);
        }
    }
    out
}

/// The text of `path` inside the container when a ConfigMap volume of this file is mounted
/// over it (`mountPath` a directory holding the ConfigMap's keys, or `subPath` one key).
fn mounted_file(docs: &[Yaml], pod: &Yaml, container: &Yaml, path: &str) -> Option<String> {
    items(&container["volumeMounts"]).iter().find_map(|m| {
        let mount = s(&m["mountPath"])?.trim_end_matches('/');
        let volume = items(&pod["volumes"])
            .iter()
            .find(|v| s(&v["name"]) == s(&m["name"]))?;
        let cm = s(&volume["configMap"]["name"])?;
        let key = match s(&m["subPath"]) {
            Some(sub) if path == mount => sub.to_string(),
            Some(_) => return None,
            None => path.strip_prefix(mount)?.strip_prefix('/')?.to_string(),
        };
        lookup(&object_data(docs, "ConfigMap", cm)?, &key)
    })
}
