//! WebSocket upgrades and gRPC calls through the gate: never a redirect, gRPC errors in
//! gRPC's own form.

use super::*;

fn upgrade(extra: &[(&str, &str)]) -> Request {
    let mut h = vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend_from_slice(extra);
    get("/ws", &h)
}

fn grpc(extra: &[(&str, &str)]) -> Request {
    let mut r = get("/echo.Echo/Say", extra);
    r.headers.retain(|n, _| n != "accept" && n != ":method");
    r.headers.push(":method", "POST");
    r.headers.push("content-type", "application/grpc");
    r.headers.push("te", "trailers");
    r
}

#[test]
fn websocket_upgrades_are_authenticated_like_any_request() {
    let mut w = World::new();
    // A browser's `Accept` does not make an upgrade a navigation: 401, never a redirect.
    let r = respond(w.decide(&upgrade(&[])));
    assert_eq!(r.status, 401);
    let done = login_with(&mut w, "/", good_claims);
    let jar = cookie_header(&set_cookies(&done));
    let Decision::Continue { set, .. } = w.decide(&upgrade(&[("cookie", &jar)])).decision else {
        panic!("an upgrade with a session goes on");
    };
    assert!(set.contains(&("x-forwarded-email", "alice@example.com".into())));
}

#[test]
fn grpc_calls_get_grpc_statuses() {
    let mut w = World::new();
    w.config.skip_jwt_bearer_tokens = true;
    let r = respond(w.decide(&grpc(&[])));
    assert_eq!((r.status, header(&r, "grpc-status")), (200, Some("16")));
    assert_eq!(header(&r, "content-type"), Some("application/grpc"));
    assert!(r.body.is_empty());
    let r = respond(w.decide(&grpc(&[("authorization", "Bearer x.y.z")])));
    assert_eq!(header(&r, "grpc-status"), Some("16"));
    assert!(header(&r, "grpc-message").is_some_and(|m| m.starts_with("invalid token")));

    let done = login_with(&mut w, "/", good_claims);
    let jar = cookie_header(&set_cookies(&done));
    assert!(matches!(
        w.decide(&grpc(&[("cookie", &jar)])).decision,
        Decision::Continue { .. }
    ));
    let mut claims = testkeys::id_claims(NOW);
    claims.as_object_mut().unwrap().remove("nonce");
    let token = format!("Bearer {}", testkeys::sign_rs256(Some("rsa1"), &claims));
    assert!(matches!(
        w.decide(&grpc(&[("authorization", &token)])).decision,
        Decision::Continue { .. }
    ));
    // Authenticated but refused by the rules: PERMISSION_DENIED.
    w.config.rules.allowed_groups = vec!["ops".into()];
    w.sessions = Cache::new(16, 1 << 20);
    let r = respond(w.decide(&grpc(&[("cookie", &jar)])));
    assert_eq!((r.status, header(&r, "grpc-status")), (200, Some("7")));
}

#[test]
fn an_unreachable_idp_is_unavailable_in_the_callers_protocol() {
    let r = super::unavailable(&Default::default(), 503, Some(&grpc(&[])));
    assert_eq!((r.status, header(&r, "grpc-status")), (200, Some("14")));
    let r = super::unavailable(&Default::default(), 503, Some(&get("/", &[])));
    assert_eq!(r.status, 503);
    assert!(r.body.contains("temporarily unavailable"));
    assert_eq!(
        super::unavailable(&Default::default(), 500, None).status,
        500
    );
}
