//! Building local responses and the structured log lines that go with decisions.

use super::{Decision, Level, Request, Response, Step};
use crate::config::Config;
use crate::pages;
use crate::policy::Denied;

pub(super) fn log_line(event: &str, req_path: &str, fields: &[(&str, &str)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), event.into());
    m.insert("path".into(), req_path.into());
    for (k, v) in fields {
        m.insert((*k).into(), (*v).into());
    }
    serde_json::Value::Object(m).to_string()
}

pub(super) fn respond_step(response: Response, log: Option<(Level, String)>) -> Step {
    Step {
        decision: Decision::Respond(response),
        log,
        publish: None,
    }
}

pub(super) fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/plain; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: format!("{body}\n"),
    }
}

pub(super) fn json(status: u16, body: &serde_json::Value) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.to_string(),
    }
}

pub(super) fn json_error(status: u16, error: &str) -> Response {
    json(status, &serde_json::json!({ "error": error }))
}

/// A request without a valid session, answered with `response` and logged as such.
pub(super) fn unauthenticated(req: &Request, response: Response) -> Step {
    respond_step(
        response,
        Some((
            Level::Info,
            log_line("unauthenticated", req.path_only(), &[]),
        )),
    )
}

/// Authenticated, but the access rules do not admit the user: a page for browsers, a bare
/// 403 for API clients.
pub(super) fn forbidden(config: &Config, req: &Request, denied: Denied, email: &str) -> Step {
    let response = if req.is_browser() {
        error_page(
            &config.proxy_prefix,
            403,
            "You are not allowed to access this application.",
        )
    } else {
        json_error(403, "forbidden")
    };
    respond_step(
        response,
        Some((
            Level::Info,
            log_line(
                "forbidden",
                req.path_only(),
                &[("reason", denied.reason()), ("email", email)],
            ),
        )),
    )
}

pub(super) fn html(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            ("x-frame-options".into(), "DENY".into()),
            (
                "content-security-policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'".into(),
            ),
        ],
        body,
    }
}

pub(super) fn redirect_to(location: &str, set_cookies: Vec<String>) -> Response {
    let mut headers = vec![
        ("location".to_string(), location.to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    headers.extend(
        set_cookies
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c)),
    );
    Response {
        status: 302,
        headers,
        body: String::new(),
    }
}

pub(super) fn error_page(prefix: &str, status: u16, message: &str) -> Response {
    html(
        status,
        pages::error(status, message, &format!("{prefix}/sign_in")),
    )
}
