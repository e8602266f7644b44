//! The adapter driven natively against a fake Envoy ([`fake::Fake`]): what it asks of the
//! host for each callback, and how workers sharing one store of shared data load metadata
//! once and refresh a session once.

mod fake;

use super::driver::{Verdict, Vm};
use crate::oidc::testkeys::{self, CLIENT_ID, ISSUER};
use crate::refresh;
use fake::{Fake, Store};
use serde_json::{json, Value};

const ROOT: u32 = 1;
const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;

fn random(buf: &mut [u8]) -> bool {
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), buf);
    true
}

fn config() -> Value {
    json!({
        "oidc_issuer_url": ISSUER,
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret": "s3cret",
        "cookie_secret": "0123456789abcdef0123456789abcdef",
        "email_domains": ["*"],
        "pass_access_token": true,
    })
}

fn discovery() -> String {
    json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
    })
    .to_string()
}

/// The fake IdP's token endpoint: an ID token for `nonce` (none for a refresh) and tokens
/// named after `n`, living 300 seconds.
fn tokens(now: u64, nonce: Option<&str>, n: u32) -> String {
    let mut claims = testkeys::id_claims(now);
    match nonce {
        Some(nonce) => claims["nonce"] = json!(nonce),
        None => drop(claims.as_object_mut().unwrap().remove("nonce")),
    }
    json!({
        "access_token": format!("AT-{n}"),
        "refresh_token": format!("RT-{n}"),
        "id_token": testkeys::sign_rs256(Some("rsa1"), &claims),
        "token_type": "Bearer",
        "expires_in": 300,
    })
    .to_string()
}

fn query(url: &str, key: &str) -> String {
    let (_, q) = url.split_once('?').unwrap();
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// One Envoy worker: its VM and its view of the host.
struct Worker {
    vm: Vm,
    host: Fake,
    /// Callouts already answered, by token.
    answered: usize,
}

impl Worker {
    fn new(store: &Store, config: &Value) -> Worker {
        let mut w = Worker {
            vm: Vm::default(),
            host: Fake::new(store, config, NOW_MS),
            answered: 0,
        };
        assert!(w.vm.configure(&mut w.host, ROOT, 0, random));
        w
    }

    fn at(&mut self, secs: u64) {
        self.host.now_ms = (NOW + secs) * 1000;
    }

    fn request(&mut self, stream: u32, headers: &[(&str, &str)]) -> Verdict {
        self.host.open(stream, headers);
        self.host.calls.clear();
        self.vm.on_request(&mut self.host, ROOT, stream)
    }

    fn browse(&mut self, stream: u32, path: &str, cookie: &str) -> Verdict {
        let mut h = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", "app.example.com"),
            (":scheme", "https"),
            ("accept", "text/html"),
            ("x-request-id", "req-42"),
        ];
        if !cookie.is_empty() {
            h.push(("cookie", cookie));
        }
        self.request(stream, &h)
    }

    fn tick(&mut self) {
        self.host.current = None;
        self.vm.on_tick(&mut self.host, ROOT);
    }

    /// Answers callout `token` (as the root context gets it, no stream current).
    fn answer(&mut self, token: u32, answer: Option<(u16, &str)>) {
        self.host.current = None;
        self.host.answer = answer.map(|(s, b)| (s, b.as_bytes().to_vec()));
        let size = answer.map_or(0, |(_, b)| b.len());
        self.vm
            .on_callout_response(&mut self.host, token, usize::from(answer.is_some()), size);
    }

    /// The callouts sent since the last look: token, cluster, path and body.
    fn new_callouts(&mut self) -> Vec<(u32, String, String, String)> {
        let fresh: Vec<_> = self.host.sent[self.answered..]
            .iter()
            .map(|(t, c, co)| {
                let body = String::from_utf8_lossy(&co.body).into_owned();
                (*t, c.clone(), co.path.clone(), body)
            })
            .collect();
        self.answered = self.host.sent.len();
        fresh
    }

    /// Answers the metadata loads a tick starts, as the fake IdP.
    fn load(&mut self) {
        self.tick();
        for _ in 0..2 {
            for (token, _, path, _) in self.new_callouts() {
                let body = match path.as_str() {
                    "/.well-known/openid-configuration" => discovery(),
                    "/jwks" => testkeys::jwks_json(),
                    other => panic!("unexpected load of {other}"),
                };
                self.answer(token, Some((200, &body)));
            }
        }
    }

    /// A whole login through the adapter: the session's `Cookie` header.
    fn log_in(&mut self) -> String {
        assert_eq!(self.browse(100, "/app", ""), Verdict::Pause);
        let r = self.host.stream(100).response.clone().unwrap();
        assert_eq!(r.status, 302);
        let location = &r.headers.iter().find(|(n, _)| n == "location").unwrap().1;
        let (state, nonce) = (query(location, "state"), query(location, "nonce"));
        let csrf = set_cookies(&r.headers).join("; ");
        let callback = format!("/oauth2/callback?code=c0de&state={state}");
        assert_eq!(self.browse(101, &callback, &csrf), Verdict::Pause);
        let [(token, cluster, path, body)] = &self.new_callouts()[..] else {
            panic!("expected the code exchange");
        };
        assert_eq!((cluster.as_str(), path.as_str()), ("idp", "/token"));
        assert!(body.contains("grant_type=authorization_code"), "{body}");
        let now = self.host.now_ms / 1000;
        self.answer(*token, Some((200, &tokens(now, Some(&nonce), 1))));
        let r = self.host.stream(101).response.clone().unwrap();
        assert_eq!(r.status, 302, "{}", r.body);
        set_cookies(&r.headers)
            .into_iter()
            .filter(|c| c.starts_with("_oauth2_proxy="))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `name=value` of each `Set-Cookie` that sets a value.
fn set_cookies(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .filter(|c| !c.ends_with('='))
        .map(str::to_string)
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn configure_creates_every_refresh_slot_once_and_asks_for_a_tick_at_once() {
    let store = Store::default();
    let w = Worker::new(&store, &config());
    assert_eq!(w.host.tick_ms, Some(1), "load right away");
    let slots: Vec<String> = refresh::slot_keys("_oauth2_proxy").collect();
    assert_eq!(slots.len(), usize::from(refresh::SLOTS));
    for key in &slots {
        assert_eq!(store.borrow()[key], (b"free".to_vec(), 1), "{key}");
    }
    // Another worker finds them and writes none again.
    let other = Worker::new(&store, &config());
    assert!(!other.host.calls.contains(&"set_shared_data"));
    assert!(store.borrow().values().all(|(_, version)| *version == 1));
}

#[test]
fn a_rejected_configuration_is_logged_and_refused() {
    let store = Store::default();
    let mut host = Fake::new(&store, &json!({"client_id": "x"}), NOW_MS);
    let mut vm = Vm::default();
    assert!(!vm.configure(&mut host, ROOT, 0, random));
    let (_, line) = &host.logs[0];
    assert!(line.contains("config_rejected"), "{line}");
    // No plugin: requests are refused, never passed on.
    host.open(5, &[(":method", "GET"), (":path", "/")]);
    assert_eq!(vm.on_request(&mut host, ROOT, 5), Verdict::Pause);
    assert_eq!(host.stream(5).response.as_ref().unwrap().status, 500);
}

#[test]
fn metadata_is_loaded_by_one_worker_and_adopted_by_the_others() {
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    let mut b = Worker::new(&store, &config());
    a.load();
    assert_eq!(a.host.sent.len(), 2, "discovery, then keys");
    assert_eq!(a.host.tick_ms, Some(5000), "nothing left to do");
    // The other worker's tick finds the snapshot in shared data: no fetch of its own.
    b.tick();
    assert!(b.host.sent.is_empty());
    assert_eq!(b.browse(7, "/app", ""), Verdict::Pause);
    assert_eq!(b.host.stream(7).response.as_ref().unwrap().status, 302);
}

#[test]
fn a_request_before_the_metadata_waits_for_it() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    assert_eq!(w.browse(3, "/app", ""), Verdict::Pause);
    assert!(w.host.stream(3).response.is_none(), "parked");
    w.load();
    // Woken from the root context: the answer goes to its own stream.
    let r = w.host.stream(3).response.as_ref().unwrap();
    assert_eq!(r.status, 302);
    assert!(w.host.calls.contains(&"set_effective_context"));
    let (_, line) = w
        .host
        .logs
        .iter()
        .find(|(_, l)| l.contains("login_redirect"))
        .unwrap();
    assert!(line.starts_with("{\"request_id\":\"req-42\","), "{line}");
}

#[test]
fn the_hot_path_asks_the_host_three_things() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    w.load();
    let cookie = w.log_in();
    assert_eq!(w.browse(9, "/app", &cookie), Verdict::Continue);
    assert_eq!(
        w.host.calls,
        [
            "get_header_map_pairs",
            "get_current_time",
            "set_header_map_pairs"
        ]
    );
    let headers = &w.host.stream(9).headers;
    assert_eq!(
        header(headers, "x-forwarded-email"),
        Some("alice@example.com")
    );
    assert_eq!(header(headers, "x-forwarded-access-token"), Some("AT-1"));
    assert_eq!(header(headers, "cookie"), None, "our cookie stays here");
    assert_eq!(header(headers, "x-request-id"), Some("req-42"));
    // Nothing for its response, nor for its end: no clock, no other host call.
    w.host.calls.clear();
    w.vm.on_response(&mut w.host, ROOT, 9);
    w.vm.on_done(&mut w.host, ROOT, 9);
    assert!(w.host.calls.is_empty(), "{:?}", w.host.calls);
}

#[test]
fn a_header_map_that_cannot_be_read_is_refused() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    for raw in [None, Some(vec![9, 0, 0, 0, 1])] {
        w.host.raw_map = Some(raw.clone());
        assert_eq!(w.browse(4, "/app", ""), Verdict::Pause, "{raw:?}");
        assert_eq!(w.host.stream(4).response.as_ref().unwrap().status, 500);
    }
}

#[test]
fn header_edits_that_fail_never_reach_the_app() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    w.load();
    let cookie = w.log_in();
    w.host.fail_header_writes = true;
    assert_eq!(w.browse(9, "/app", &cookie), Verdict::Pause);
    let s = w.host.stream(9);
    assert_eq!(s.response.as_ref().unwrap().status, 500);
    assert!(!s.resumed);
}

#[test]
fn a_dispatch_the_host_refuses_fails_the_login_at_once() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    w.load();
    assert_eq!(w.browse(1, "/app", ""), Verdict::Pause);
    let r = w.host.stream(1).response.clone().unwrap();
    let location = &r.headers.iter().find(|(n, _)| n == "location").unwrap().1;
    let csrf = set_cookies(&r.headers).join("; ");
    let callback = format!("/oauth2/callback?code=c&state={}", query(location, "state"));
    w.host.refuse_dispatch = true;
    assert_eq!(w.browse(2, &callback, &csrf), Verdict::Pause);
    let r = w.host.stream(2).response.as_ref().unwrap();
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(w
        .host
        .logs
        .iter()
        .any(|(_, l)| l.contains("callout_dispatch_failed")));
}

#[test]
fn an_answer_after_its_stream_went_away_answers_nobody() {
    let store = Store::default();
    let mut w = Worker::new(&store, &config());
    w.load();
    assert_eq!(w.browse(1, "/app", ""), Verdict::Pause);
    let r = w.host.stream(1).response.clone().unwrap();
    let location = &r.headers.iter().find(|(n, _)| n == "location").unwrap().1;
    let csrf = set_cookies(&r.headers).join("; ");
    let callback = format!("/oauth2/callback?code=c&state={}", query(location, "state"));
    assert_eq!(w.browse(2, &callback, &csrf), Verdict::Pause);
    let [(token, ..)] = w.new_callouts()[..] else {
        panic!("expected the code exchange");
    };
    w.vm.on_done(&mut w.host, ROOT, 2);
    w.host.streams.remove(&2);
    w.host.calls.clear();
    w.answer(token, Some((200, &tokens(NOW, Some("x"), 1))));
    assert!(!w.host.calls.contains(&"set_effective_context"));
    assert!(!w.host.calls.contains(&"send_local_response"));
}

/// Two workers, one session due for a refresh, a request on each at once: one refresh call
/// between them (the slot in shared data), and both requests go on with the new tokens.
#[test]
fn two_workers_refresh_a_session_once() {
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    let mut b = Worker::new(&store, &config());
    a.load();
    b.tick();
    let cookie = a.log_in();
    a.at(280);
    b.at(280);
    assert_eq!(a.browse(10, "/app", &cookie), Verdict::Pause);
    let [(token, _, path, body)] = &a.new_callouts()[..] else {
        panic!("expected the refresh call");
    };
    assert_eq!(path, "/token");
    assert!(body.contains("grant_type=refresh_token"), "{body}");
    assert_eq!(b.browse(20, "/app", &cookie), Verdict::Pause);
    assert!(b.new_callouts().is_empty(), "the other worker waits");
    assert_eq!(b.host.tick_ms, Some(10), "and looks at the slot often");

    a.answer(*token, Some((200, &tokens(NOW + 280, None, 2))));
    let s = a.host.stream(10);
    assert!(s.resumed && s.response.is_none());
    assert_eq!(header(&s.headers, "x-forwarded-access-token"), Some("AT-2"));
    a.vm.on_response(&mut a.host, ROOT, 10);
    let renewed = set_cookies(&a.host.stream(10).response_headers);
    assert!(renewed.iter().any(|c| c.starts_with("_oauth2_proxy=")));

    b.tick();
    let s = b.host.stream(20);
    assert!(s.resumed && s.response.is_none());
    assert_eq!(header(&s.headers, "x-forwarded-access-token"), Some("AT-2"));
    assert!(b.host.sent.is_empty(), "no call of its own");
    b.vm.on_response(&mut b.host, ROOT, 20);
    assert_eq!(set_cookies(&b.host.stream(20).response_headers), renewed);
}

/// A refresh whose request went away still shares its outcome: the IdP may have rotated the
/// refresh token, and a second call with the old one would end the session.
#[test]
fn a_refresh_outlives_its_request() {
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    a.load();
    let cookie = a.log_in();
    a.at(280);
    assert_eq!(a.browse(10, "/app", &cookie), Verdict::Pause);
    let [(token, ..)] = a.new_callouts()[..] else {
        panic!("expected the refresh call");
    };
    a.vm.on_done(&mut a.host, ROOT, 10);
    a.host.streams.remove(&10);
    a.answer(token, Some((200, &tokens(NOW + 280, None, 2))));
    // The next request adopts it, with no call of its own.
    assert_eq!(a.browse(11, "/app", &cookie), Verdict::Continue);
    assert!(a.new_callouts().is_empty());
    let s = a.host.stream(11);
    assert_eq!(header(&s.headers, "x-forwarded-access-token"), Some("AT-2"));
}

/// Two requests of one session that read its slots at different moments may each find a
/// different slot free: the later claim sees the earlier one when it reads again, puts back
/// what its slot held, and waits; no second refresh call.
#[test]
fn a_claim_that_raced_another_backs_off_and_puts_its_slot_back() {
    use crate::refresh::{Entry, State};
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    a.load();
    let cookie = a.log_in();
    a.at(280);
    let theirs = std::rc::Rc::new(std::cell::RefCell::new(None));
    let seen = std::rc::Rc::clone(&theirs);
    a.host.before_cas = Some(Box::new(move |store: &Store, key: &str, bytes: &[u8]| {
        let Some(mine) = Entry::decode(bytes) else {
            return;
        };
        if mine.state != State::Busy || seen.borrow().is_some() {
            return;
        }
        // Another worker's claim of the same session lands in another candidate slot.
        let slots = refresh::slot_keys_for("_oauth2_proxy", &mine.session);
        let other = slots.into_iter().find(|k| k != key).unwrap();
        let mut s = store.borrow_mut();
        let version = s.get(&other).map_or(1, |(_, v)| v + 1);
        s.insert(other.clone(), (bytes.to_vec(), version));
        *seen.borrow_mut() = Some((other, key.to_string()));
    }));
    assert_eq!(a.browse(10, "/app", &cookie), Verdict::Pause);
    assert!(
        a.new_callouts().is_empty(),
        "no refresh call: the other claim stands"
    );
    let (other, mine) = theirs.borrow().clone().expect("the race happened");
    assert_eq!(store.borrow()[&mine].0, b"free", "its slot put back");
    assert_eq!(
        Entry::decode(&store.borrow()[&other].0).unwrap().state,
        State::Busy
    );
    assert!(
        a.host.stream(10).response.is_none(),
        "it waits for the other"
    );
    assert_eq!(a.host.tick_ms, Some(10));
}

/// Workers that start together load the metadata once between them: the first claims the
/// load in shared data, the others wait for its snapshot (helper's `workers::w02` end to end).
#[test]
fn workers_starting_together_fetch_the_metadata_once() {
    let store = Store::default();
    let mut workers: Vec<Worker> = (0..4).map(|_| Worker::new(&store, &config())).collect();
    for w in &mut workers {
        w.tick();
    }
    let sent: usize = workers.iter().map(|w| w.host.sent.len()).sum();
    assert_eq!(sent, 1, "one discovery between them");
    let loader = workers
        .iter()
        .position(|w| !w.host.sent.is_empty())
        .unwrap();
    // The others look for its snapshot often meanwhile: a worker without metadata would
    // sign users out without revoking anything.
    for (i, w) in workers.iter().enumerate() {
        if i != loader {
            assert_eq!(w.host.tick_ms, Some(10), "worker {i}");
        }
    }
    let w = &mut workers[loader];
    for _ in 0..2 {
        for (token, _, path, _) in w.new_callouts() {
            let body = match path.as_str() {
                "/.well-known/openid-configuration" => discovery(),
                _ => testkeys::jwks_json(),
            };
            w.answer(token, Some((200, &body)));
        }
    }
    for (i, w) in workers.iter_mut().enumerate() {
        w.tick();
        assert_eq!(w.host.tick_ms, Some(5000), "worker {i}: loaded, idle");
        assert_eq!(w.browse(5, "/app", ""), Verdict::Pause);
        assert_eq!(
            w.host.stream(5).response.as_ref().unwrap().status,
            302,
            "worker {i}"
        );
    }
    let sent: usize = workers.iter().map(|w| w.host.sent.len()).sum();
    assert_eq!(sent, 2, "discovery and keys, once per Envoy");
}

/// During an outage one worker per `RETRY_SECS` calls the IdP: a failed load is written over
/// its claim, and every worker waits as if the failure were its own.
#[test]
fn an_outage_is_tried_by_one_worker_at_a_time() {
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    let mut b = Worker::new(&store, &config());
    a.tick();
    let [(token, ..)] = a.new_callouts()[..] else {
        panic!("expected the discovery load");
    };
    a.answer(token, None);
    a.at(1);
    b.at(1);
    b.tick();
    assert!(b.host.sent.is_empty(), "failed moments ago, anywhere");
    assert_eq!(b.browse(6, "/app", ""), Verdict::Pause);
    assert_eq!(b.host.stream(6).response.as_ref().unwrap().status, 503);
    // Due again: one of them tries.
    a.at(2);
    b.at(2);
    b.tick();
    a.tick();
    let tries = a.host.sent.len() - 1 + b.host.sent.len();
    assert_eq!(tries, 1, "one try between them");
}

/// A worker whose own load failed moments ago still serves the metadata another worker
/// loaded since, instead of a 503 (helper's finding 2).
#[test]
fn a_worker_that_failed_moments_ago_takes_another_workers_load() {
    let store = Store::default();
    let mut a = Worker::new(&store, &config());
    a.tick();
    let [(token, ..)] = a.new_callouts()[..] else {
        panic!("expected the discovery load");
    };
    a.answer(token, None);
    // Another worker's load lands in shared data.
    let mut b = Worker::new(&store, &config());
    b.at(2);
    b.load();
    assert_eq!(b.host.sent.len(), 2);
    a.at(1);
    assert_eq!(a.browse(7, "/app", ""), Verdict::Pause);
    assert_eq!(a.host.stream(7).response.as_ref().unwrap().status, 302);
    assert!(a.new_callouts().is_empty(), "no call of its own");
}
