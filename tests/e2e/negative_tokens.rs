//! A misbehaving OpenID Provider (`tests/support/bad_op.rs`): every way its ID tokens or
//! token endpoint can be wrong (bad signature, `alg: none`, HS256 keyed with the RSA public
//! key, unknown `kid`, wrong `iss`/`aud`/`nonce`, expired, unverified email, failing, garbage,
//! error-document and slow token endpoints) ends in an error page and no session; a rotated signing key is
//! picked up by refetching the JWKS; an IdP that is down (or lies about its issuer) when
//! Envoy starts fails closed, and logins work once it is up.
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e negative_tokens:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use std::time::Duration;

use serde_json::json;

use crate::support::bad_op::{bad_op_login, bad_op_stack, BadOp, Scenario};
// The hop-chain variant, under the name these tests have always called it by.
use crate::support::checks::session_cookies_set_in_hops as session_cookies_set;
use crate::support::checks::{session_cookies_in_jar, API};
use crate::support::http::{format_hops, Browser};
use crate::support::stack::{App, Idp, Stack};

fn expect_good(st: &Stack, op: &BadOp, ctx: &str) {
    let rec = st.recorder.as_ref().unwrap();
    let n = rec.count();
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(st, &mut b);
    st.check(
        resp.status == 200 && resp.url == st.url("/private?from=e2e"),
        || {
            format!(
                "{ctx}: control login must succeed:\n{}\nfinal: {}\nOP events:\n{}",
                format_hops(&hops),
                resp.short(),
                op.events()
            )
        },
    );
    st.check(rec.count() == n + 1, || {
        format!("{ctx}: the app must have seen exactly one request")
    });
    let last = rec.requests().pop().unwrap();
    st.check(
        last.header("x-forwarded-email") == Some("alice@example.com"),
        || format!("{ctx}: app saw {:?}", last.headers),
    );
    let v = op.violations();
    st.check(v.is_empty(), || {
        format!("{ctx}: the filter broke the protocol: {v:?}")
    });
}

fn expect_rejected(
    st: &Stack,
    op: &BadOp,
    name: &str,
    status_ok: impl Fn(u16) -> bool,
    status_desc: &str,
) -> u16 {
    let rec = st.recorder.as_ref().unwrap();
    let n = rec.count();
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(st, &mut b);
    let ctx = format!("scenario `{name}`");
    let msg = || {
        format!(
            "{}\nfinal: {}\nOP events:\n{}",
            format_hops(&hops),
            resp.short(),
            op.events()
        )
    };
    st.check(resp.url.contains("/oauth2/callback"), || {
        format!("{ctx}: must end at the callback:\n{}", msg())
    });
    st.check(resp.status >= 400 && status_ok(resp.status), || {
        format!("{ctx}: status must be {status_desc}:\n{}", msg())
    });
    st.check(
        resp.header("content-type")
            .unwrap_or("")
            .contains("text/html"),
        || format!("{ctx}: error page must be HTML:\n{}", msg()),
    );
    st.check(session_cookies_set(&hops).is_empty(), || {
        format!("{ctx}: a session cookie was set:\n{}", msg())
    });
    st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
        format!("{ctx}: session cookie in jar:\n{}", msg())
    });
    st.check(rec.count() == n, || {
        format!("{ctx}: the app received a request:\n{}", rec.summary())
    });
    // The next request is still unauthenticated.
    let r = b.get(&st.url("/"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| {
                    l.as_str()
                        .starts_with(&format!("{}/authorize", op.issuer()))
                })
                .unwrap_or(false),
        || format!("{ctx}: next GET / must redirect to login: {}", r.short()),
    );
    resp.status
}

/// B1: every way an OP can be wrong ends in an error page and no session.
#[test]
fn b01_misbehaving_op_scenarios() {
    let op = BadOp::start(crate::support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "scenario `good` (first)");

    let any4xx5xx = |s: u16| (400..600).contains(&s);
    let mut statuses = Vec::new();
    let token_problems: Vec<(&str, Scenario)> = vec![
        ("bad signature", Scenario::BadSignature),
        ("alg none", Scenario::AlgNone),
        (
            "HS256 keyed with the RSA public key (PEM)",
            Scenario::Hs256PublicPem,
        ),
        (
            "HS256 keyed with the RSA public key (DER)",
            Scenario::Hs256PublicDer,
        ),
        ("unknown kid", Scenario::UnknownKid),
        ("known kid, wrong key", Scenario::WrongKeyForKid),
        ("wrong iss", Scenario::WrongIssuer),
        ("wrong aud", Scenario::WrongAudience),
        ("expired", Scenario::Expired),
        ("nonce mismatch", Scenario::NonceMismatch),
        ("nonce missing", Scenario::NonceMissing),
        ("email not verified", Scenario::EmailUnverified),
        ("token endpoint 500", Scenario::Token500),
        ("token endpoint returns non-JSON", Scenario::TokenGarbage),
        (
            "token endpoint answers an error document (400 invalid_grant)",
            Scenario::TokenErrorJson,
        ),
    ];
    for (name, sc) in token_problems {
        op.set_scenario(sc);
        let s = expect_rejected(&st, &op, name, any4xx5xx, "4xx/5xx");
        statuses.push(format!("{name}: {s}"));
    }
    op.set_scenario(Scenario::StateMismatch);
    let s = expect_rejected(&st, &op, "state mismatch", |s| s == 403, "403");
    statuses.push(format!("state mismatch: {s}"));
    let tr = op.token_requests();
    op.set_scenario(Scenario::TokenSlow(Duration::from_secs(4)));
    let t0 = std::time::Instant::now();
    let s = expect_rejected(
        &st,
        &op,
        "token endpoint slower than idp_timeout (2s)",
        |s| s >= 500,
        "5xx (502/504)",
    );
    statuses.push(format!("slow token endpoint: {s}"));
    st.check(t0.elapsed() < Duration::from_secs(4), || {
        format!("the filter waited {:?} for a 2s idp_timeout", t0.elapsed())
    });
    st.check(op.token_requests() == tr + 1, || {
        "slow scenario: exactly one token request expected".into()
    });

    // After all that, a good login still works.
    std::thread::sleep(Duration::from_secs(3)); // let the slow OP thread finish
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "scenario `good` (after the failures)");
    eprintln!("b01 statuses: {}", statuses.join("; "));
}

/// B2: the OP rotates its signing key; the filter refetches the JWKS on an unknown kid.
#[test]
fn b02_jwks_key_rotation() {
    let op = BadOp::start(crate::support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "login with k1");
    let j = op.jwks_requests();
    st.check(j >= 1, || "the JWKS was never fetched".into());
    // The filter refetches keys on an unknown kid at most every KEY_REFETCH_MIN_SECS (5 s);
    // a real rotation comes long after the last fetch.
    std::thread::sleep(Duration::from_secs(6));
    op.rotate_to_k2();
    expect_good(&st, &op, "login after rotation to k2");
    st.check(op.jwks_requests() > j, || {
        format!(
            "the JWKS was not refetched after rotation ({} fetches)",
            op.jwks_requests()
        )
    });
    // Whether tokens signed with the retired k1 are still accepted depends on the key cache
    // policy (replace vs. merge); not asserted.
}

/// B5: the IdP is down when Envoy starts: requests fail closed (5xx, nothing proxied), and
/// once the IdP comes up logins work without restarting Envoy. A discovery document whose
/// issuer differs from the configured one is refused.
#[test]
fn b05_idp_down_at_start_then_up() {
    let port = crate::support::proc::free_port();
    let st = Stack::builder()
        .idp(Idp::External { port })
        .app(App::Recorder)
        .inline_secrets()
        .client_secret("bad-op-secret")
        .plugin("idp_timeout", json!("2s"))
        .start();
    let rec = st.recorder.as_ref().unwrap();
    let mut b = Browser::new();
    // A browser must be sent to the IdP, which is impossible: fail closed.
    let r = b.get(&st.url("/"));
    st.check(r.status >= 500, || {
        format!(
            "GET / (browser) with the IdP down must fail closed with 5xx: {}",
            r.short()
        )
    });
    // An API client without a session needs no IdP to be told 401 (5xx is acceptable too).
    let r = b.get_with(&st.url("/api"), API);
    st.check(r.status == 401 || r.status >= 500, || {
        format!(
            "GET /api (API) with the IdP down must be 401 or 5xx: {}",
            r.short()
        )
    });
    let r = b.get(&st.url("/ping"));
    st.check(r.status == 200, || {
        format!("/ping with the IdP down: {}", r.short())
    });
    st.check(rec.count() == 0, || {
        format!("requests reached the app:\n{}", rec.summary())
    });

    // The OP comes up but lies about its issuer: still refused.
    let op = BadOp::start_on(port, crate::support::stack::CLIENT_ID, "bad-op-secret");
    op.set_redirect_uri(&st.redirect_url());
    op.set_discovery_issuer(Some("http://127.0.0.1:1".into()));
    std::thread::sleep(Duration::from_secs(3)); // past the filter's retry back-off
    let r = b.get(&st.url("/"));
    st.check(r.status >= 500, || {
        format!(
            "discovery with a foreign issuer must not be used: {}",
            r.short()
        )
    });
    st.check(op.discovery_requests() >= 1, || {
        "the filter never retried discovery".into()
    });

    // Now it tells the truth: logins work.
    op.set_discovery_issuer(None);
    std::thread::sleep(Duration::from_secs(3));
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "login after the IdP came up");
}
