//! Checks shared by the end-to-end modules (`tests/e2e/`): what the gate's answers look like
//! (login redirect, the bare 401), the session cookies a response, a redirect chain or a
//! browser holds, requests with a raw target, and reading the Recorder's `/headers` echo.

use std::time::Duration;

use serde_json::Value;

use super::http::{raw_request, raw_request_target, Browser, Hop, Response, SetCookie};
use super::stack::Stack;

/// The default session cookie name and its login-attempt (CSRF) cookie.
pub const SESSION: &str = "_oauth2_proxy";
pub const CSRF: &str = "_oauth2_proxy_csrf";

/// What an API client sends.
pub const API: &[(&str, &str)] = &[("Accept", "application/json")];

/// Every identity header the filter owns: the client may never supply any of them.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
];

/// `_oauth2_proxy` or `_oauth2_proxy_<digits>` (not the CSRF cookie).
pub fn is_session_cookie_name(n: &str) -> bool {
    n == SESSION
        || n.strip_prefix("_oauth2_proxy_")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Session Set-Cookies of a response that store a value (not deletions).
pub fn session_cookies_set(r: &Response) -> Vec<SetCookie> {
    r.set_cookies()
        .into_iter()
        .filter(|c| is_session_cookie_name(&c.name) && !c.is_deletion() && !c.value.is_empty())
        .collect()
}

/// Session Set-Cookies (not deletions) anywhere in a chain of hops.
pub fn session_cookies_set_in_hops(hops: &[Hop]) -> Vec<SetCookie> {
    hops.iter()
        .flat_map(|h| h.set_cookies.iter().map(|s| SetCookie::parse(s)))
        .filter(|c| is_session_cookie_name(&c.name) && !c.is_deletion() && !c.value.is_empty())
        .collect()
}

/// The names of the session cookies `b` holds for `origin`, sorted.
pub fn session_cookies_in_jar(b: &Browser, origin: &str) -> Vec<String> {
    let mut v: Vec<String> = b
        .cookies(origin)
        .iter()
        .filter(|c| is_session_cookie_name(&c.name))
        .map(|c| c.name.clone())
        .collect();
    v.sort();
    v
}

/// The first hop of a chain whose URL contains `path_part`.
pub fn find_hop<'a>(hops: &'a [Hop], path_part: &str) -> Option<&'a Hop> {
    hops.iter().find(|h| h.url.contains(path_part))
}

pub fn discovery(st: &Stack) -> Value {
    raw_request(
        "GET",
        &format!("{}/.well-known/openid-configuration", st.issuer()),
        &[],
        None,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| st.fail(&format!("IdP discovery: {e}")))
    .json()
}

pub fn authz_endpoint(st: &Stack) -> String {
    discovery(st)["authorization_endpoint"]
        .as_str()
        .unwrap_or_else(|| st.fail("discovery has no authorization_endpoint"))
        .to_string()
}

/// `resp` is a 302 to the OP's authorization endpoint (a browser sent to log in).
pub fn assert_login_redirect(st: &Stack, resp: &Response, authz: &str, ctx: &str) {
    let at_authz = resp.location().is_some_and(|mut l| {
        l.set_query(None);
        l.as_str() == authz
    });
    st.check(resp.status == 302 && at_authz, || {
        format!(
            "{ctx}: expected 302 to the authorization endpoint {authz}, got {}",
            resp.short()
        )
    });
}

/// Whether `resp` is the filter's own answer to a request without a session: 401, no
/// redirect, body `{"error":"unauthorized"}`. Envoy's own errors never look like this.
pub fn is_gate_401(resp: &Response) -> bool {
    resp.status == 401
        && resp.header("location").is_none()
        && serde_json::from_slice::<Value>(&resp.body).ok()
            == Some(serde_json::json!({"error": "unauthorized"}))
}

/// `resp` is the filter's bare 401 and sets no session.
pub fn assert_gate_401(st: &Stack, resp: &Response, ctx: &str) {
    st.check(is_gate_401(resp), || {
        format!(
            "{ctx}: expected the filter's 401 {{\"error\":\"unauthorized\"}}, got {}",
            resp.short()
        )
    });
    st.check(session_cookies_set(resp).is_empty(), || {
        format!("{ctx}: a 401 set a session cookie: {}", resp.short())
    });
}

/// `resp` is a 401 without a Location (an API client without a session) and sets no
/// session; unlike [`assert_gate_401`] the body is not checked.
pub fn assert_401(st: &Stack, resp: &Response, ctx: &str) {
    st.check(
        resp.status == 401 && resp.header("location").is_none(),
        || format!("{ctx}: expected 401 without redirect, got {}", resp.short()),
    );
    st.check(session_cookies_set(resp).is_empty(), || {
        format!(
            "{ctx}: a 401 must not set a session cookie: {}",
            resp.short()
        )
    });
}

/// One request to Envoy with `target` sent byte for byte as the request-target.
pub fn send_target(
    st: &Stack,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw_request_target(
        false,
        method,
        "127.0.0.1",
        st.listen_port,
        target,
        &format!("{}{}", st.base(), target.escape_debug()),
        &hs,
        None,
        Duration::from_secs(10),
    )
}

/// A header's value in the Recorder's `/headers` echo (copies joined with `, `).
pub fn header_str(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(|x| x.as_str()).map(str::to_string)
}

/// The headers the app received, as sent (the echo's `_raw`).
pub fn raw_headers(v: &Value) -> Vec<(String, String)> {
    v.get("_raw")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_str()?.into(), p.get(1)?.as_str()?.into())))
                .collect()
        })
        .unwrap_or_default()
}

/// How many copies of header `name` the app received.
pub fn raw_count(v: &Value, name: &str) -> usize {
    raw_headers(v)
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}
