//! An option's value read by its type, as oauth2-proxy reads it: Go's `strconv.ParseBool`,
//! Go's `time.ParseDuration`, pflag's comma-separated lists.

use serde_json::{json, Value};

use crate::options::Type;
use crate::settings::{Raw, Setting};
use crate::sources::flags::split_list;

pub fn string(s: &Setting) -> Result<String, String> {
    match &s.raw {
        Raw::Str(v) => Ok(v.clone()),
        Raw::Int(i) => Ok(i.to_string()),
        Raw::Bool(b) => Ok(b.to_string()),
        Raw::List(l) => Ok(l.join(",")),
    }
}

pub fn list(s: &Setting) -> Result<Vec<String>, String> {
    match &s.raw {
        // Flags were split when read; a config file's array holds whole entries (regexes may
        // hold commas).
        Raw::List(l) => Ok(l.clone()),
        Raw::Str(v) => Ok(split_list(v)),
        other => Err(format!("expected a list, got {other:?}")),
    }
}

/// `strconv.ParseBool`: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False.
pub fn boolean(s: &Setting) -> Result<bool, String> {
    match &s.raw {
        Raw::Bool(b) => Ok(*b),
        Raw::Str(v) => match v.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            other => Err(format!("`{other}` is not a boolean")),
        },
        Raw::Int(1) => Ok(true),
        Raw::Int(0) => Ok(false),
        other => Err(format!("expected a boolean, got {other:?}")),
    }
}

/// Milliseconds of a Go duration (`168h0m0s`, `1.5h`, `300ms`); a bare integer is
/// nanoseconds, as Go's `time.Duration` decodes one.
pub fn duration_ms(s: &Setting) -> Result<u64, String> {
    match &s.raw {
        Raw::Int(ns) => u64::try_from(*ns)
            .map(|ns| ns / 1_000_000)
            .map_err(|_| "a negative duration".into()),
        Raw::Str(v) => go_duration_ms(v).ok_or_else(|| format!("`{v}` is not a Go duration")),
        other => Err(format!("expected a duration, got {other:?}")),
    }
}

pub fn go_duration_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "0" {
        return Some(0);
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest.get(..num_len)?.parse().ok()?;
        rest = rest.get(num_len..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match rest.get(..unit_len)? {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = rest.get(unit_len..)?;
        total_ns += n * unit_ns;
    }
    let ms = (total_ns / 1e6).round();
    (ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64).then_some(ms as u64)
}

/// Milliseconds written the way the filter reads durations (`168h`, `90m`, `1500ms`).
pub fn duration_text(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

pub fn int(s: &Setting) -> Result<i64, String> {
    match &s.raw {
        Raw::Int(i) => Ok(*i),
        Raw::Str(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("`{v}` is not a number")),
        other => Err(format!("expected a number, got {other:?}")),
    }
}

/// The value as the filter's JSON configuration takes it.
pub fn json(s: &Setting) -> Result<Value, String> {
    Ok(match s.opt.ty {
        Type::Str => json!(string(s)?),
        Type::Bool => json!(boolean(s)?),
        Type::List => json!(list(s)?),
        Type::Duration => json!(duration_text(duration_ms(s)?)),
        Type::Int => json!(int(s)?),
    })
}
