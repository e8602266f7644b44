//! From oauth2-proxy's options to the filter's configuration: each option the user set is
//! mapped, dropped (it means nothing inside Envoy), unsupported, or refused (a security rule
//! that cannot be carried over), and the report says which and why.

mod custom;
mod hosts;
mod plan;
mod provider;
mod rules;
pub mod values;

use serde_json::json;

use crate::settings::Setting;
use crate::sources::Input;

pub use plan::{Host, Plan, SecretSource, CLIENT_SECRET_ENV, COOKIE_SECRET_ENV, GITHUB_TOKEN_ENV};

pub fn convert(input: &Input, namespace: &str) -> Plan {
    let mut plan = Plan {
        namespace: namespace.to_string(),
        ..Plan::default()
    };
    for (verdict, from, what) in &input.findings {
        plan.report.add(*verdict, from, what.clone());
    }
    for name in &input.settings.unknown {
        let why = if name.starts_with("OAUTH2_PROXY_") {
            "not an oauth2-proxy option (oauth2-proxy ignores it too)"
        } else {
            "not an oauth2-proxy option (oauth2-proxy would refuse to start with it)"
        };
        plan.report.unsupported(name, why);
    }
    for (lost, winner) in input.settings.overridden() {
        plan.report.note(
            &lost.origin,
            format!(
                "overridden by {} (oauth2-proxy's precedence)",
                winner.origin
            ),
        );
    }

    let settings = input.settings.effective();
    let kind = provider::kind(&settings, &mut plan);
    for s in &settings {
        if s.secret_ref.is_some() && !custom::takes_secret_ref(s.opt.cfg) {
            plan.report.refused(
                &s.origin,
                "its value is in a Secret that was not given, so it is unknown",
            );
            continue;
        }
        match rules::rule(s.opt.cfg) {
            rules::Rule::Same => same(&mut plan, s),
            rules::Rule::Drop(why) => plan.report.dropped(&s.origin, why),
            rules::Rule::Unsupported(why) => plan.report.unsupported(&s.origin, why),
            rules::Rule::Refuse(why) => plan.report.refused(&s.origin, why),
            rules::Rule::Custom => custom::apply(&mut plan, s, &settings, kind),
        }
    }
    secrets(&mut plan, &settings, kind);
    provider::finish(&mut plan, &settings, kind);
    hosts::assign(&mut plan, kind);
    plan
}

/// An option with the same meaning in the filter: its value, read by its type.
fn same(plan: &mut Plan, s: &Setting) {
    let to = s.opt.cfg;
    match values::json(s) {
        Ok(v) => {
            plan.report.mapped(&s.origin, format!("{to}: {v}"));
            plan.set(to, v);
        }
        Err(e) => plan.report.refused(&s.origin, e),
    }
}

/// The client secret, cookie secret and GitHub token: never inline in the configuration,
/// always `*_env` naming a variable of Envoy that a Secret fills.
fn secrets(plan: &mut Plan, settings: &[&Setting], kind: wasm_oauth2_proxy::providers::Kind) {
    let pick = |inline: &str, file: &str| -> Option<(SecretSource, String)> {
        let s = settings
            .iter()
            .find(|s| s.opt.cfg == inline)
            .or_else(|| settings.iter().find(|s| s.opt.cfg == file))?;
        if let Some(r) = &s.secret_ref {
            return Some((SecretSource::Ref(r.clone()), s.origin.clone()));
        }
        let value = values::string(s).unwrap_or_default();
        if s.opt.cfg == file {
            return Some(match crate::sources::read_local(&value) {
                Some(v) => (
                    SecretSource::Value(v.trim_end().to_string()),
                    s.origin.clone(),
                ),
                None => (
                    SecretSource::Missing,
                    format!("{} ({value} not readable here)", s.origin),
                ),
            });
        }
        Some((SecretSource::Value(value), s.origin.clone()))
    };
    let one = |plan: &mut Plan, key: &str, env, skey, found: Option<(SecretSource, String)>| {
        let (source, origin) = found.unwrap_or((SecretSource::Missing, "(not set)".into()));
        let place = match &source {
            SecretSource::Value(_) => format!("value in istio/secret.yaml key {skey}"),
            SecretSource::Ref(r) => format!("from your Secret {} key {}", r.name, r.key),
            SecretSource::Missing => {
                format!("istio/secret.yaml key {skey} holds a placeholder: replace it")
            }
        };
        let verdict = if source == SecretSource::Missing {
            crate::report::Verdict::Note
        } else {
            crate::report::Verdict::Mapped
        };
        plan.report
            .add(verdict, &origin, format!("{key}_env: {env} ({place})"));
        plan.set(&format!("{key}_env"), json!(env));
        plan.secret(env, skey, source);
    };
    let client = pick("client_secret", "client_secret_file");
    one(
        plan,
        "client_secret",
        CLIENT_SECRET_ENV,
        "client-secret",
        client,
    );
    let cookie = pick("cookie_secret", "cookie_secret_file");
    one(
        plan,
        "cookie_secret",
        COOKIE_SECRET_ENV,
        "cookie-secret",
        cookie,
    );
    let github = kind == wasm_oauth2_proxy::providers::Kind::GitHub;
    if let Some(token) = pick("github_token", "github_token").filter(|_| github) {
        one(
            plan,
            "github_token",
            GITHUB_TOKEN_ENV,
            "github-token",
            Some(token),
        );
    }
}
