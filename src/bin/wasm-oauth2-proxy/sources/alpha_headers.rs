//! The alpha config's `injectRequestHeaders` and `injectResponseHeaders`, read back into the
//! legacy flags that produce the same headers (`getPassUserHeaders`, `getPassAccessTokenHeader`,
//! `getAuthorizationHeader`, `getXAuthRequestHeaders` in `pkg/apis/options/legacy_options.go`).
//! A header those flags cannot produce is reported, never dropped silently.

use yaml_rust2::Yaml;

use super::Input;
use crate::report::Verdict;
use crate::settings::{setting, Layer, Raw};

/// (header, claim, prefix) -> the flag that sets it.
const REQUEST: &[(&str, &str, &str, &str)] = &[
    ("x-forwarded-user", "user", "", "pass_user_headers"),
    ("x-forwarded-user", "email", "", "prefer_email_to_user"),
    ("x-forwarded-email", "email", "", "pass_user_headers"),
    ("x-forwarded-groups", "groups", "", "pass_user_headers"),
    (
        "x-forwarded-preferred-username",
        "preferred_username",
        "",
        "pass_user_headers",
    ),
    (
        "x-forwarded-access-token",
        "access_token",
        "",
        "pass_access_token",
    ),
    (
        "authorization",
        "id_token",
        "Bearer ",
        "pass_authorization_header",
    ),
];

const RESPONSE: &[(&str, &str, &str, &str)] = &[
    ("x-auth-request-user", "user", "", "set_xauthrequest"),
    ("x-auth-request-email", "email", "", "set_xauthrequest"),
    (
        "x-auth-request-preferred-username",
        "preferred_username",
        "",
        "set_xauthrequest",
    ),
    ("x-auth-request-groups", "groups", "", "set_xauthrequest"),
    (
        "x-auth-request-access-token",
        "access_token",
        "",
        "set_xauthrequest",
    ),
    (
        "authorization",
        "id_token",
        "Bearer ",
        "set_authorization_header",
    ),
];

pub fn read(root: &Yaml, file: &str, input: &mut Input) {
    // With an alpha config, oauth2-proxy injects exactly the headers it lists: the filter's
    // user headers (on by default) are on only if the list asks for them.
    let mut pass_user_headers = false;
    for (field, table) in [
        ("injectRequestHeaders", REQUEST),
        ("injectResponseHeaders", RESPONSE),
    ] {
        for (i, h) in root[field].as_vec().into_iter().flatten().enumerate() {
            let name = h["name"].as_str().unwrap_or("").to_ascii_lowercase();
            let origin = format!(
                "{field}[{i}] {} ({file})",
                h["name"].as_str().unwrap_or("?")
            );
            let values = h["values"].as_vec().map_or(&[][..], Vec::as_slice);
            let flag = match values {
                [v] if v["basicAuthPassword"].is_badvalue() => {
                    let claim = v["claim"].as_str().unwrap_or("");
                    let prefix = v["prefix"].as_str().unwrap_or("");
                    table
                        .iter()
                        .find(|(n, c, p, _)| *n == name && *c == claim && *p == prefix)
                        .map(|(_, _, _, f)| *f)
                }
                _ => None,
            };
            let Some(flag) = flag else {
                input.findings.push((
                    Verdict::Unsupported,
                    origin,
                    "the filter sets only oauth2-proxy's standard identity headers; this one \
                     (a static value, Basic auth or another claim) is not sent"
                        .into(),
                ));
                continue;
            };
            if flag == "pass_user_headers" {
                pass_user_headers = true;
                continue;
            }
            if let Some(s) = setting(crate::options::by_cfg(flag), Raw::Bool(true), origin) {
                input.settings.set(Layer::Alpha, s);
            }
            if h["preserveRequestValue"].as_bool() == Some(true) {
                input.findings.push((
                    Verdict::Unsupported,
                    format!("{field}[{i}].preserveRequestValue ({file})"),
                    "a client's own copy of an identity header is always removed".into(),
                ));
            }
        }
    }
    let origin = format!("injectRequestHeaders ({file})");
    if let Some(s) = setting(
        crate::options::by_cfg("pass_user_headers"),
        Raw::Bool(pass_user_headers),
        origin,
    ) {
        input.settings.set(Layer::Alpha, s);
    }
}
