//! Enough of Kubernetes' CRD validation to check resources against a vendored CRD without a
//! cluster: YAML to JSON, the OpenAPI v3 structural-schema keywords, unknown-field rejection
//! (what `kubectl apply` does with server-side field validation), and the CEL rules of the
//! CRD, each implemented here by its exact text.
//!
//! A keyword or CEL rule this validator does not know is an error, never a silent pass: a
//! newer CRD then fails the tests until the validator learns it.

use regex::Regex;
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Every document in a YAML stream, as JSON.
pub fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
        .iter()
        .map(|d| to_json(d, what))
        .collect()
}

fn to_json(y: &Yaml, what: &str) -> Value {
    match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| panic!("{what}: bad number {s}")),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(|v| to_json(v, what)).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let Yaml::String(k) = k else {
                    panic!("{what}: non-string key {k:?}")
                };
                assert!(
                    m.insert(k.clone(), to_json(v, what)).is_none(),
                    "{what}: duplicate key {k}"
                );
            }
            Value::Object(m)
        }
        other => panic!("{what}: unsupported YAML node {other:?}"),
    }
}

/// The `openAPIV3Schema` of a served version of a CRD, with its group.
pub struct Crd {
    pub group: String,
    pub kind: String,
    pub versions: Vec<(String, Value)>,
}

impl Crd {
    pub fn from_yaml(text: &str) -> Crd {
        let docs = yaml_docs(text, "CRD");
        let crd = docs
            .iter()
            .find(|d| d["kind"] == "CustomResourceDefinition")
            .expect("a CustomResourceDefinition");
        let spec = &crd["spec"];
        let versions = spec["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter(|v| v["served"] == true)
            .map(|v| {
                (
                    v["name"].as_str().expect("version name").to_string(),
                    v["schema"]["openAPIV3Schema"].clone(),
                )
            })
            .collect();
        Crd {
            group: spec["group"].as_str().expect("group").to_string(),
            kind: spec["names"]["kind"].as_str().expect("kind").to_string(),
            versions,
        }
    }

    /// All violations of one resource (empty: valid).
    pub fn validate(&self, obj: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        let api = obj["apiVersion"].as_str().unwrap_or_default();
        let schema = self
            .versions
            .iter()
            .find(|(v, _)| format!("{}/{v}", self.group) == api)
            .map(|(_, s)| s);
        let Some(schema) = schema else {
            return vec![format!("apiVersion {api:?} is not served by this CRD")];
        };
        if obj["kind"] != self.kind.as_str() {
            errs.push(format!("kind {} is not {}", obj["kind"], self.kind));
        }
        check_metadata(&obj["metadata"], &mut errs);
        // apiVersion, kind and metadata are the apiserver's, not part of the CRD schema.
        let mut body = obj.as_object().cloned().unwrap_or_default();
        for k in ["apiVersion", "kind", "metadata"] {
            body.remove(k);
        }
        check(schema, &Value::Object(body), "", &mut errs);
        errs
    }
}

fn check_metadata(meta: &Value, errs: &mut Vec<String>) {
    let dns1123 = Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("regex");
    for key in ["name", "namespace"] {
        match meta[key].as_str() {
            Some(s) if s.len() <= 253 && dns1123.is_match(s) => {}
            other => errs.push(format!("metadata.{key}: {other:?} is not a DNS-1123 name")),
        }
    }
}

const IGNORED: &[&str] = &["description", "x-kubernetes-list-type"];

fn check(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errs.push(format!("{path}: schema is not an object"));
        return;
    };
    let mut err = |msg: String| errs.push(format!("{}: {msg}", display(path)));
    if v.is_null() {
        if s.get("nullable") != Some(&Value::Bool(true)) {
            err("null is not allowed".into());
        }
        return;
    }
    for key in s.keys() {
        let known = matches!(
            key.as_str(),
            "type"
                | "properties"
                | "required"
                | "additionalProperties"
                | "items"
                | "enum"
                | "minLength"
                | "maxLength"
                | "pattern"
                | "minimum"
                | "maximum"
                | "maxItems"
                | "maxProperties"
                | "format"
                | "nullable"
                | "anyOf"
                | "x-kubernetes-int-or-string"
                | "x-kubernetes-preserve-unknown-fields"
                | "x-kubernetes-list-map-keys"
                | "x-kubernetes-validations"
        ) || IGNORED.contains(&key.as_str());
        if !known {
            err(format!(
                "the test validator does not implement keyword {key}"
            ));
        }
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => false,
        };
        if !ok {
            err(format!("expected {t}, got {v}"));
            return;
        }
    } else if int_or_string && !(v.is_string() || v.is_i64() || v.is_u64()) {
        err(format!("expected an integer or a string, got {v}"));
        return;
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            err(format!("{v} is not one of {}", Value::Array(e.clone())));
        }
    }
    if let Some(text) = v.as_str() {
        let chars = text.chars().count() as u64;
        if let Some(n) = s.get("minLength").and_then(Value::as_u64) {
            if chars < n {
                err(format!("shorter than {n}"));
            }
        }
        if let Some(n) = s.get("maxLength").and_then(Value::as_u64) {
            if chars > n {
                err(format!("longer than {n}"));
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            match Regex::new(p) {
                Ok(re) if re.is_match(text) => {}
                Ok(_) => err(format!("{text:?} does not match {p}")),
                Err(e) => err(format!("bad pattern {p}: {e}")),
            }
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if n < min {
                err(format!("{n} < minimum {min}"));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if n > max {
                err(format!("{n} > maximum {max}"));
            }
        }
        if s.get("format").and_then(Value::as_str) == Some("int32")
            && !(i32::MIN as f64..=i32::MAX as f64).contains(&n)
        {
            err(format!("{n} is not an int32"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(n) = s.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > n {
                err(format!("more than {n} items"));
            }
        }
        if let Some(keys) = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            let mut seen = Vec::new();
            for it in items {
                let id: Vec<&Value> = keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| &it[k])
                    .collect();
                if seen.contains(&id) {
                    err(format!("duplicate list-map key {id:?}"));
                }
                seen.push(id);
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, it) in items.iter().enumerate() {
                check(item_schema, it, &format!("{path}[{i}]"), errs);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        check_object(s, obj, path, errs);
    }
    if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        for r in rules {
            let rule = r["rule"].as_str().unwrap_or_default();
            match cel(rule, v) {
                Ok(true) => {}
                Ok(false) => errs.push(format!(
                    "{}: {} (rule {rule})",
                    display(path),
                    r["message"].as_str().unwrap_or("CEL rule failed")
                )),
                Err(e) => errs.push(format!("{}: {e}", display(path))),
            }
        }
    }
}

fn check_object(
    s: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    if let Some(n) = s.get("maxProperties").and_then(Value::as_u64) {
        if obj.len() as u64 > n {
            errs.push(format!("{}: more than {n} properties", display(path)));
        }
    }
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = r.as_str().unwrap_or_default();
        if !obj.contains_key(r) {
            errs.push(format!("{}: missing required field {r}", display(path)));
        }
    }
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    for (k, val) in obj {
        let sub = format!("{path}.{k}");
        if let Some(p) = props.and_then(|p| p.get(k)) {
            check(p, val, &sub, errs);
        } else if let Some(a) = additional.filter(|a| a.is_object()) {
            check(a, val, &sub, errs);
        } else if !preserve && additional != Some(&Value::Bool(true)) {
            errs.push(format!("{}: unknown field", display(&sub)));
        }
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path.trim_start_matches('.')
    }
}

const URL_SCHEMES: &[&str] = &["", "http", "https", "oci", "file"];

/// The CRD's CEL rules, each by its exact text.
fn cel(rule: &str, v: &Value) -> Result<bool, String> {
    let rule = rule.split_whitespace().collect::<Vec<_>>().join(" ");
    let has = |k: &str| v.get(k).is_some();
    let keys = || v.as_object().into_iter().flat_map(|m| m.keys());
    Ok(match rule.as_str() {
        r#"!self.contains("*")"# => !v.as_str().unwrap_or_default().contains('*'),
        r#"self.all(key, !key.contains("*"))"# => keys().all(|k| !k.contains('*')),
        "self.all(key, key.size() != 0)" => keys().all(|k| !k.is_empty()),
        "self.size() == 0" => v.as_str().map(str::is_empty).unwrap_or(false),
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"# => {
            v.get("valueFrom").and_then(Value::as_str) != Some("HOST") || !has("value")
        }
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            ["selector", "targetRef", "targetRefs"]
                .iter()
                .filter(|k| has(k))
                .count()
                <= 1
        }
        r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"# =>
        {
            let s = v.as_str().unwrap_or_default();
            match url::Url::parse(s) {
                Ok(u) => URL_SCHEMES.contains(&u.scheme()),
                Err(_) => url::Url::parse(&format!("http://{s}")).is_ok(),
            }
        }
        other => return Err(format!("the test validator does not implement CEL rule {other}")),
    })
}
