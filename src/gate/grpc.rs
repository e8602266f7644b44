//! Answers gRPC clients can read. A gRPC library reports an HTML page, a redirect or a bare
//! 401 as an opaque transport error; it understands a trailers-only response: HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and `grpc-message` in the headers.

use super::request::Response;
use super::vocab::{Decision, Step};

/// The gRPC form of a local error answer; anything else is left as it is.
pub(super) fn answer(step: Step) -> Step {
    match step.decision {
        Decision::Respond(r) => Step {
            decision: Decision::Respond(response(r)),
            log: step.log,
            publish: step.publish,
        },
        decision => Step {
            decision,
            log: step.log,
            publish: step.publish,
        },
    }
}

/// A local answer in gRPC's form: errors as trailers-only answers, successes untouched.
pub(super) fn response(r: Response) -> Response {
    if (200..300).contains(&r.status) {
        return r;
    }
    let (code, message) = status_for(&r);
    let headers = vec![
        ("content-type".to_string(), "application/grpc".to_string()),
        ("grpc-status".to_string(), code.to_string()),
        ("grpc-message".to_string(), percent_encode(&message)),
    ]
    .into_iter()
    .chain(
        r.headers
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")),
    )
    .collect();
    Response {
        status: 200,
        headers,
        body: String::new(),
    }
}

/// gRPC's own HTTP-to-status mapping ("HTTP to gRPC Status Code Mapping"), with the two
/// codes a login gate means: 16 UNAUTHENTICATED and 7 PERMISSION_DENIED.
fn status_for(r: &Response) -> (u8, String) {
    let detail = serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("error_description")?.as_str().map(str::to_string));
    match r.status {
        401 => (
            16,
            detail.map_or("authentication required".into(), |d| {
                format!("invalid token: {d}")
            }),
        ),
        403 => (7, "permission denied".into()),
        404 => (12, "not found".into()),
        400 | 500 => (13, "internal error".into()),
        429 | 502..=504 => (14, "unavailable".into()),
        _ => (2, "unknown".into()),
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, every other byte as `%XX`.
fn percent_encode(message: &str) -> String {
    message
        .bytes()
        .map(|b| match b {
            0x20..=0x7e if b != b'%' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::request::Request;

    fn respond(status: u16, body: &str) -> Step {
        Step {
            decision: Decision::Respond(Response {
                status,
                headers: vec![
                    ("content-type".into(), "text/html".into()),
                    ("www-authenticate".into(), "Bearer".into()),
                    ("set-cookie".into(), "x=y".into()),
                ],
                body: body.into(),
            }),
            log: None,
            publish: None,
        }
    }

    fn headers(step: Step) -> (u16, Vec<(String, String)>, String) {
        match step.decision {
            Decision::Respond(r) => (r.status, r.headers, r.body),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_types() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=x", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/json", false),
        ] {
            let req = Request {
                headers: vec![("content-type".into(), ct.into())].into(),
            };
            assert_eq!(req.is_grpc(), grpc, "{ct}");
        }
        assert!(!Request::default().is_grpc());
    }

    #[test]
    fn errors_become_trailers_only_answers() {
        for (status, code) in [
            (401, "16"),
            (403, "7"),
            (404, "12"),
            (500, "13"),
            (503, "14"),
            (302, "2"),
        ] {
            let (s, h, body) = headers(answer(respond(status, "<html>")));
            assert_eq!((s, body.as_str()), (200, ""), "{status}");
            assert!(h.contains(&("content-type".into(), "application/grpc".into())));
            assert!(
                h.contains(&("grpc-status".into(), code.into())),
                "{status}: {h:?}"
            );
            assert!(!h.iter().any(|(n, _)| n == "set-cookie"));
            assert!(h.contains(&("www-authenticate".into(), "Bearer".into())));
        }
        let bad = r#"{"error":"invalid_token","error_description":"bad signature"}"#;
        let (_, h, _) = headers(answer(respond(401, bad)));
        assert!(h.contains(&("grpc-message".into(), "invalid token: bad signature".into())));
        let (s, _, body) = headers(answer(respond(200, "OK")));
        assert_eq!(
            (s, body.as_str()),
            (200, "OK"),
            "successes stay as they are"
        );
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}\n"), "a b%25c%C3%A9%0A");
    }
}
