//! JSON values written as block YAML, for the generated resources. Strings that YAML could
//! read as anything else (`true`, `8080`, `*`, `outbound|443||x`) are written as JSON strings,
//! which YAML reads back unchanged.

use serde_json::Value;

fn plain_ok(s: &str) -> bool {
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    !s.is_empty()
        && !reserved.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

pub fn scalar(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// `value` as YAML lines indented by `indent` spaces (a mapping's entries, or a list's items).
pub fn block(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write(value, indent, &mut out);
    out
}

fn inline(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(scalar(s)),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

fn write(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match inline(v) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", scalar(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", scalar(k)));
                        write(v, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                match inline(v) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line goes after the dash, the rest aligned with it.
                        let inner = block(v, indent + 2);
                        let trimmed = inner.get(indent + 2..).unwrap_or("");
                        out.push_str(&format!("{pad}- {trimmed}"));
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", inline(other).unwrap_or_default())),
    }
}
