//! A session's life after login, driven through the gate: when it is due for a refresh,
//! every way a refresh ends (and how other requests share it), minimal cookies, secret
//! rotation, login-attempt cookies, sign-out at the IdP, and the token exchanged for the app.

use super::*;
use crate::config::TokenExchange;
use crate::refresh::{self, Entry, Plan, State};
use std::collections::HashMap;

/// The refresh token the IdP issues at login.
const RT: &str = "RT-1";
/// `tests_support::base()`'s `cookie_secret`, and another one.
const SECRET_A: &str = "0123456789abcdef0123456789abcdef";
const SECRET_B: &str = "fedcba9876543210fedcba9876543210";

fn api(path: &str, extra: &[(&str, &str)]) -> Request {
    let mut r = get(path, extra);
    r.headers.retain(|n, _| n != "accept");
    r.headers.push("accept", "application/json");
    r
}

fn with_cookie(path: &str, jar: &str) -> Request {
    get(path, &[("cookie", jar)])
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Logs in, the token endpoint answering `extra` besides the access and ID tokens; the
/// cookies the browser then holds, as a `Cookie` header value.
fn log_in(w: &mut World, extra: Value) -> String {
    let done = login_answering(w, "/", good_claims, &extra);
    assert_eq!(done.status, 302, "{}", done.body);
    cookie_header(&set_cookies(&done))
}

fn big_claims(nonce: &str) -> Value {
    let mut c = good_claims(nonce);
    c["groups"] = (0..150)
        .map(|i| format!("group-with-a-fairly-long-name-{i:03}"))
        .collect::<Vec<_>>()
        .into();
    c
}

/// The session a `Cookie` header value carries (whole or chunked), opened at `w.now`.
fn opened(w: &World, jar: &str) -> Session {
    let cookies = cookie::parse(std::iter::once(jar));
    let value = cookie::read_joined(&cookies, &w.config.cookie.name).expect("a session cookie");
    session::open(
        &w.config.keys.current.session,
        &w.config.cookie.name,
        &value,
        w.now,
    )
    .expect("the session opens")
}

/// The names of the session's cookies (whole or chunks) in a `Cookie` header value.
fn session_names(w: &World, jar: &str) -> Vec<String> {
    cookie::parse(std::iter::once(jar))
        .into_iter()
        .filter(|(n, _)| cookie::is_part_of(&w.config.cookie.name, n))
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The value `Set-Cookie` strings give `name`: `""` when they expire it.
fn reply_value(sets: &[String], name: &str) -> Option<String> {
    sets.iter().find_map(|c| {
        let (nv, _) = c.split_once(';')?;
        let (n, v) = nv.split_once('=')?;
        (n == name).then(|| v.to_string())
    })
}

/// A request that went on to the app: the headers set for it and the cookies for its
/// response.
struct Passed {
    set: Vec<(String, String)>,
    reply: Vec<String>,
}

impl Passed {
    fn header(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn session_cookie(&self) -> String {
        let v = reply_value(&self.reply, "_oauth2_proxy").expect("a renewed session cookie");
        assert!(!v.is_empty());
        v
    }
}

fn passed(step: Step) -> Passed {
    match step.decision {
        Decision::Continue { set, reply, .. } => Passed {
            set: set
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            reply,
        },
        other => panic!("expected the request to go on, got {other:?}"),
    }
}

fn due(w: &mut World, req: &Request) -> RefreshCall {
    match w.decide(req).decision {
        Decision::Refresh(call) => *call,
        other => panic!("expected a refresh, got {other:?}"),
    }
}

fn answer(w: &mut World, pending: PendingBox, response: Option<(u16, &str)>) -> Step {
    w.run(|cx, env| resume(cx, pending.0, response.map(|(s, b)| (s, b.as_bytes())), env))
}

fn settled(w: &mut World, pending: PendingBox, how: Settled) -> Step {
    w.run(|cx, env| settle(cx, pending.0, how, env))
}

/// Proxy-wasm shared data as the adapter uses it for refresh slots: bytes and a version per
/// key, every slot created before any request (as `Coordinator::new` does).
#[derive(Default)]
struct Shared(HashMap<String, (Vec<u8>, u32)>);

impl Shared {
    fn get(&self, key: &str) -> (Vec<u8>, u32) {
        self.0.get(key).cloned().unwrap_or((b"free".to_vec(), 1))
    }

    /// Compare-and-swap, as `proxy_wasm::hostcalls::set_shared_data` with a version.
    fn cas(&mut self, key: &str, bytes: &[u8], version: u32) -> bool {
        let (_, now) = self.get(key);
        if now != version {
            return false;
        }
        self.0.insert(key.to_string(), (bytes.to_vec(), now + 1));
        true
    }

    /// What the adapter does with a refresh to coordinate: read the candidate slots, plan,
    /// and on a claim write it with compare-and-swap.
    fn coordinate(&mut self, w: &World, call: &mut RefreshCall) -> Plan {
        let timeout = w.config.idp_timeout_ms / 1000 + 1;
        let read: Vec<(Vec<u8>, u32)> = call.slots.iter().map(|k| self.get(k)).collect();
        let bytes: Vec<Option<&[u8]>> = read.iter().map(|(b, _)| Some(b.as_slice())).collect();
        let plan = refresh::plan(
            &bytes,
            &call.session_id,
            call.generation,
            w.now,
            timeout,
            call.since,
        );
        if let Plan::Claim { slot, bytes } = &plan {
            let key = call.slots[*slot].clone();
            assert!(self.cas(&key, bytes, read[*slot].1), "uncontended claim");
            let after: Vec<(Vec<u8>, u32)> = call.slots.iter().map(|k| self.get(k)).collect();
            let seen: Vec<Option<&[u8]>> = after.iter().map(|(b, _)| Some(b.as_slice())).collect();
            let (id, g) = (&call.session_id, call.generation);
            assert!(refresh::confirm(&seen, *slot, id, g, w.now, timeout));
            call.pending.0.set_claim(key, bytes.clone());
        }
        plan
    }

    /// Writes a refresh's outcome over its claim, as `filter::steps::publish` does.
    fn publish(&mut self, step: &Step) {
        if let Some(p) = &step.publish {
            let (now, version) = self.get(&p.key);
            if refresh::still_claimed(Some(&now), &p.claim) {
                assert!(self.cas(&p.key, &p.bytes, version));
            }
        }
    }
}

/// A due request's refresh, its slot claimed as the adapter claims it.
struct Claimed {
    slot: String,
    claim: Vec<u8>,
    pending: PendingBox,
}

fn claimed(w: &mut World, req: &Request) -> Claimed {
    claimed_in(&mut Shared::default(), w, req)
}

fn claimed_in(shared: &mut Shared, w: &mut World, req: &Request) -> Claimed {
    let mut call = due(w, req);
    let Plan::Claim { slot, bytes } = shared.coordinate(w, &mut call) else {
        panic!("a free slot is claimed");
    };
    Claimed {
        slot: call.slots[slot].clone(),
        claim: bytes,
        pending: call.pending,
    }
}

/// The outcome `step` publishes over the claim of `slot`.
fn published(step: &Step, slot: &str, claim: &[u8]) -> Entry {
    let p = step.publish.as_ref().expect("a published outcome");
    assert_eq!((p.key.as_str(), p.claim.as_slice()), (slot, claim));
    assert!(refresh::still_claimed(Some(claim), &p.claim));
    Entry::decode(&p.bytes).expect("a valid entry")
}

/// The IdP's answer to a refresh at `now`: new access and refresh tokens, an ID token for
/// the same user, then `extra` on top (`null` removes a field).
fn refreshed(now: u64, extra: Value) -> String {
    let mut fields = json!({"access_token": "AT-2", "refresh_token": "RT-2", "expires_in": 300});
    // Nulls too: `token_answer` removes those fields.
    let all = fields.as_object_mut().unwrap();
    all.extend(extra.as_object().unwrap().clone());
    token_answer(&testkeys::id_claims(now), &fields)
}

/// Ended for a browser: sent to log in again, its session cookie expired.
fn assert_sent_to_log_in(r: &Response) {
    assert_eq!(r.status, 302, "{}", r.body);
    let location = header(r, "location").unwrap();
    assert!(
        location.starts_with(&format!("{ISSUER}/authorize?")),
        "{location}"
    );
    assert!(set_cookies(r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && v.is_empty()));
}

/// Ended for an API client: a 401, its session cookie expired.
fn assert_401_cleared(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(set_cookies(r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && v.is_empty()));
}

// 1. When a session is due.

#[test]
fn a_session_is_refreshed_30s_before_its_access_token_expires() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    let s = opened(&w, &jar);
    assert_eq!(
        (s.access_expires_at, s.refresh_token.as_str()),
        (NOW + 300, RT)
    );
    let req = with_cookie("/app", &jar);
    for at in [NOW, NOW + 1, NOW + 269] {
        w.now = at;
        assert_eq!(
            passed(w.decide(&req)).header("x-forwarded-access-token"),
            Some("AT")
        );
    }
    w.now = NOW + 270;
    let call = due(&mut w, &req);
    assert_eq!(call.slots, refresh::slot_keys_for("_oauth2_proxy", &s.id));
    assert_eq!(call.slots.len(), refresh::CHOICES);
    assert_eq!(
        (call.session_id.as_str(), call.generation),
        (s.id.as_str(), 0)
    );
    let c = &call.callout;
    assert_eq!(
        (c.method, c.authority.as_str(), c.path.as_str()),
        ("POST", "idp.example.com", "/token")
    );
    let f = form(&c.body);
    assert_eq!(f["grant_type"], "refresh_token");
    assert_eq!(f["refresh_token"], RT);
    // API clients alike, and every second after until it is refreshed.
    w.now = NOW + 400;
    due(&mut w, &api("/app", &[("cookie", &jar)]));
}

#[test]
fn a_short_lived_access_token_is_refreshed_a_quarter_of_its_life_early() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 40}));
    let req = with_cookie("/app", &jar);
    w.now = NOW + 29;
    passed(w.decide(&req));
    w.now = NOW + 30;
    due(&mut w, &req);
}

#[test]
fn never_due_in_the_second_its_tokens_were_obtained() {
    let mut w = World::new();
    // Tokens that are due the moment they were obtained (an access token with no life
    // left): only the next second refreshes them, so a refresh cannot loop on itself.
    let s = Session {
        user: "alice@example.com".into(),
        email: "alice@example.com".into(),
        email_verified: Some(true),
        access_token: "AT".into(),
        refresh_token: RT.into(),
        created_at: NOW,
        expires_at: NOW + 3600,
        id: "sid".into(),
        sub: "user-123".into(),
        access_expires_at: NOW,
        ..Session::default()
    };
    let sealed =
        session::seal(&w.config.keys.current.session, "_oauth2_proxy", &s, [9; 12]).unwrap();
    let req = with_cookie("/app", &format!("_oauth2_proxy={sealed}"));
    passed(w.decide(&req));
    w.now = NOW + 1;
    due(&mut w, &req);
}

#[test]
fn cookie_refresh_makes_a_session_due_while_its_access_token_is_valid() {
    let mut w = World::new();
    w.config.lifecycle.cookie_refresh = 60;
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 3600}));
    let req = with_cookie("/app", &jar);
    w.now = NOW + 59;
    passed(w.decide(&req));
    w.now = NOW + 60;
    assert_eq!(due(&mut w, &req).generation, 0);
    // Without a refresh token there is nothing to refresh with: it goes on meanwhile (while
    // no token the app receives has expired: here not the ID token, which is not passed).
    let mut w = World::new();
    w.config.lifecycle.cookie_refresh = 60;
    w.config.pass_authorization_header = false;
    let jar = log_in(&mut w, json!({"expires_in": 3600}));
    w.now = NOW + 600;
    passed(w.decide(&with_cookie("/app", &jar)));
}

#[test]
fn an_expired_access_token_without_refresh_token_ends_the_session() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"expires_in": 300}));
    // Nothing to refresh with: the access token is used up to its last second.
    w.now = NOW + 299;
    passed(w.decide(&with_cookie("/app", &jar)));
    w.now = NOW + 300;
    let r = respond(w.decide(&with_cookie("/app?x=1", &jar)));
    assert_sent_to_log_in(&r);
    // The new login comes back to the same URL.
    let state = query(header(&r, "location").unwrap())["state"].clone();
    let csrf = set_cookies(&r)
        .into_iter()
        .find(|(n, _)| n == "_oauth2_proxy_csrf")
        .unwrap();
    let login =
        crate::session::csrf::verify(&w.config.keys.current.csrf, &csrf.0, &csrf.1, &state, w.now)
            .unwrap();
    assert_eq!(login.return_to, "/app?x=1");
    assert_401_cleared(&respond(w.decide(&api("/app", &[("cookie", &jar)]))));
}

// 2. A refresh that works.

#[test]
fn a_refresh_renews_the_session_cookie_and_publishes_it() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    let old = opened(&w, &jar);
    w.now = NOW + 280;
    let req = with_cookie("/app", &jar);
    let call = claimed(&mut w, &req);
    let body = refreshed(w.now, json!({}));
    let step = answer(&mut w, call.pending, Some((200, &body)));
    let entry = published(&step, &call.slot, &call.claim);
    let p = passed(step);
    let cookie = p.session_cookie();
    assert_eq!(
        entry,
        Entry {
            session: old.id.clone(),
            generation: 1,
            at: w.now,
            rotated_at: w.now,
            state: State::Done(cookie.clone()),
        }
    );
    let new = opened(&w, &format!("_oauth2_proxy={cookie}"));
    assert_eq!(new.access_token, "AT-2");
    assert_eq!(new.refresh_token, "RT-2");
    assert_eq!((new.generation, new.id.as_str()), (1, old.id.as_str()));
    assert_eq!(
        (new.created_at, new.access_expires_at),
        (w.now, w.now + 300)
    );
    assert_eq!(
        (new.sub.as_str(), new.email.as_str()),
        ("user-123", "alice@example.com")
    );
    assert!(!new.id_token.is_empty() && new.id_token != old.id_token);
    // The app gets the new tokens.
    assert_eq!(p.header("x-forwarded-access-token"), Some("AT-2"));
    assert_eq!(p.header("x-auth-request-access-token"), Some("AT-2"));
    let bearer = format!("Bearer {}", new.id_token);
    assert_eq!(p.header("authorization"), Some(bearer.as_str()));

    // A request sent with the old cookie before the browser stored the new one: the
    // refreshed session from the cache, its cookie set again, no second refresh.
    w.now += 1;
    let again = passed(w.decide(&req));
    assert_eq!(again.session_cookie(), cookie);
    assert_eq!(again.header("x-forwarded-access-token"), Some("AT-2"));
    // The new cookie goes on as it is, here and on a worker that never saw the refresh.
    let next = with_cookie("/app", &format!("_oauth2_proxy={cookie}"));
    assert!(passed(w.decide(&next)).reply.is_empty());
    w.sessions = Cache::new(16, 1 << 20);
    let p = passed(w.decide(&next));
    assert!(p.reply.is_empty());
    assert_eq!(p.header("x-forwarded-access-token"), Some("AT-2"));
}

#[test]
fn a_refresh_answer_may_leave_out_the_refresh_and_id_tokens() {
    for (leave_out, id_token_kept) in [
        (json!({"refresh_token": null}), false),
        (json!({"refresh_token": null, "id_token": null}), true),
    ] {
        let mut w = World::new();
        // The ID token is not passed to the app here (see the next test for when it is).
        w.config.pass_authorization_header = false;
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
        let old = opened(&w, &jar);
        w.now = NOW + 280;
        let call = claimed(&mut w, &with_cookie("/app", &jar));
        let body = refreshed(w.now, leave_out.clone());
        let p = passed(answer(&mut w, call.pending, Some((200, &body))));
        let new = opened(&w, &format!("_oauth2_proxy={}", p.session_cookie()));
        assert_eq!(new.access_token, "AT-2", "{leave_out}");
        assert_eq!(new.refresh_token, RT, "{leave_out}");
        assert_eq!(new.id_token == old.id_token, id_token_kept, "{leave_out}");
        assert_eq!(
            new.id_expires_at == old.id_expires_at,
            id_token_kept,
            "{leave_out}"
        );
        assert_eq!(
            (&new.user, &new.email, &new.groups, &new.sub, &new.id),
            (&old.user, &old.email, &old.groups, &old.sub, &old.id),
            "{leave_out}"
        );
        assert_eq!(new.generation, 1);
        assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
    }
}

/// Defect: a refresh that returned no new ID token kept forwarding the old, expired one with
/// `pass_authorization_header`. The README promises the app never receives an expired token:
/// the ID token's own expiry makes the session due, and a refresh that cannot renew it ends
/// the session (the user logs in again and gets a fresh one).
#[test]
fn an_id_token_the_app_receives_is_never_forwarded_expired() {
    for header in ["pass_authorization_header", "set_authorization_header"] {
        let mut w = World::new();
        w.config.pass_authorization_header = header == "pass_authorization_header";
        w.config.set_authorization_header = header == "set_authorization_header";
        // The access token lives an hour; the ID token five minutes.
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 3600}));
        let s = opened(&w, &jar);
        assert_eq!(
            (s.id_expires_at, s.access_expires_at),
            (NOW + 300, NOW + 3600)
        );
        w.now = NOW + 269;
        passed(w.decide(&with_cookie("/app", &jar)));
        // Due before the ID token expires, although the access token has long to go.
        w.now = NOW + 270;
        let call = claimed(&mut w, &with_cookie("/app", &jar));
        let body = refreshed(w.now, json!({"id_token": null, "expires_in": 3600}));
        let step = answer(&mut w, call.pending, Some((200, &body)));
        assert_eq!(
            published(&step, &call.slot, &call.claim).state,
            State::Ended,
            "{header}"
        );
        assert_sent_to_log_in(&respond(step));
    }
    // Nothing forwards it: a refresh without one goes on.
    let mut w = World::new();
    w.config.pass_authorization_header = false;
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 3600}));
    w.now = NOW + 400;
    passed(w.decide(&with_cookie("/app", &jar)));
}

/// Defect: an access token without `expires_in` was treated as never expiring. Its own `exp`
/// (a JWT access token) is used, else a conservative default lifetime, and once that has
/// passed without a refresh token the session ends rather than pass the token on.
#[test]
fn an_access_token_without_expires_in_still_expires() {
    let jwt_at = testkeys::sign_rs256(Some("rsa1"), &json!({"sub": "user-123", "exp": NOW + 120}));
    for (access_token, expires_in, until) in [
        (
            "opaque",
            None,
            NOW + crate::gate::lifecycle::DEFAULT_TOKEN_SECS,
        ),
        (jwt_at.as_str(), None, NOW + 120),
        // Both: the sooner.
        (jwt_at.as_str(), Some(600), NOW + 120),
        ("opaque", Some(600), NOW + 600),
    ] {
        let mut w = World::new();
        w.config.pass_authorization_header = false;
        let mut extra = json!({"access_token": access_token});
        if let Some(secs) = expires_in {
            extra["expires_in"] = secs.into();
        }
        let jar = log_in(&mut w, extra);
        let s = opened(&w, &jar);
        assert_eq!(s.access_expires_at, until, "{access_token} {expires_in:?}");
        w.now = until - 1;
        passed(w.decide(&with_cookie("/app", &jar)));
        w.now = until;
        assert_sent_to_log_in(&respond(w.decide(&with_cookie("/app", &jar))));
    }
}

// 3. A refreshed ID token that is not for this session.

#[test]
fn a_refreshed_id_token_for_someone_else_or_not_from_the_idp_ends_the_session() {
    type Token = Box<dyn Fn(u64) -> String>;
    let claims_with = |field: &'static str, value: &'static str| -> Token {
        Box::new(move |now| {
            let mut c = testkeys::id_claims(now);
            c[field] = value.into();
            testkeys::sign_rs256(Some("rsa1"), &c)
        })
    };
    let forged: Token = Box::new(|now| {
        let mut other = testkeys::id_claims(now);
        other["email"] = "mallory@example.com".into();
        let signed = testkeys::sign_rs256(Some("rsa1"), &testkeys::id_claims(now));
        let body = testkeys::sign_rs256(Some("rsa1"), &other);
        let (head_payload, _) = body.rsplit_once('.').unwrap();
        let (_, signature) = signed.rsplit_once('.').unwrap();
        format!("{head_payload}.{signature}")
    });
    let cases: Vec<(&str, Token)> = vec![
        ("sub", claims_with("sub", "someone-else")),
        ("aud", claims_with("aud", "another-client")),
        ("iss", claims_with("iss", "https://evil.example")),
        ("signature", forged),
    ];
    for (what, token) in &cases {
        for browser in [true, false] {
            let mut w = World::new();
            let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
            let old = opened(&w, &jar);
            w.now = NOW + 280;
            let req = if browser {
                with_cookie("/app", &jar)
            } else {
                api("/app", &[("cookie", &jar)])
            };
            let call = claimed(&mut w, &req);
            let body = refreshed(w.now, json!({"id_token": token(w.now)}));
            let step = answer(&mut w, call.pending, Some((200, &body)));
            assert_eq!(
                published(&step, &call.slot, &call.claim),
                Entry {
                    session: old.id.clone(),
                    generation: 0,
                    at: w.now,
                    rotated_at: 0,
                    state: State::Ended,
                },
                "{what}"
            );
            let r = respond(step);
            if browser {
                assert_sent_to_log_in(&r);
            } else {
                assert_401_cleared(&r);
            }
        }
    }
}

// 4. A refresh the IdP refuses or cannot answer.

#[test]
fn a_refused_refresh_ends_the_session_for_everyone() {
    for browser in [true, false] {
        let mut w = World::new();
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
        let old = opened(&w, &jar);
        w.now = NOW + 280;
        let req = if browser {
            with_cookie("/app", &jar)
        } else {
            api("/app", &[("cookie", &jar)])
        };
        let call = claimed(&mut w, &req);
        let step = answer(
            &mut w,
            call.pending,
            Some((400, r#"{"error":"invalid_grant"}"#)),
        );
        let entry = published(&step, &call.slot, &call.claim);
        assert_eq!(
            (entry.session, entry.generation, entry.state),
            (old.id.clone(), 0, State::Ended)
        );
        let r = respond(step);
        if browser {
            assert_sent_to_log_in(&r);
        } else {
            assert_401_cleared(&r);
        }
    }
}

#[test]
fn an_unreachable_idp_keeps_a_session_whose_access_token_is_still_valid() {
    let failures: [Option<(u16, &str)>; 2] = [Some((500, r#"{"error":"server_error"}"#)), None];
    for failure in failures {
        // Due through `cookie_refresh` with an hour left, and inside the 30 s margin.
        for (cookie_refresh, expires_in, at) in [(60, 3600, NOW + 61), (0, 300, NOW + 280)] {
            let mut w = World::new();
            w.config.lifecycle.cookie_refresh = cookie_refresh;
            let jar = log_in(
                &mut w,
                json!({"refresh_token": RT, "expires_in": expires_in}),
            );
            let old = opened(&w, &jar);
            w.now = at;
            let call = claimed(&mut w, &with_cookie("/app", &jar));
            let step = answer(&mut w, call.pending, failure);
            assert_eq!(
                published(&step, &call.slot, &call.claim),
                Entry {
                    session: old.id.clone(),
                    generation: 0,
                    at,
                    rotated_at: 0,
                    state: State::Unavailable,
                },
                "{failure:?}"
            );
            let p = passed(step);
            assert_eq!(
                p.header("x-forwarded-access-token"),
                Some("AT"),
                "{failure:?}"
            );
            assert!(p.reply.is_empty());
        }
    }
}

#[test]
fn an_unreachable_idp_with_an_expired_access_token_is_a_503() {
    // Only `invalid_grant` ends a session: a refusal of the client (a secret changed at the
    // IdP) or a rate limit must not log everyone out.
    let failures: [Option<(u16, &str)>; 4] = [
        Some((500, r#"{"error":"server_error"}"#)),
        None,
        Some((401, r#"{"error":"invalid_client"}"#)),
        Some((429, "")),
    ];
    for failure in failures {
        for browser in [true, false] {
            let mut w = World::new();
            let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
            w.now = NOW + 300;
            let req = if browser {
                with_cookie("/app", &jar)
            } else {
                api("/app", &[("cookie", &jar)])
            };
            let call = claimed(&mut w, &req);
            let step = answer(&mut w, call.pending, failure);
            assert_eq!(
                published(&step, &call.slot, &call.claim).state,
                State::Unavailable
            );
            assert_eq!(respond(step).status, 503, "{failure:?}");
        }
    }
}

// 5. A refresh made by another request.

#[test]
fn a_request_on_another_worker_waits_for_the_refresh_and_adopts_it() {
    let mut a = World::new();
    let jar = log_in(&mut a, json!({"refresh_token": RT, "expires_in": 300}));
    // Another worker: the same configuration, its own caches.
    let mut b = World::new();
    a.now = NOW + 280;
    b.now = NOW + 280;
    let req = with_cookie("/app", &jar);
    let mut shared = Shared::default();
    let mut call_a = due(&mut a, &req);
    let mut call_b = due(&mut b, &req);
    assert_eq!(
        (&call_b.slots, &call_b.session_id, call_b.generation),
        (&call_a.slots, &call_a.session_id, call_a.generation)
    );
    let Plan::Claim { slot, bytes: busy } = shared.coordinate(&a, &mut call_a) else {
        panic!("the first request claims a slot");
    };
    assert_eq!(shared.coordinate(&b, &mut call_b), Plan::Wait);

    let body = refreshed(a.now, json!({}));
    let step = answer(&mut a, call_a.pending, Some((200, &body)));
    published(&step, &call_a.slots[slot], &busy);
    shared.publish(&step);
    let cookie = passed(step).session_cookie();
    b.now += 1;
    assert_eq!(
        shared.coordinate(&b, &mut call_b),
        Plan::Adopt(cookie.clone())
    );

    let step = settled(&mut b, call_b.pending, Settled::Adopt(cookie.clone()));
    assert!(step.publish.is_none(), "only the refresh publishes");
    let p = passed(step);
    assert_eq!(p.session_cookie(), cookie);
    assert_eq!(p.header("x-forwarded-access-token"), Some("AT-2"));
    // B's later requests with the old cookie take the adopted session from its cache.
    assert_eq!(passed(b.decide(&req)).session_cookie(), cookie);

    // The adopted session is generation 1; when it is due in turn it refreshes with the
    // rotated refresh token, and the slot's generation-1 entry does not stop it.
    b.now = NOW + 280 + 280;
    let mut next = due(
        &mut b,
        &with_cookie("/app", &format!("_oauth2_proxy={cookie}")),
    );
    assert_eq!((next.generation, &next.slots), (1, &call_a.slots));
    assert_eq!(form(&next.callout.body)["refresh_token"], "RT-2");
    assert!(matches!(
        shared.coordinate(&b, &mut next),
        Plan::Claim { slot: s, .. } if s == slot
    ));
}

#[test]
fn a_refresh_that_ended_or_failed_elsewhere_is_settled_like_ones_own() {
    // Ended: as if this request had been refused.
    for browser in [true, false] {
        let mut w = World::new();
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
        w.now = NOW + 280;
        let req = if browser {
            with_cookie("/app", &jar)
        } else {
            api("/app", &[("cookie", &jar)])
        };
        let call = due(&mut w, &req);
        let step = settled(&mut w, call.pending, Settled::Ended);
        assert!(step.publish.is_none());
        let r = respond(step);
        if browser {
            assert_sent_to_log_in(&r);
        } else {
            assert_401_cleared(&r);
        }
    }
    // Unavailable, or an adopted cookie that does not open: on with a valid access token.
    for how in [Settled::Unavailable, Settled::Adopt("garbage".into())] {
        let mut w = World::new();
        w.config.lifecycle.cookie_refresh = 60;
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 3600}));
        w.now = NOW + 61;
        let call = due(&mut w, &with_cookie("/app", &jar));
        let p = passed(settled(&mut w, call.pending, how.clone()));
        assert_eq!(p.header("x-forwarded-access-token"), Some("AT"), "{how:?}");
        assert!(p.reply.is_empty());
    }
    // ... and a 503 once it has expired.
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    w.now = NOW + 301;
    let call = due(&mut w, &with_cookie("/app", &jar));
    let r = respond(settled(&mut w, call.pending, Settled::Unavailable));
    assert_eq!(r.status, 503);
}

// 6. The access rules after a refresh.

#[test]
fn the_access_rules_apply_to_what_the_refreshed_id_token_says() {
    let mut w = World::new();
    w.config.rules.allowed_groups = vec!["admins".into()];
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    w.now = NOW + 280;
    let req = with_cookie("/app", &jar);
    let call = claimed(&mut w, &req);
    let mut demoted = testkeys::id_claims(w.now);
    demoted["groups"] = json!(["devs"]);
    let body = refreshed(
        w.now,
        json!({"id_token": testkeys::sign_rs256(Some("rsa1"), &demoted)}),
    );
    let step = answer(&mut w, call.pending, Some((200, &body)));
    assert!(matches!(
        published(&step, &call.slot, &call.claim).state,
        State::Done(_)
    ));
    let r = respond(step);
    assert_eq!(r.status, 403);
    // The refreshed session stays refused on the next request.
    w.now += 1;
    assert_eq!(respond(w.decide(&req)).status, 403);
}

// 7. Minimal session cookies.

#[test]
fn a_minimal_session_cookie_holds_no_tokens_and_is_never_due() {
    let mut w = World::new();
    w.config.lifecycle.session_cookie_minimal = true;
    w.config.pass_access_token = false;
    w.config.pass_authorization_header = false;
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    let s = opened(&w, &jar);
    assert_eq!(
        (
            s.access_token.as_str(),
            s.id_token.as_str(),
            s.refresh_token.as_str(),
            s.access_expires_at
        ),
        ("", "", "", 0)
    );
    assert_eq!(s.email, "alice@example.com");
    for at in [NOW + 300, NOW + 86_400] {
        w.now = at;
        let p = passed(w.decide(&with_cookie("/app", &jar)));
        assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
    }
}

// 8. Cookie secret rotation.

/// `cfg()` through `Config::parse`, with `extra` on top of `tests_support::base()`.
fn parsed(extra: Value) -> Config {
    let mut v = crate::config::tests_support::base();
    merge(
        &mut v,
        &json!({
            "client_id": CLIENT_ID,
            "set_xauthrequest": true,
            "pass_access_token": true,
            "pass_authorization_header": true,
        }),
    );
    merge(&mut v, &extra);
    Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
}

/// A new configuration is a new VM: new caches.
fn reconfigure(w: &mut World, config: Config) {
    w.config = config;
    w.sessions = Cache::new(16, 1 << 20);
    w.bearers = Cache::new(16, 1 << 20);
    w.exchanged = Cache::new(16, 1 << 20);
}

#[test]
fn a_session_sealed_with_a_previous_secret_is_sealed_again_with_the_current_one() {
    let mut w = World::new();
    reconfigure(&mut w, parsed(json!({"cookie_secret": SECRET_A})));
    let jar = log_in(&mut w, json!({}));
    let before = opened(&w, &jar);
    let key_a = w.config.keys.current.session;

    reconfigure(
        &mut w,
        parsed(json!({"cookie_secret": SECRET_B, "cookie_secret_previous": [SECRET_A]})),
    );
    assert_ne!(w.config.keys.current.session, key_a);
    let req = with_cookie("/app", &jar);
    let p = passed(w.decide(&req));
    assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
    let renewed = p.session_cookie();
    let s = session::open(
        &w.config.keys.current.session,
        "_oauth2_proxy",
        &renewed,
        w.now,
    )
    .unwrap();
    assert_eq!(s, before);
    assert!(session::open(&key_a, "_oauth2_proxy", &renewed, w.now).is_none());
    // The old cookie again, before the browser stored the new one: the same new value.
    assert_eq!(passed(w.decide(&req)).session_cookie(), renewed);
    // The new cookie needs no re-seal, on this VM or a fresh one.
    let next = with_cookie("/app", &format!("_oauth2_proxy={renewed}"));
    assert!(passed(w.decide(&next)).reply.is_empty());
    let config = w.config.clone();
    reconfigure(&mut w, config);
    assert!(passed(w.decide(&next)).reply.is_empty());

    // Once A is dropped, a cookie sealed with it is no session.
    reconfigure(&mut w, parsed(json!({"cookie_secret": SECRET_B})));
    assert_sent_to_log_in(&respond(w.decide(&req)));
}

/// `/oauth2/start` with the cookies of `jar`: the response and its authorize URL's query.
fn start(w: &mut World, jar: &str) -> (Response, HashMap<String, String>) {
    let req = if jar.is_empty() {
        get("/oauth2/start?rd=/after", &[])
    } else {
        with_cookie("/oauth2/start?rd=/after", jar)
    };
    let r = respond(w.decide(&req));
    assert_eq!(r.status, 302);
    let q = query(header(&r, "location").unwrap());
    (r, q)
}

/// The browser back from the IdP for the login `q` started, with the cookies of `jar`; the
/// IdP signs for that login's nonce. The final response.
fn come_back(w: &mut World, q: &HashMap<String, String>, jar: &str) -> Response {
    let cb = with_cookie(
        &format!("/oauth2/callback?code=c&state={}", q["state"]),
        jar,
    );
    match w.decide(&cb).decision {
        Decision::Call(_, pending) => {
            let body = token_answer(&good_claims(&q["nonce"]), &json!({}));
            respond(w.run(|cx, env| resume(cx, pending.0, Some((200, body.as_bytes())), env)))
        }
        Decision::Respond(r) => r,
        other => panic!("expected the token callout, got {other:?}"),
    }
}

#[test]
fn a_login_started_before_a_secret_rotation_still_completes() {
    let mut w = World::new();
    reconfigure(&mut w, parsed(json!({"cookie_secret": SECRET_A})));
    let (r, q) = start(&mut w, "");
    let csrf = cookie_header(&set_cookies(&r));
    reconfigure(
        &mut w,
        parsed(json!({"cookie_secret": SECRET_B, "cookie_secret_previous": [SECRET_A]})),
    );
    let done = come_back(&mut w, &q, &csrf);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(header(&done, "location"), Some("/after"));
    let s = opened(&w, &cookie_header(&set_cookies(&done)));
    assert_eq!(s.email, "alice@example.com");
    // Without the previous secret the attempt is refused.
    reconfigure(&mut w, parsed(json!({"cookie_secret": SECRET_B})));
    assert_eq!(come_back(&mut w, &q, &csrf).status, 403);
}

// 9. A new login ends the session the browser holds.

#[test]
fn a_new_login_clears_the_session_cookies_and_forgets_the_session() {
    for claims in [good_claims as fn(&str) -> Value, big_claims] {
        let mut w = World::new();
        let done = login_with(&mut w, "/", claims);
        let jar = cookie_header(&set_cookies(&done));
        let names = session_names(&w, &jar);
        passed(w.decide(&with_cookie("/app", &jar)));
        assert_eq!(w.sessions.len(), 1);
        let (r, _) = start(&mut w, &jar);
        let cleared: Vec<String> = set_cookies(&r)
            .into_iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(n, _)| n)
            .collect();
        for n in &names {
            assert!(cleared.contains(n), "{n} not cleared: {cleared:?}");
        }
        for n in &names {
            let prefix = format!("{n}=;");
            assert!(r.headers.iter().any(|(h, v)| h == "set-cookie"
                && v.starts_with(&prefix)
                && v.contains("Max-Age=0")));
        }
        assert_eq!(w.sessions.len(), 0, "the session left this VM's cache");
        // The login attempt's own cookie is set all the same.
        assert!(set_cookies(&r)
            .iter()
            .any(|(n, v)| n == "_oauth2_proxy_csrf" && !v.is_empty()));
    }
}

// 10. One CSRF cookie per login attempt.

#[test]
fn per_request_csrf_cookies_let_parallel_logins_finish_in_any_order() {
    let mut w = World::new();
    w.config.lifecycle.csrf_per_request = true;
    let (r1, q1) = start(&mut w, "");
    let c1 = set_cookies(&r1)[0].clone();
    assert_eq!(c1.0, format!("_oauth2_proxy_csrf_{}", &q1["state"][..16]));
    let jar1 = format!("{}={}", c1.0, c1.1);
    let (r2, q2) = start(&mut w, &jar1);
    let sets2 = set_cookies(&r2);
    assert_eq!(sets2.len(), 1, "nothing expired under the limit: {sets2:?}");
    let c2 = sets2[0].clone();
    assert_eq!(c2.0, format!("_oauth2_proxy_csrf_{}", &q2["state"][..16]));
    assert_ne!(c1.0, c2.0);
    let both = format!("{jar1}; {}={}", c2.0, c2.1);

    // The second tab's login comes back first.
    let done2 = come_back(&mut w, &q2, &both);
    assert_eq!(done2.status, 302, "{}", done2.body);
    let sets = set_cookies(&done2);
    assert!(sets.contains(&(c2.0.clone(), String::new())));
    assert!(
        !sets.iter().any(|(n, _)| *n == c1.0),
        "the other tab's attempt stays"
    );
    assert!(sets
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    // Then the first, with only its own cookie left.
    let done1 = come_back(&mut w, &q1, &jar1);
    assert_eq!(done1.status, 302, "{}", done1.body);
    let sets = set_cookies(&done1);
    assert!(sets.contains(&(c1.0.clone(), String::new())));
    assert!(sets
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
}

#[test]
fn per_request_csrf_cookies_beyond_the_limit_expire_the_oldest() {
    // The same names both times (the randomness is replayed); which goes depends only on
    // the expiry sealed inside.
    for first_is_older in [true, false] {
        let mut w = World::new();
        w.config.lifecycle.csrf_per_request = true;
        w.config.lifecycle.csrf_per_request_limit = 2;
        w.now = if first_is_older { NOW } else { NOW + 10 };
        let (r1, _) = start(&mut w, "");
        let c1 = set_cookies(&r1)[0].clone();
        w.now = if first_is_older { NOW + 10 } else { NOW };
        let (r2, _) = start(&mut w, &format!("{}={}", c1.0, c1.1));
        assert_eq!(set_cookies(&r2).len(), 1);
        let c2 = set_cookies(&r2)[0].clone();

        w.now = NOW + 20;
        let jar = format!("{}={}; {}={}", c2.0, c2.1, c1.0, c1.1);
        let (r3, q3) = start(&mut w, &jar);
        let sets = set_cookies(&r3);
        let (oldest, newer) = if first_is_older {
            (&c1, &c2)
        } else {
            (&c2, &c1)
        };
        assert!(
            sets.contains(&(oldest.0.clone(), String::new())),
            "{first_is_older}: {sets:?}"
        );
        assert!(!sets.iter().any(|(n, _)| *n == newer.0), "{first_is_older}");
        let own = w.config.cookie.csrf_name_for(&q3["state"]);
        assert!(sets.iter().any(|(n, v)| *n == own && !v.is_empty()));
        assert_eq!(sets.len(), 2);
    }
}

// 11. Sign-out at the IdP.

fn sign_out_world() -> World {
    let mut w = World::new();
    let extra = json!({
        "end_session_endpoint": format!("{ISSUER}/end-session"),
        "revocation_endpoint": format!("{ISSUER}/revoke"),
    });
    w.providers
        .set(MAIN, provider_with(&extra, &testkeys::jwks_json()));
    w.config.lifecycle.backend_logout_url =
        Some(format!("{ISSUER}/logout?id_token_hint={{id_token}}"));
    w
}

/// Answers every server-side sign-out call with a 200; the calls and the final response.
fn sign_out(w: &mut World, req: &Request) -> (Vec<Callout>, Response) {
    let mut calls = Vec::new();
    let mut step = w.decide(req);
    loop {
        match step.decision {
            Decision::Call(call, pending) => {
                calls.push(call);
                step = answer(w, pending, Some((200, "")));
            }
            Decision::Respond(r) => return (calls, r),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn sign_out_revokes_calls_the_backend_and_ends_the_idp_session() {
    let mut w = sign_out_world();
    let done = login_answering(&mut w, "/", big_claims, &json!({"refresh_token": RT}));
    let session_jar = cookie_header(&set_cookies(&done));
    let s = opened(&w, &session_jar);
    let mut expired = session_names(&w, &session_jar);
    assert!(expired.len() > 1, "a chunked session");
    expired.extend([
        "_oauth2_proxy_csrf".into(),
        "_oauth2_proxy_csrf_0123456789abcdef".into(),
    ]);
    let jar = format!(
        "{session_jar}; _oauth2_proxy_csrf=x; _oauth2_proxy_csrf_0123456789abcdef=y; theme=dark"
    );
    let req = with_cookie("/oauth2/sign_out?rd=/bye", &jar);

    let Decision::Call(revoke, pending) = w.decide(&req).decision else {
        panic!("expected the revocation first");
    };
    assert_eq!(w.sessions.len(), 0, "the session left this VM's cache");
    assert_eq!(
        (
            revoke.method,
            revoke.authority.as_str(),
            revoke.path.as_str()
        ),
        ("POST", "idp.example.com", "/revoke")
    );
    let f = form(&revoke.body);
    assert_eq!(f["token"], RT);
    assert_eq!(f["token_type_hint"], "refresh_token");
    assert!(revoke
        .headers
        .iter()
        .any(|(n, v)| n == "authorization" && v.starts_with("Basic ")));

    let Decision::Call(backend, pending) = answer(&mut w, pending, Some((200, ""))).decision else {
        panic!("expected the backend logout call");
    };
    assert_eq!(
        (backend.method, backend.authority.as_str()),
        ("GET", "idp.example.com")
    );
    assert!(backend.path.starts_with("/logout?"), "{}", backend.path);
    assert_eq!(query(&backend.path)["id_token_hint"], s.id_token);

    // Whatever the backend says (here: nothing), the browser is signed out.
    let r = respond(answer(&mut w, pending, None));
    assert_eq!(r.status, 302);
    let location = header(&r, "location").unwrap();
    assert!(
        location.starts_with(&format!("{ISSUER}/end-session?")),
        "{location}"
    );
    let q = query(location);
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["id_token_hint"], s.id_token);
    assert_eq!(q["post_logout_redirect_uri"], "https://app.example.com/bye");
    let sets = set_cookies(&r);
    for name in &expired {
        assert!(
            sets.contains(&(name.clone(), String::new())),
            "{name} not expired"
        );
    }
    assert!(!sets.iter().any(|(n, _)| n == "theme"));
}

#[test]
fn sign_out_returns_only_to_allowed_places() {
    let evil = "/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F";
    for (path, expected) in [
        (evil, Some("https://app.example.com/")),
        ("/oauth2/sign_out", None),
    ] {
        let mut w = sign_out_world();
        let jar = log_in(&mut w, json!({"refresh_token": RT}));
        let (calls, r) = sign_out(&mut w, &with_cookie(path, &jar));
        assert_eq!(calls.len(), 2);
        let location = header(&r, "location").unwrap();
        assert!(location.starts_with(&format!("{ISSUER}/end-session?")));
        assert!(!location.contains("evil"), "{location}");
        let q = query(location);
        assert_eq!(
            q.get("post_logout_redirect_uri").map(String::as_str),
            expected,
            "{path}"
        );
    }
    // Without RP-initiated logout the calls are still made, then straight to rd.
    let mut w = sign_out_world();
    w.config.lifecycle.rp_initiated_logout = false;
    let jar = log_in(&mut w, json!({"refresh_token": RT}));
    let (calls, r) = sign_out(&mut w, &with_cookie("/oauth2/sign_out?rd=/bye", &jar));
    assert_eq!(calls.len(), 2);
    assert_eq!(header(&r, "location"), Some("/bye"));
    // Without a session there is nothing to end at the IdP.
    let (calls, r) = sign_out(&mut w, &get("/oauth2/sign_out?rd=/bye", &[]));
    assert!(calls.is_empty());
    assert_eq!((r.status, header(&r, "location")), (302, Some("/bye")));
    let mut w = sign_out_world();
    let (calls, r) = sign_out(&mut w, &get("/oauth2/sign_out?rd=/bye", &[]));
    assert!(calls.is_empty());
    assert_eq!(header(&r, "location"), Some("/bye"));
}

// 12. The token exchanged for the app.

fn exchanging() -> World {
    let mut w = World::new();
    w.config.lifecycle.token_exchange = Some(TokenExchange {
        audience: "api".into(),
        scope: None,
        resource: None,
    });
    w
}

fn exchange(w: &mut World, req: &Request) -> (Callout, PendingBox) {
    match w.decide(req).decision {
        Decision::Call(c, p) => (c, p),
        other => panic!("expected a token exchange, got {other:?}"),
    }
}

#[test]
fn the_app_gets_an_exchanged_token_until_shortly_before_it_expires() {
    let mut w = exchanging();
    let jar = log_in(&mut w, json!({}));
    let s = opened(&w, &jar);
    let req = with_cookie("/app", &jar);
    let (call, pending) = exchange(&mut w, &req);
    assert_eq!(
        (call.method, call.authority.as_str(), call.path.as_str()),
        ("POST", "idp.example.com", "/token")
    );
    let f = form(&call.body);
    assert_eq!(
        f["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(f["subject_token"], "AT");
    assert_eq!(f["audience"], "api");

    let body = json!({
        "access_token": "EXCHANGED",
        "token_type": "Bearer",
        "expires_in": 300,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    })
    .to_string();
    let check = |p: &Passed| {
        assert_eq!(p.header("authorization"), Some("Bearer EXCHANGED"));
        assert_eq!(p.header("x-forwarded-access-token"), Some("EXCHANGED"));
        assert_eq!(p.header("x-auth-request-access-token"), Some("EXCHANGED"));
        assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
        for (n, v) in &p.set {
            assert!(
                v != "AT" && !v.ends_with(" AT") && !v.contains(&s.id_token),
                "the user's token in {n}"
            );
        }
    };
    check(&passed(answer(&mut w, pending, Some((200, &body)))));
    // Cached: no call until 30 s before the exchanged token expires.
    for at in [NOW, NOW + 269] {
        w.now = at;
        check(&passed(w.decide(&req)));
    }
    w.now = NOW + 270;
    let (call, _) = exchange(&mut w, &req);
    assert_eq!(form(&call.body)["subject_token"], "AT");
}

#[test]
fn a_failed_exchange_is_a_502() {
    let failures: [Option<(u16, &str)>; 3] = [
        Some((400, r#"{"error":"invalid_target"}"#)),
        Some((200, "{}")),
        None,
    ];
    for failure in failures {
        let mut w = exchanging();
        let jar = log_in(&mut w, json!({}));
        let (_, pending) = exchange(&mut w, &with_cookie("/app", &jar));
        let r = respond(answer(&mut w, pending, failure));
        assert_eq!(r.status, 502, "{failure:?}");
        // Remembered for a moment: no call per request to an IdP that refuses.
        let r = respond(w.decide(&api("/app", &[("cookie", &jar)])));
        assert_eq!(
            (r.status, r.body.as_str()),
            (502, r#"{"error":"token_exchange_failed"}"#),
            "{failure:?}"
        );
        w.now += 2;
        let (_, pending) = exchange(&mut w, &api("/app", &[("cookie", &jar)]));
        let r = respond(answer(&mut w, pending, failure));
        assert_eq!(r.status, 502, "{failure:?}");
    }
}

/// Defect: the exchanged token was filed under the cookie session's access token whatever
/// token was exchanged. A request with a session cookie and another user's bearer token left
/// that user's exchanged token under the session's key (the session's next requests reached
/// the app with the other user's `Authorization`), and the request itself looped through
/// repeated exchange calls. Now the cache key is the token exchanged, and one call per
/// request.
#[test]
fn an_exchange_is_filed_under_the_token_it_exchanged_and_made_once_per_request() {
    let mut w = exchanging();
    w.config.skip_jwt_bearer_tokens = true;
    let jar = log_in(&mut w, json!({}));
    let mut mallory = testkeys::id_claims(NOW);
    mallory["sub"] = "mallory".into();
    mallory["email"] = "mallory@example.com".into();
    let token = testkeys::sign_rs256(Some("rsa1"), &mallory);
    let both = api(
        "/app",
        &[
            ("cookie", &jar),
            ("authorization", &format!("Bearer {token}")),
        ],
    );
    // A bearer token is exchanged like a session's access token: it is what is exchanged.
    let (call, pending) = exchange(&mut w, &both);
    assert_eq!(form(&call.body)["subject_token"], token);
    let body = json!({"access_token": "FOR-MALLORY", "token_type": "Bearer", "expires_in": 300})
        .to_string();
    let p = passed(answer(&mut w, pending, Some((200, &body))));
    assert_eq!(p.header("authorization"), Some("Bearer FOR-MALLORY"));
    assert_eq!(p.header("x-forwarded-email"), Some("mallory@example.com"));
    // Cached under mallory's token: her next request makes no call.
    passed(w.decide(&both));
    // The session's own request is never given mallory's token: it exchanges its own.
    let (call, pending) = exchange(&mut w, &with_cookie("/app", &jar));
    assert_eq!(form(&call.body)["subject_token"], "AT");
    let body =
        json!({"access_token": "FOR-ALICE", "token_type": "Bearer", "expires_in": 300}).to_string();
    let p = passed(answer(&mut w, pending, Some((200, &body))));
    assert_eq!(p.header("authorization"), Some("Bearer FOR-ALICE"));
    assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
    // A failed exchange is filed under the token that failed, not the session's.
    let mut eve = mallory.clone();
    eve["sub"] = "eve".into();
    let eve = testkeys::sign_rs256(Some("rsa1"), &eve);
    let (_, pending) = exchange(
        &mut w,
        &api("/app", &[("authorization", &format!("Bearer {eve}"))]),
    );
    assert_eq!(respond(answer(&mut w, pending, None)).status, 502);
    let p = passed(w.decide(&with_cookie("/app", &jar)));
    assert_eq!(p.header("authorization"), Some("Bearer FOR-ALICE"));
}

// Defect: a refresh reset the session's expiry to now + `cookie_expire`, so a cookie copied
// before sign-out went on refreshing for as long as the IdP allowed (without a revocation
// endpoint, or when revocation failed). Sessions end `session_max_lifetime` after their login.

#[test]
fn a_session_ends_at_its_max_lifetime_however_often_it_is_refreshed() {
    for (max_lifetime, cookie_expire) in [(Some(1000), 604_800), (None, 1000)] {
        let mut w = World::new();
        w.config.cookie.expire = cookie_expire;
        w.config.lifecycle.session_max_lifetime = max_lifetime.unwrap_or(cookie_expire);
        let mut jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
        assert_eq!(opened(&w, &jar).expires_at, NOW + 1000);
        let mut generation = 0;
        // Refreshed every 280 s: the session still ends at login + 1000.
        for at in [NOW + 280, NOW + 560, NOW + 840] {
            w.now = at;
            let call = claimed(&mut w, &with_cookie("/app", &jar));
            let body = refreshed(w.now, json!({}));
            let p = passed(answer(&mut w, call.pending, Some((200, &body))));
            let max_age = p
                .reply
                .iter()
                .find(|c| c.starts_with("_oauth2_proxy="))
                .and_then(|c| c.split("Max-Age=").nth(1))
                .and_then(|a| a.split(';').next())
                .map(|a| a.to_string());
            assert_eq!(
                max_age,
                Some((NOW + 1000 - at).to_string()),
                "{max_lifetime:?}"
            );
            jar = format!("_oauth2_proxy={}", p.session_cookie());
            let s = opened(&w, &jar);
            generation += 1;
            assert_eq!(
                (s.expires_at, s.login_at, s.generation),
                (NOW + 1000, NOW, generation)
            );
        }
        w.now = NOW + 999;
        passed(w.decide(&with_cookie("/app", &jar)));
        w.now = NOW + 1000;
        assert_sent_to_log_in(&respond(w.decide(&with_cookie("/app", &jar))));
    }
}

// 13. A refreshed ID token signed with a new key.

#[test]
fn a_refreshed_id_token_with_an_unknown_key_waits_for_the_keys() {
    let rotated = testkeys::jwks_json_for(&[
        testkeys::rsa_jwk(Some("rsa1"), None),
        testkeys::rsa_jwk(Some("rotated"), None),
    ]);
    for keys_found in [true, false] {
        let mut w = World::new();
        let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
        let old = opened(&w, &jar);
        w.now = NOW + 280;
        let call = claimed(&mut w, &with_cookie("/app", &jar));
        let token = testkeys::sign_rs256(Some("rotated"), &testkeys::id_claims(w.now));
        let body = refreshed(w.now, json!({"id_token": token}));
        let step = answer(&mut w, call.pending, Some((200, &body)));
        assert!(step.publish.is_none(), "the slot stays busy meanwhile");
        let Decision::NeedKeys(MAIN, pending) = step.decision else {
            panic!("expected a key refresh, got {:?}", step.decision);
        };
        // Parked for the keys, it stays parked when its request goes away: the others on
        // the session wait for its outcome.
        let mut loader = crate::coordinator::waits::Waits::new(&w.config, 1);
        let pending = match loader.park_for_keys(7, MAIN, pending.0, w.now) {
            crate::coordinator::waits::KeysWait::Parked => {
                loader.forget(7);
                assert_eq!(loader.parked(), 1, "a refresh outlives its request");
                let started = loader.tick(&w.config, &mut w.providers, w.now, &[]);
                assert!(matches!(
                    started.as_slice(),
                    [crate::coordinator::waits::Action::Claim { .. }]
                ));
                let started = loader.on_claimed(&w.config, &w.providers, MAIN, true, None, w.now);
                assert!(matches!(
                    started.as_slice(),
                    [crate::coordinator::waits::Action::Fetch { .. }]
                ));
                let a = loader.on_dispatch_failed(&w.providers, MAIN, w.now, "idp");
                match a.into_iter().find_map(|a| match a {
                    crate::coordinator::waits::Action::Wake {
                        stream: None,
                        then: crate::coordinator::waits::Then::Keys(p, false),
                    } => Some(p),
                    _ => None,
                }) {
                    Some(p) => p,
                    None => panic!("the refresh was not woken"),
                }
            }
            other => panic!("expected the refresh to park, got {other:?}"),
        };
        if keys_found {
            w.providers.set(MAIN, provider_with(&json!({}), &rotated));
        }
        let step = w.run(|cx, env| resume_keys(cx, pending, true, env));
        let entry = published(&step, &call.slot, &call.claim);
        if !keys_found {
            // Still unknown with the fresh keys: not the IdP's token.
            assert_eq!(entry.state, State::Ended);
            assert_sent_to_log_in(&respond(step));
            continue;
        }
        let p = passed(step);
        let cookie = p.session_cookie();
        assert_eq!(
            (entry.generation, entry.state),
            (1, State::Done(cookie.clone()))
        );
        let new = opened(&w, &format!("_oauth2_proxy={cookie}"));
        assert_eq!(
            (new.id_token.as_str(), new.access_token.as_str()),
            (token.as_str(), "AT-2")
        );
        assert_eq!((new.id.as_str(), new.generation), (old.id.as_str(), 1));
    }
}

/// Defect: a refreshed ID token signed with a key that arrived less than
/// `KEY_REFETCH_MIN_SECS` after the last key fetch ended the session: the refetch limit (for
/// clients' tokens, which anyone can forge with any `kid`) sent it on with the old keys. A
/// token from the token endpoint itself now waits for the next allowed fetch.
#[test]
fn a_refreshed_id_token_with_a_key_newer_than_the_last_fetch_waits_for_the_next_one() {
    use crate::coordinator::waits::{Action, KeysWait, Then, Waits as Loader};
    use crate::issuer::loader::Fetch;
    use crate::issuer::KEY_REFETCH_MIN_SECS;
    let old_keys = testkeys::jwks_json();
    let rotated = testkeys::jwks_json_for(&[
        testkeys::rsa_jwk(Some("rsa1"), None),
        testkeys::rsa_jwk(Some("rotated"), None),
    ]);
    let discovery = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
    })
    .to_string();
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    // The loader fetches the keys (the old ones) at +279.
    let mut loader = Loader::new(&w.config, 1);
    let mut issuers = crate::issuer::Issuers::new(1);
    let config = w.config.clone();
    let fetch_all = |loader: &mut Loader, issuers: &mut crate::issuer::Issuers, now, keys: &str| {
        let mut actions = loader.tick(&config, issuers, now, &[]);
        let mut woken = Vec::new();
        while let Some(a) = actions.pop() {
            match a {
                Action::Fetch {
                    issuer,
                    load,
                    fetch,
                    ..
                } => {
                    let body = match &fetch {
                        Fetch::Discovery => discovery.clone(),
                        Fetch::Keys(_) => keys.to_string(),
                    };
                    actions.extend(loader.on_answer(
                        &config,
                        issuers,
                        issuer,
                        load,
                        fetch,
                        Some((200, body.as_bytes())),
                        now,
                    ));
                }
                Action::Claim { issuer, .. } => {
                    actions.extend(loader.on_claimed(&config, issuers, issuer, true, None, now));
                }
                Action::Wake { stream, then } => woken.push((stream, then)),
                _ => {}
            }
        }
        woken
    };
    fetch_all(&mut loader, &mut issuers, NOW + 279, &old_keys);
    w.providers = issuers.clone();
    // At +280 the refresh answers with an ID token signed by a key published since.
    w.now = NOW + 280;
    let call = claimed(&mut w, &with_cookie("/app", &jar));
    let token = testkeys::sign_rs256(Some("rotated"), &testkeys::id_claims(w.now));
    let body = refreshed(w.now, json!({"id_token": token}));
    let step = answer(&mut w, call.pending, Some((200, &body)));
    let Decision::NeedKeys(MAIN, pending) = step.decision else {
        panic!("expected a key refresh, got {:?}", step.decision);
    };
    // Within KEY_REFETCH_MIN_SECS of the last fetch: parked, not sent on with the old keys.
    assert!(matches!(
        loader.park_for_keys(7, MAIN, pending.0, w.now),
        KeysWait::Parked
    ));
    for now in [NOW + 280, NOW + 279 + KEY_REFETCH_MIN_SECS - 1] {
        assert!(fetch_all(&mut loader, &mut issuers, now, &rotated).is_empty());
    }
    // Then the keys are fetched again and the refresh finishes with them.
    let woken = fetch_all(
        &mut loader,
        &mut issuers,
        NOW + 279 + KEY_REFETCH_MIN_SECS,
        &rotated,
    );
    let [(Some(7), Then::Keys(pending, true))] = woken.as_slice() else {
        panic!("expected the refresh woken with fresh keys, got {woken:?}");
    };
    w.providers = issuers.clone();
    let step = w.run(|cx, env| resume_keys(cx, pending.clone(), true, env));
    let entry = published(&step, &call.slot, &call.claim);
    let p = passed(step);
    assert_eq!(entry.state, State::Done(p.session_cookie()));
}

/// When the fetch the refresh waited for fails, the IdP is unavailable: the session goes on
/// with its valid access token (or gets a 503), and is not ended.
#[test]
fn a_refresh_whose_key_fetch_fails_is_unavailable_not_ended() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    w.now = NOW + 280;
    let call = claimed(&mut w, &with_cookie("/app", &jar));
    let token = testkeys::sign_rs256(Some("rotated"), &testkeys::id_claims(w.now));
    let body = refreshed(w.now, json!({"id_token": token}));
    let step = answer(&mut w, call.pending, Some((200, &body)));
    let Decision::NeedKeys(MAIN, pending) = step.decision else {
        panic!("expected a key refresh, got {:?}", step.decision);
    };
    let step = w.run(|cx, env| resume_keys(cx, pending.0, false, env));
    assert_eq!(
        published(&step, &call.slot, &call.claim).state,
        State::Unavailable
    );
    assert_eq!(passed(step).header("x-forwarded-access-token"), Some("AT"));
}

// Renewed cookies on the answers of `/oauth2/auth` (for `auth_request_set`).

#[test]
fn the_auth_endpoint_hands_on_a_refreshed_session_cookie() {
    let mut w = World::new();
    let jar = log_in(&mut w, json!({"refresh_token": RT, "expires_in": 300}));
    w.now = NOW + 280;
    let req = api("/oauth2/auth", &[("cookie", &jar)]);
    let call = claimed(&mut w, &req);
    let body = refreshed(w.now, json!({}));
    let step = answer(&mut w, call.pending, Some((200, &body)));
    assert!(matches!(
        published(&step, &call.slot, &call.claim).state,
        State::Done(_)
    ));
    let r = respond(step);
    assert_eq!(r.status, 202);
    let sets = set_cookies(&r);
    assert!(
        sets.iter()
            .find(|(n, _)| n == "_oauth2_proxy")
            .is_some_and(|(_, v)| !v.is_empty()),
        "the refreshed cookie must reach the browser through the auth_request answer: {sets:?}"
    );
}

#[test]
fn the_auth_endpoint_hands_on_a_resealed_session_cookie() {
    let mut w = World::new();
    reconfigure(&mut w, parsed(json!({"cookie_secret": SECRET_A})));
    let jar = log_in(&mut w, json!({}));
    reconfigure(
        &mut w,
        parsed(json!({"cookie_secret": SECRET_B, "cookie_secret_previous": [SECRET_A]})),
    );
    let r = respond(w.decide(&api("/oauth2/auth", &[("cookie", &jar)])));
    assert_eq!(r.status, 202);
    let sets = set_cookies(&r);
    assert!(
        sets.iter()
            .find(|(n, _)| n == "_oauth2_proxy")
            .is_some_and(|(_, v)| !v.is_empty()),
        "{sets:?}"
    );
}

// Public routes (`skip_auth_routes`) with a session.

#[test]
fn a_public_route_never_gets_the_users_own_tokens_when_they_are_exchanged() {
    let mut w = exchanging();
    w.config.skip_auth_routes =
        vec![crate::routing::routes::SkipRoute::parse("GET=^/public/").unwrap()];
    let jar = log_in(&mut w, json!({}));
    let p = passed(w.decide(&with_cookie("/public/page", &jar)));
    // Identity yes, but no exchange for a public route and none of the user's tokens.
    assert_eq!(p.header("x-forwarded-email"), Some("alice@example.com"));
    for name in [
        "authorization",
        "x-forwarded-access-token",
        "x-auth-request-access-token",
    ] {
        assert_eq!(p.header(name), None, "{name}");
    }
    // Without the exchange they are passed as configured.
    w.config.lifecycle.token_exchange = None;
    w.sessions = Cache::new(16, 1 << 20);
    let p = passed(w.decide(&with_cookie("/public/page", &jar)));
    assert_eq!(p.header("x-forwarded-access-token"), Some("AT"));
}
