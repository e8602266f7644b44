//! Building local responses and the steps that carry them, with the structured log line
//! that goes with each: pages, JSON errors, redirects, refusals, and the answers when the
//! filter cannot decide at all.

use super::grpc;
use super::request::{Request, Response};
use super::vocab::{Decision, Step};
use super::waits::{Pending, PendingBox};
use crate::config::{Config, Pages};
use crate::issuer::MAIN;
use crate::log::{self, Level};
use crate::oidc::JwtError;
use crate::pages;
use crate::policy::Denied;

pub(super) use crate::log::line as log_line;

/// A step without a log line.
pub(super) fn pause(decision: Decision) -> Step {
    Step {
        decision,
        log: None,
        publish: None,
    }
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
        // Which rule, in words, but never its contents (the allowed groups or domains).
        error_page(config, request_id(req), 403, &pages::refusal(denied))
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

pub(super) fn html(p: &Pages, status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            ("x-frame-options".into(), "DENY".into()),
            ("content-security-policy".into(), pages::csp(p)),
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

/// An error page with the request's `x-request-id`, linking to the sign-in page.
pub(super) fn error_page(
    config: &Config,
    id: Option<&str>,
    status: u16,
    message: &str,
) -> Response {
    let sign_in = format!("{}/sign_in", config.proxy_prefix);
    let page = pages::error(&config.pages, status, message, &sign_in, id);
    html(&config.pages, status, page)
}

/// Envoy's `x-request-id` when it is plain enough to show and log.
pub fn request_id(req: &Request) -> Option<&str> {
    req.header("x-request-id").filter(|id| log::plain_id(id))
}

pub(super) fn internal_error(config: &Config, req: &Request, what: &str) -> Step {
    let path = req.path_only();
    respond_step(
        error_page(
            config,
            request_id(req),
            500,
            "Something went wrong. Please try again.",
        ),
        Some((Level::Warn, log::line("error", path, &[("reason", what)]))),
    )
}

/// The answer when the filter cannot decide at all (the IdP unreachable, a host failure), in
/// the request's own protocol when the request is known.
pub fn unavailable(p: &Pages, status: u16, req: Option<&Request>) -> Response {
    let message = "The login service is temporarily unavailable. Please try again shortly.";
    let id = req.and_then(request_id);
    let page = html(p, status, pages::error(p, status, message, "/", id));
    match req {
        Some(r) if r.is_grpc() => grpc::response(page),
        _ => page,
    }
}

/// Waits for the login issuer's keys to be fetched again: an ID token (a login's or a
/// refresh's) named a `kid` they lack.
pub(super) fn refetch_keys(pending: Pending, path: &str) -> Step {
    Step {
        decision: Decision::NeedKeys(MAIN, PendingBox(pending)),
        log: Some((
            Level::Info,
            log::line("jwks_refresh", path, &[("reason", "unknown_kid")]),
        )),
        publish: None,
    }
}

/// RFC 6750 3.1: a bearer token that did not verify gets a 401 that says so.
pub(super) fn bearer_refused(req: &Request, e: JwtError) -> Step {
    let mut r = json(
        401,
        &serde_json::json!({"error": "invalid_token", "error_description": e.to_string()}),
    );
    r.headers.push((
        "www-authenticate".into(),
        "Bearer error=\"invalid_token\"".into(),
    ));
    let reason = e.to_string();
    respond_step(
        r,
        Some((
            Level::Info,
            log::line("bearer_rejected", req.path_only(), &[("reason", &reason)]),
        )),
    )
}

/// A 401 without credentials tells a machine client that a bearer token would do.
pub(super) fn challenge(config: &Config, mut r: Response) -> Response {
    if config.skip_jwt_bearer_tokens {
        r.headers.push(("www-authenticate".into(), "Bearer".into()));
    }
    r
}
