//! What an oauth2-proxy deployment set, whatever it was written in: one value per option,
//! with where it came from, merged in oauth2-proxy's order of precedence (config file, then
//! environment, then flags; `pkg/apis/options/load.go`).

use crate::options::{self, Opt, Type};

/// A value as written, before the option's type reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Int(i64),
}

/// A secret read from a Kubernetes `Secret` the tool was not given: the pod's env named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct Setting {
    pub opt: &'static Opt,
    pub raw: Raw,
    /// How the user wrote it: `--client-id`, `OAUTH2_PROXY_CLIENT_ID`, `client_id (cfg)`.
    pub origin: String,
    /// Set when the value lives in a Secret the tool cannot read (`valueFrom.secretKeyRef`).
    pub secret_ref: Option<SecretRef>,
}

/// Where oauth2-proxy would rank a source: later layers win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    ConfigFile,
    Alpha,
    Env,
    Flags,
}

#[derive(Debug, Default)]
pub struct Settings {
    items: Vec<(Layer, Setting)>,
    /// Names the tool could not place (an unknown flag, a misspelt env var): reported.
    pub unknown: Vec<String>,
}

impl Settings {
    /// Adds a value. A list flag given again in the same layer adds to it (pflag's
    /// `StringSlice`); anything else replaces what a lower layer said.
    pub fn set(&mut self, layer: Layer, s: Setting) {
        if let Some((l, existing)) = self
            .items
            .iter_mut()
            .find(|(l, e)| *l == layer && e.opt.cfg == s.opt.cfg)
        {
            match (&mut existing.raw, s.raw) {
                (Raw::List(have), Raw::List(more)) if s.opt.ty == Type::List => {
                    have.extend(more);
                }
                (_, raw) => {
                    *l = layer;
                    *existing = Setting { raw, ..s };
                }
            }
            return;
        }
        self.items.push((layer, s));
    }

    /// The value that wins for each option, in the order options were first given.
    pub fn effective(&self) -> Vec<&Setting> {
        let mut out: Vec<&Setting> = Vec::new();
        for (_, s) in &self.items {
            if out.iter().any(|o| o.opt.cfg == s.opt.cfg) {
                continue;
            }
            let best = self
                .items
                .iter()
                .filter(|(_, o)| o.opt.cfg == s.opt.cfg)
                .max_by_key(|(l, _)| *l)
                .map_or(s, |(_, o)| o);
            out.push(best);
        }
        out
    }

    /// Values an earlier layer set that a later one replaced: reported, never silent.
    pub fn overridden(&self) -> Vec<(&Setting, &Setting)> {
        let eff = self.effective();
        self.items
            .iter()
            .filter_map(|(_, s)| {
                let winner = eff.iter().find(|w| w.opt.cfg == s.opt.cfg)?;
                (!std::ptr::eq(*winner, s)).then_some((s, *winner))
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A flag, env var or config key by name: `None` when oauth2-proxy has no such option.
pub fn setting(opt_name: Option<&'static Opt>, raw: Raw, origin: String) -> Option<Setting> {
    Some(Setting {
        opt: opt_name?,
        raw,
        origin,
        secret_ref: None,
    })
}

/// `OAUTH2_PROXY_*` variables: the option's value as one string (lists comma-separated).
pub fn from_env(vars: &[(String, String)], out: &mut Settings, what: &str) {
    for (k, v) in vars {
        if !k.starts_with("OAUTH2_PROXY_") {
            continue;
        }
        match setting(
            options::by_env(k),
            Raw::Str(v.clone()),
            format!("{k}{what}"),
        ) {
            Some(s) => out.set(Layer::Env, s),
            None => out.unknown.push(format!("{k}{what}")),
        }
    }
}
