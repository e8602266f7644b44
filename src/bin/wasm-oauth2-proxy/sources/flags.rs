//! oauth2-proxy's command line, read as pflag reads it: `--name=value`, `--name value`, a
//! bool flag alone means true (it never takes the next argument), list flags repeat.

use crate::options::{self, Type, META_FLAGS};
use crate::settings::{setting, Layer, Raw, Settings};

/// `--config` and `--alpha-config` files the command line names: the caller reads them.
#[derive(Debug, Default)]
pub struct Meta {
    pub config: Option<String>,
    pub alpha_config: Option<String>,
}

pub fn read(args: &[String], out: &mut Settings, what: &str) -> Meta {
    let mut meta = Meta::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        // Older releases used Go's `flag` package, which also took a single dash.
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-').filter(|b| b.len() > 1))
        else {
            out.unknown.push(format!("{arg}{what} (not a flag)"));
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        // pflag's word separator normalisation (`--skip_provider_button`) is not oauth2-proxy's:
        // names are taken as written.
        let origin = format!("--{name}{what}");
        if META_FLAGS.contains(&name) {
            let value = inline.or_else(|| take_value(args, &mut i));
            match name {
                "config" => meta.config = value,
                "alpha-config" => meta.alpha_config = value,
                _ => out.unknown.push(origin),
            }
            continue;
        }
        let Some(opt) = options::by_flag(name) else {
            out.unknown.push(origin);
            continue;
        };
        let raw = match (opt.ty, inline) {
            (Type::Bool, None) => Raw::Bool(true),
            (Type::Bool, Some(v)) => Raw::Str(v),
            (Type::List, v) => match v.or_else(|| take_value(args, &mut i)) {
                Some(v) => Raw::List(split_list(&v)),
                None => {
                    out.unknown.push(format!("{origin} (no value)"));
                    continue;
                }
            },
            (_, v) => match v.or_else(|| take_value(args, &mut i)) {
                Some(v) => Raw::Str(v),
                None => {
                    out.unknown.push(format!("{origin} (no value)"));
                    continue;
                }
            },
        };
        if let Some(s) = setting(Some(opt), raw, origin) {
            out.set(Layer::Flags, s);
        }
    }
    meta
}

fn take_value(args: &[String], i: &mut usize) -> Option<String> {
    let v = args.get(*i)?.clone();
    *i += 1;
    Some(v)
}

/// A `StringSlice` value: comma-separated, blanks trimmed (pflag reads it as one CSV record).
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
