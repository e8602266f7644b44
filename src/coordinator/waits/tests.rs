use super::*;
use crate::config::tests_support::{base, config};
use crate::gate::PendingBox;
use crate::issuer::loader::claim;
use crate::issuer::{self, Metadata, KEY_REFETCH_MIN_SECS, MAIN, REFRESH_SECS, RETRY_SECS};
use crate::oidc::testkeys;
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://idp.example.com";
const OTHER: &str = "https://other.example.com";

/// The smallest valid configuration with `extra`'s fields on top.
fn config_with(extra: Value) -> Config {
    let mut v = base();
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    match Config::parse(v.to_string().as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// The login issuer and an extra bearer-token issuer on a host of its own.
fn two_issuers() -> Config {
    config_with(json!({
        "extra_jwt_issuers": [format!("{OTHER}=api")],
        "idp_clusters": {"other.example.com": "other"},
    }))
}

fn skip_discovery() -> Config {
    config_with(json!({
        "skip_oidc_discovery": true,
        "login_url": "https://idp.example.com/auth",
        "redeem_url": "https://idp.example.com/token",
        "oidc_jwks_url": "https://idp.example.com/keys",
    }))
}

/// `issuer`'s discovery document, its endpoints on its own host, with `extra`'s fields.
fn discovery_json(issuer: &str, extra: Value) -> String {
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    doc.to_string()
}

/// Another worker's snapshot of `issuer`'s metadata, fetched at `fetched_at`.
fn snapshot(issuer: &str, fetched_at: u64) -> Vec<u8> {
    let d = issuer::on_discovery(
        issuer,
        Some((200, discovery_json(issuer, json!({})).as_bytes())),
    )
    .unwrap();
    let jwks = testkeys::jwks_json();
    let p = issuer::on_jwks(d, Some((200, jwks.as_bytes())), fetched_at).unwrap();
    p.snapshot().unwrap()
}

fn get(path: &str) -> Request {
    Request {
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), path.into()),
            (":authority".into(), "app.example.com".into()),
        ]
        .into(),
    }
}

/// A bearer request waiting for fresh keys.
fn bearer(path: &str) -> Pending {
    Pending::Bearer(Box::new(get(path)))
}

fn refresh_call(session: &str) -> Box<RefreshCall> {
    Box::new(RefreshCall {
        slots: vec![format!("slot/{session}")],
        session_id: session.into(),
        generation: 1,
        since: 0,
        callout: issuer::discovery_request(ISSUER).unwrap(),
        pending: PendingBox(bearer("/refresh")),
    })
}

/// The fetches among `actions`: issuer, callout and what it fetches.
fn fetches(actions: &[Action]) -> Vec<(usize, &Callout, &Fetch)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch {
                issuer,
                callout,
                fetch,
                ..
            } => Some((*issuer, callout, fetch)),
            _ => None,
        })
        .collect()
}

/// What `actions` fetch, by issuer: `"discovery"` or `"keys"`.
fn fetched(actions: &[Action]) -> Vec<(usize, &'static str)> {
    fetches(actions)
        .into_iter()
        .map(|(id, _, f)| {
            let what = match f {
                Fetch::Discovery => "discovery",
                Fetch::Keys(_) => "keys",
            };
            (id, what)
        })
        .collect()
}

/// The one fetch of `actions`, for issuer `id`.
fn the_fetch(actions: &[Action], id: usize) -> Fetch {
    match fetches(actions).as_slice() {
        [(i, _, f)] if *i == id => (*f).clone(),
        other => panic!("expected one fetch for issuer {id}, got {other:?}"),
    }
}

/// The streams `actions` wake and what each does next.
fn woken(actions: &[Action]) -> Vec<(u32, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Wake { stream, then } => {
                let stream = stream.expect("a live stream");
                let what = match then {
                    Then::Decide(_) => "decide",
                    Then::Unavailable(_) => "unavailable",
                    Then::Keys(..) => "keys",
                    Then::Refresh(_) => "refresh",
                };
                Some((stream, what))
            }
            _ => None,
        })
        .collect()
}

fn logs(actions: &[Action]) -> Vec<(Level, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(level, line) => Some((*level, line.as_str())),
            _ => None,
        })
        .collect()
}

fn shares(actions: &[Action]) -> Vec<(usize, &str, &[u8])> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Share { issuer, key, bytes } => Some((*issuer, key.as_str(), bytes.as_slice())),
            _ => None,
        })
        .collect()
}

/// The one `provider_load_failed` line of `actions`, parsed.
fn failure_line(actions: &[Action]) -> Value {
    match logs(actions).as_slice() {
        [(Level::Warn, line)] => {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event"], "provider_load_failed", "{line}");
            v
        }
        other => panic!("expected one warning, got {other:?}"),
    }
}

struct World {
    config: Config,
    issuers: Issuers,
    waits: Waits,
    now: u64,
}

type Seen = (Option<Vec<u8>>, Option<u32>);
/// A callout's answer as the loader is given it (`None`: the callout failed).
type Answer<'a> = Option<(u16, &'a [u8])>;

impl World {
    fn new(config: Config) -> World {
        World {
            issuers: Issuers::new(config.issuers.len()),
            waits: Waits::new(&config, 1),
            config,
            now: NOW,
        }
    }

    /// A tick with nothing in shared data.
    fn tick(&mut self) -> Vec<Action> {
        let nothing = vec![(None, None); self.config.issuers.len()];
        self.tick_seeing(&nothing)
    }

    /// A tick seeing `shared` for the snapshots and no load claims; the claims it makes are
    /// granted (the load claims' own rules have tests of their own).
    fn tick_seeing(&mut self, shared: &[Seen]) -> Vec<Action> {
        let mut seen = shared.to_vec();
        seen.extend(vec![(None, None); self.config.issuers.len()]);
        let a = self
            .waits
            .tick(&self.config, &mut self.issuers, self.now, &seen);
        self.grant(a)
    }

    /// `actions` with each load claim granted and replaced by what follows.
    fn grant(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut out = Vec::new();
        for a in actions {
            match a {
                Action::Claim { issuer, .. } => out.extend(self.waits.on_claimed(
                    &self.config,
                    &self.issuers,
                    issuer,
                    true,
                    Some(2),
                    self.now,
                )),
                other => out.push(other),
            }
        }
        out
    }

    /// A tick seeing `bytes` at `version` for the login issuer.
    fn tick_shared(&mut self, bytes: &[u8], version: u32) -> Vec<Action> {
        self.tick_seeing(&[(Some(bytes.to_vec()), Some(version))])
    }

    /// Answers `fetch` as part of the load `id` has in flight.
    fn answer(&mut self, id: usize, fetch: Fetch, answer: Answer) -> Vec<Action> {
        let load = self
            .waits
            .loader
            .load_in_flight(id)
            .expect("a load in flight");
        self.answer_load(id, load, fetch, answer)
    }

    fn answer_load(&mut self, id: usize, load: u64, fetch: Fetch, answer: Answer) -> Vec<Action> {
        self.waits.on_answer(
            &self.config,
            &mut self.issuers,
            id,
            load,
            fetch,
            answer,
            self.now,
        )
    }

    fn ok(&mut self, id: usize, fetch: Fetch, body: &str) -> Vec<Action> {
        self.answer(id, fetch, Some((200, body.as_bytes())))
    }

    /// Answers a discovery fetch of `id` with a good document: the keys fetch it starts.
    fn discovered(&mut self, id: usize, issuer: &str) -> Fetch {
        let a = self.ok(id, Fetch::Discovery, &discovery_json(issuer, json!({})));
        the_fetch(&a, id)
    }

    /// A whole load of the login issuer started by a tick: its last actions.
    fn load(&mut self) -> Vec<Action> {
        let a = self.tick();
        assert_eq!(the_fetch(&a, MAIN), Fetch::Discovery);
        let keys = self.discovered(MAIN, ISSUER);
        self.ok(MAIN, keys, &testkeys::jwks_json())
    }

    fn park(&mut self, stream: u32, id: usize) -> bool {
        self.waits
            .park_for_issuer(stream, id, get(&format!("/s{stream}")), self.now)
    }

    fn park_keys(&mut self, stream: u32) -> KeysWait {
        self.waits
            .park_for_keys(stream, MAIN, bearer(&format!("/k{stream}")), self.now)
    }

    fn fetched_at(&self) -> Option<u64> {
        self.issuers.get(MAIN).map(|p| p.fetched_at)
    }
}

#[test]
fn the_first_tick_loads_every_issuer_and_wakes_its_waiters() {
    let mut w = World::new(two_issuers());
    assert_eq!(w.waits.pace(), Pace::Eager);
    assert_eq!(
        w.waits.shared_keys(),
        [
            issuer::shared_key(ISSUER),
            issuer::shared_key(OTHER),
            claim::key(ISSUER),
            claim::key(OTHER)
        ]
    );
    assert!(w.park(1, MAIN));
    assert!(w.park(2, 1));
    let a = w.tick();
    assert_ne!(w.waits.pace(), Pace::Eager);
    assert_eq!(fetched(&a), [(0, "discovery"), (1, "discovery")]);
    assert!(woken(&a).is_empty(), "nothing loaded yet");
    let targets: Vec<_> = fetches(&a)
        .iter()
        .map(|(_, c, _)| (c.method, c.authority.clone(), c.path.clone()))
        .collect();
    let well_known = "/.well-known/openid-configuration".to_string();
    assert_eq!(
        targets,
        [
            ("GET", "idp.example.com".into(), well_known.clone()),
            ("GET", "other.example.com".into(), well_known),
        ]
    );
    // Nothing is fetched twice while the loads are in flight.
    w.now += 1;
    assert!(w.tick().is_empty());

    // Discovery → the keys at its `jwks_uri`, with the document checked for clusters (an
    // optional endpoint on a host without one is dropped).
    let doc = discovery_json(
        ISSUER,
        json!({"userinfo_endpoint": "https://api.other.example/me"}),
    );
    let a = w.ok(MAIN, Fetch::Discovery, &doc);
    assert!(woken(&a).is_empty() && logs(&a).is_empty());
    let (id, callout, fetch) = fetches(&a)[0];
    assert_eq!(fetches(&a).len(), 1);
    assert_eq!(id, MAIN);
    assert_eq!(
        (callout.authority.as_str(), callout.path.as_str()),
        ("idp.example.com", "/jwks")
    );
    let Fetch::Keys(d) = fetch.clone() else {
        panic!("expected the keys, got {fetch:?}");
    };
    assert_eq!(d.jwks_uri, format!("{ISSUER}/jwks"));
    assert_eq!(d.userinfo_endpoint, None);
    assert!(w.issuers.get(MAIN).is_none());

    // Keys → loaded, shared, logged, and the login issuer's waiter decides again.
    let a = w.ok(MAIN, Fetch::Keys(d), &testkeys::jwks_json());
    let p = w.issuers.get(MAIN).expect("loaded");
    assert_eq!((p.fetched_at, p.jwks.len()), (w.now, 2));
    let shared = shares(&a);
    assert_eq!(shared.len(), 1);
    let (id, key, bytes) = shared[0];
    assert_eq!((id, key), (MAIN, issuer::shared_key(ISSUER).as_str()));
    assert_eq!(bytes, p.snapshot().unwrap().as_slice());
    let back = Metadata::from_snapshot(bytes, ISSUER).unwrap();
    assert_eq!(back.fetched_at, w.now);
    let lines = logs(&a);
    assert_eq!(lines.len(), 1);
    let line: Value = serde_json::from_str(lines[0].1).unwrap();
    assert_eq!(lines[0].0, Level::Info);
    assert_eq!(
        (&line["event"], &line["issuer"]),
        (&json!("provider_loaded"), &json!(ISSUER))
    );
    assert_eq!(woken(&a), [(1, "decide")]);
    let Some(Action::Wake {
        then: Then::Decide(req),
        ..
    }) = a.iter().find(|a| matches!(a, Action::Wake { .. }))
    else {
        unreachable!()
    };
    assert_eq!(
        req.header(":path"),
        Some("/s1"),
        "the parked request itself"
    );
    assert!(fetches(&a).is_empty());
    // The other issuer's waiter still waits for its own load.
    assert_eq!(w.waits.parked(), 1);
    let keys = w.discovered(1, OTHER);
    let a = w.ok(1, keys, &testkeys::jwks_json());
    assert_eq!(woken(&a), [(2, "decide")]);
    assert_eq!(shares(&a)[0].1, issuer::shared_key(OTHER));
    assert!(w.issuers.get(1).is_some());
    assert_eq!(w.waits.parked(), 0);
    // Loaded and fresh: nothing to do.
    assert!(w.tick().is_empty());
    assert_eq!(w.waits.pace(), Pace::Idle);
}

#[test]
fn an_endpoint_on_a_host_without_a_cluster_fails_the_load() {
    for field in ["token_endpoint", "jwks_uri"] {
        let mut w = World::new(config());
        assert!(w.park(1, MAIN));
        assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
        let doc = discovery_json(ISSUER, json!({ field: "https://api.other.example/x" }));
        let a = w.ok(MAIN, Fetch::Discovery, &doc);
        assert!(fetches(&a).is_empty(), "{field}");
        let line = failure_line(&a);
        assert_eq!(line["issuer"], ISSUER);
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains("`api.other.example`"), "{field}: {reason}");
        assert_eq!(woken(&a), [(1, "unavailable")], "{field}");
        assert!(w.issuers.get(MAIN).is_none());
        assert!(!w.park(2, MAIN), "{field}: failed moments ago");
    }
}

#[test]
fn a_failed_load_answers_its_waiters_and_is_retried_after_retry_secs() {
    let jwks = testkeys::jwks_json();
    let foreign = discovery_json(OTHER, json!({}));
    let failures: [(&str, bool, Answer); 7] = [
        ("discovery unreachable", false, None),
        ("discovery 500", false, Some((500, jwks.as_bytes()))),
        ("discovery junk", false, Some((200, b"{not json"))),
        ("discovery foreign", false, Some((200, foreign.as_bytes()))),
        ("keys unreachable", true, None),
        ("keys 500", true, Some((500, jwks.as_bytes()))),
        ("keys junk", true, Some((200, b"{\"keys\": 3"))),
    ];
    for (case, at_keys, answer) in failures {
        let mut w = World::new(config());
        assert!(w.park(1, MAIN), "{case}");
        assert!(w.park(2, MAIN), "{case}");
        let mut fetch = the_fetch(&w.tick(), MAIN);
        if at_keys {
            w.now += 1;
            fetch = w.discovered(MAIN, ISSUER);
        }
        let failed_at = w.now;
        let a = w.answer(MAIN, fetch, answer);
        assert!(fetches(&a).is_empty() && shares(&a).is_empty(), "{case}");
        let line = failure_line(&a);
        let reason = line["reason"].as_str().unwrap();
        let stage = if at_keys { "jwks:" } else { "discovery:" };
        assert!(reason.starts_with(stage), "{case}: {reason}");
        assert_eq!(
            woken(&a),
            [(1, "unavailable"), (2, "unavailable")],
            "{case}"
        );
        assert_eq!(w.waits.parked(), 0, "{case}");
        assert!(w.issuers.get(MAIN).is_none(), "{case}");

        // Within RETRY_SECS: requests are refused, and nothing is fetched whoever waits.
        for now in [failed_at, failed_at + RETRY_SECS - 1] {
            w.now = now;
            assert!(!w.park(3, MAIN), "{case}: refused at +{}", now - failed_at);
            assert!(w.tick().is_empty(), "{case}");
            // Waiters that got in anyway are answered, not served a fetch.
            assert!(w.waits.park(4, MAIN, Wait::Decide(get("/4"))));
            assert!(w.waits.park(5, MAIN, Wait::Keys(bearer("/5"))));
            let a = w.tick();
            assert!(
                fetches(&a).is_empty(),
                "{case}: fetched at +{}",
                now - failed_at
            );
            assert_eq!(woken(&a), [(4, "unavailable"), (5, "keys")], "{case}");
        }
        // Due again.
        w.now = failed_at + RETRY_SECS;
        assert!(w.park(6, MAIN), "{case}");
        assert_eq!(w.waits.pace(), Pace::Eager, "{case}");
        let a = w.tick();
        assert_eq!(fetched(&a), [(0, "discovery")], "{case}");
        assert!(woken(&a).is_empty(), "{case}: waits for the load");
    }
}

#[test]
fn a_failed_load_is_retried_once_due_even_with_nobody_waiting() {
    let mut w = World::new(config());
    let fetch = the_fetch(&w.tick(), MAIN);
    let a = w.answer(MAIN, fetch, None);
    assert!(woken(&a).is_empty());
    w.now += RETRY_SECS - 1;
    assert!(w.tick().is_empty());
    w.now += 1;
    assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
}

#[test]
fn a_load_whose_answer_never_came_is_given_up_after_the_callout_timeout() {
    for (config, lost_after) in [
        (config(), 10),
        (config_with(json!({"idp_timeout": "20s"})), 25),
    ] {
        for at_keys in [false, true] {
            let mut w = World::new(config.clone());
            assert!(w.park(1, MAIN));
            let started = w.now;
            assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
            if at_keys {
                w.now += 1;
                w.discovered(MAIN, ISSUER);
            }
            for now in [started + 1, started + lost_after] {
                w.now = now;
                assert!(w.tick().is_empty(), "+{now}: still in flight");
            }
            w.now = started + lost_after + 1;
            let a = w.tick();
            assert_eq!(fetched(&a), [(0, "discovery")], "given up, started again");
            assert!(woken(&a).is_empty());
            assert_eq!(w.waits.parked(), 1, "the waiter waits for the new load");
            // And the new load is in flight in turn.
            w.now += 1;
            assert!(w.tick().is_empty());
        }
    }
}

#[test]
fn the_late_answer_of_a_load_given_up_does_not_end_the_one_that_replaced_it() {
    for late in [None, Some(200u16)] {
        let mut w = World::new(config());
        assert!(w.park(1, MAIN));
        assert_eq!(w.waits.loader.load_in_flight(MAIN), None);
        assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
        let given_up = w.waits.loader.load_in_flight(MAIN).expect("in flight");
        w.now += 11;
        assert_eq!(
            fetched(&w.tick()),
            [(0, "discovery")],
            "given up, started again"
        );
        let current = w.waits.loader.load_in_flight(MAIN).expect("in flight");
        assert_ne!(current, given_up);
        // The lost answer turns up: a failure or a good document, it changes nothing.
        let doc = discovery_json(ISSUER, json!({}));
        let late = late.map(|s| (s, doc.as_bytes()));
        let a = w.answer_load(MAIN, given_up, Fetch::Discovery, late);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(w.waits.loader.load_in_flight(MAIN), Some(current));
        assert_eq!(w.waits.parked(), 1);
        // So no third load starts while the current one is in flight...
        w.now += 1;
        assert!(w.tick().is_empty());
        // ...and the current one's answers still count.
        let keys = w.discovered(MAIN, ISSUER);
        let a = w.ok(MAIN, keys, &testkeys::jwks_json());
        assert_eq!(woken(&a), [(1, "decide")]);
    }
}

#[test]
fn a_stale_provider_is_refetched_and_a_fresh_one_is_not() {
    let mut w = World::new(config());
    w.load();
    let loaded_at = w.now;
    w.now = loaded_at + REFRESH_SECS - 1;
    assert!(w.tick().is_empty());
    w.now = loaded_at + REFRESH_SECS;
    assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
    // The old metadata stays in use meanwhile, and is replaced by the new.
    assert_eq!(w.fetched_at(), Some(loaded_at));
    let keys = w.discovered(MAIN, ISSUER);
    let a = w.ok(MAIN, keys, &testkeys::jwks_json());
    assert_eq!(shares(&a).len(), 1);
    assert_eq!(w.fetched_at(), Some(w.now));
    w.now += 1;
    assert!(w.tick().is_empty());
}

#[test]
fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
    let mut w = World::new(config());
    w.load();
    let fetched_at = w.now;
    // Right after the keys were fetched: go on with those.
    for now in [fetched_at, fetched_at + KEY_REFETCH_MIN_SECS - 1] {
        w.now = now;
        assert!(matches!(w.park_keys(1), KeysWait::AsTheyAre(_)), "+{now}");
        assert_eq!(w.waits.parked(), 0);
    }
    w.tick();
    assert_eq!(w.waits.pace(), Pace::Idle);
    // Later: parked, and the next tick loads again.
    w.now = fetched_at + KEY_REFETCH_MIN_SECS;
    assert!(matches!(w.park_keys(1), KeysWait::Parked));
    assert_eq!(w.waits.pace(), Pace::Eager);
    let a = w.tick();
    assert_eq!(fetched(&a), [(0, "discovery")]);
    assert!(woken(&a).is_empty());
    // Another one joins the load in flight.
    assert!(matches!(w.park_keys(2), KeysWait::Parked));
    let keys = w.discovered(MAIN, ISSUER);
    assert_eq!(w.waits.parked(), 2);
    w.now += 1;
    let a = w.ok(MAIN, keys, &testkeys::jwks_json());
    assert_eq!(woken(&a), [(1, "keys"), (2, "keys")]);
    let Some(Action::Wake {
        then: Then::Keys(Pending::Bearer(req), true),
        ..
    }) = a.iter().find(|a| matches!(a, Action::Wake { .. }))
    else {
        panic!("expected the bearer back: {a:?}");
    };
    assert_eq!(req.header(":path"), Some("/k1"));
    assert_eq!(w.fetched_at(), Some(w.now));
    assert!(matches!(w.park_keys(3), KeysWait::AsTheyAre(_)));
}

#[test]
fn an_unknown_kid_after_a_failed_refetch_waits_the_interval_too() {
    let mut w = World::new(config());
    w.load();
    w.now += KEY_REFETCH_MIN_SECS;
    assert!(matches!(w.park_keys(1), KeysWait::Parked));
    let fetch = the_fetch(&w.tick(), MAIN);
    w.now += 1;
    let failed_at = w.now;
    let a = w.answer(MAIN, fetch, Some((503, b"")));
    failure_line(&a);
    assert_eq!(woken(&a), [(1, "keys")], "resumed with the keys there are");
    assert!(w.issuers.get(MAIN).is_some(), "the old metadata is kept");
    w.now = failed_at + KEY_REFETCH_MIN_SECS - 1;
    assert!(matches!(w.park_keys(2), KeysWait::AsTheyAre(_)));
    assert!(w.tick().is_empty());
    w.now = failed_at + KEY_REFETCH_MIN_SECS;
    assert!(matches!(w.park_keys(2), KeysWait::Parked));
    let fetch = the_fetch(&w.tick(), MAIN);
    assert_eq!(fetch, Fetch::Discovery);
    // A refused dispatch answers them alike.
    let a = w
        .waits
        .on_dispatch_failed(&w.issuers, MAIN, w.now, "idp.example.com");
    failure_line(&a);
    assert_eq!(woken(&a), [(2, "keys")]);
    assert!(matches!(w.park_keys(3), KeysWait::AsTheyAre(_)));
}

#[test]
fn another_workers_newer_snapshot_is_adopted_without_fetching() {
    let mut w = World::new(config());
    assert!(w.park(1, MAIN));
    let a = w.tick_shared(&snapshot(ISSUER, NOW), 3);
    assert!(fetches(&a).is_empty(), "{:?}", fetched(&a));
    assert_eq!(w.fetched_at(), Some(NOW));
    assert_eq!(woken(&a), [(1, "decide")]);
    assert_eq!(w.issuers.get(MAIN).unwrap().jwks.len(), 2);

    // The same version is not parsed again (whatever its bytes now say).
    w.now += 20;
    assert!(w.tick_shared(&snapshot(ISSUER, NOW + 10), 3).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW));
    // A new version is.
    assert!(w.tick_shared(&snapshot(ISSUER, NOW + 10), 4).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW + 10));
    // An older fetch does not replace a newer one.
    assert!(w.tick_shared(&snapshot(ISSUER, NOW + 5), 5).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW + 10));
    // Junk, and another issuer's metadata, are ignored.
    assert!(w.tick_shared(b"junk", 6).is_empty());
    assert!(w.tick_shared(&snapshot(OTHER, NOW + 15), 7).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW + 10));
    assert_eq!(w.issuers.get(MAIN).unwrap().discovery.issuer, ISSUER);
    // Nothing shared at all: kept.
    assert!(w.tick().is_empty());
    assert_eq!(w.fetched_at(), Some(NOW + 10));
}

#[test]
fn keys_another_worker_fetched_moments_ago_are_not_fetched_again_for_an_unknown_kid() {
    let mut w = World::new(config());
    w.load();
    w.now += KEY_REFETCH_MIN_SECS;
    // Another worker fetched (a token's unknown kid, say) after ours; adopting its copy
    // restarts the limit here too.
    assert!(w.tick_shared(&snapshot(ISSUER, w.now), 1).is_empty());
    assert!(matches!(w.park_keys(1), KeysWait::AsTheyAre(_)));
    w.now += KEY_REFETCH_MIN_SECS;
    assert!(matches!(w.park_keys(1), KeysWait::Parked));
}

#[test]
fn an_adopted_snapshot_that_is_stale_is_refetched() {
    let mut w = World::new(config());
    let a = w.tick_shared(&snapshot(ISSUER, NOW - REFRESH_SECS), 1);
    assert_eq!(w.fetched_at(), Some(NOW - REFRESH_SECS));
    assert_eq!(fetched(&a), [(0, "discovery")]);
}

#[test]
fn junk_or_foreign_snapshots_do_not_stand_in_for_a_load() {
    for bytes in [b"junk".to_vec(), snapshot(OTHER, NOW)] {
        let mut w = World::new(config());
        assert!(w.park(1, MAIN));
        let a = w.tick_shared(&bytes, 1);
        assert!(w.issuers.get(MAIN).is_none());
        assert_eq!(fetched(&a), [(0, "discovery")]);
        assert!(woken(&a).is_empty());
    }
}

#[test]
fn the_version_this_worker_wrote_is_not_adopted_back() {
    // What another worker wrote under version 9 is adopted...
    let newer = snapshot(ISSUER, NOW + 10);
    let mut w = World::new(config());
    w.load();
    w.now += 20;
    assert!(w.tick_shared(&newer, 9).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW + 10));
    // ...but not when version 9 is the one this worker just wrote.
    let mut w = World::new(config());
    let a = w.load();
    assert_eq!(shares(&a).len(), 1);
    w.waits.shared_written(MAIN, Some(9));
    w.now += 20;
    assert!(w.tick_shared(&newer, 9).is_empty());
    assert_eq!(w.fetched_at(), Some(NOW));
}

#[test]
fn skip_oidc_discovery_fetches_the_configured_keys_first() {
    let mut w = World::new(skip_discovery());
    assert!(w.park(1, MAIN));
    let a = w.tick();
    let (id, callout, fetch) = fetches(&a)[0];
    assert_eq!(fetches(&a).len(), 1);
    assert_eq!(id, MAIN);
    assert_eq!(
        (callout.authority.as_str(), callout.path.as_str()),
        ("idp.example.com", "/keys")
    );
    let endpoints = w.config.provider.endpoints().cloned().unwrap();
    assert_eq!(*fetch, Fetch::Keys(Box::new(endpoints.clone())));
    let a = w.ok(MAIN, fetch.clone(), &testkeys::jwks_json());
    assert_eq!(woken(&a), [(1, "decide")]);
    assert_eq!(w.issuers.get(MAIN).unwrap().discovery, endpoints);
    // Its snapshot is one the other workers adopt.
    let (_, _, bytes) = shares(&a)[0];
    assert!(Metadata::from_snapshot(bytes, ISSUER).is_some());
    // An unknown kid refetches the keys, not a discovery document.
    w.now += KEY_REFETCH_MIN_SECS;
    assert!(matches!(w.park_keys(2), KeysWait::Parked));
    assert_eq!(fetched(&w.tick()), [(0, "keys")]);
}

#[test]
fn skip_oidc_discovery_is_the_login_issuers_only() {
    let mut v = two_issuers();
    v.provider = skip_discovery().provider;
    let mut w = World::new(v);
    assert_eq!(fetched(&w.tick()), [(0, "keys"), (1, "discovery")]);
}

#[test]
fn a_refused_dispatch_fails_the_load() {
    let mut w = World::new(config());
    assert!(w.park(1, MAIN));
    assert!(w.park(2, MAIN));
    assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
    let failed_at = w.now;
    let a = w
        .waits
        .on_dispatch_failed(&w.issuers, MAIN, failed_at, "idp.example.com");
    let line = failure_line(&a);
    assert!(line["reason"]
        .as_str()
        .unwrap()
        .contains("`idp.example.com`"));
    assert_eq!(woken(&a), [(1, "unavailable"), (2, "unavailable")]);
    assert!(fetches(&a).is_empty());
    w.now = failed_at + RETRY_SECS - 1;
    assert!(!w.park(3, MAIN));
    assert!(w.tick().is_empty(), "not in flight, not due");
    w.now = failed_at + RETRY_SECS;
    assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
}

#[test]
fn refresh_waiters_are_handed_back_at_each_tick() {
    let mut w = World::new(config());
    assert_eq!(w.waits.pace(), Pace::Eager);
    w.tick();
    assert_eq!(w.waits.pace(), Pace::Idle);
    assert!(w.waits.park_refresh(7, refresh_call("abc")));
    assert!(w.waits.park_refresh(8, refresh_call("def")));
    assert_eq!(w.waits.pace(), Pace::Poll);
    // Loads ending do not wake them: they wait on no issuer.
    let a = w.waits.on_dispatch_failed(&w.issuers, MAIN, w.now, "x");
    assert!(woken(&a).is_empty());
    assert_eq!(w.waits.pace(), Pace::Poll);
    w.now += 1;
    let a = w.tick();
    assert_eq!(woken(&a), [(7, "refresh"), (8, "refresh")]);
    let Some(Action::Wake {
        then: Then::Refresh(call),
        ..
    }) = a.iter().find(|a| matches!(a, Action::Wake { .. }))
    else {
        unreachable!()
    };
    assert_eq!((call.session_id.as_str(), call.generation), ("abc", 1));
    assert_eq!(w.waits.parked(), 0);
    assert_eq!(w.waits.pace(), Pace::Idle);
    assert!(woken(&w.tick()).is_empty());
}

#[test]
fn a_refresh_waiter_does_not_hide_a_wanted_load() {
    let mut w = World::new(config());
    w.tick();
    assert!(w.waits.park_refresh(7, refresh_call("abc")));
    assert!(w.park(1, MAIN));
    assert_eq!(w.waits.pace(), Pace::Eager);
}

#[test]
fn parking_is_bounded_in_entries() {
    let mut w = World::new(config());
    for stream in 0..MAX_PARKED as u32 {
        assert!(w.park(stream, MAIN), "{stream}");
    }
    assert_eq!(w.waits.parked(), MAX_PARKED);
    let last = MAX_PARKED as u32;
    assert!(!w.park(last, MAIN));
    assert!(!w.waits.park_refresh(last, refresh_call("abc")));
    // Keys waiters too (a load in flight, so not refused for being recent).
    w.tick();
    assert!(matches!(w.park_keys(last), KeysWait::Full));
    assert_eq!(w.waits.parked(), MAX_PARKED);
    // Room again once one goes away.
    w.waits.forget(3);
    assert!(w.waits.park_refresh(last, refresh_call("abc")));
    assert!(!w.park(last + 1, MAIN));
}

#[test]
fn parking_is_bounded_in_bytes() {
    let big = |n: usize| Request {
        headers: vec![("x-big".into(), "a".repeat(n))].into(),
    };
    let mut w = World::new(config());
    // One request larger than the whole budget.
    assert!(!w
        .waits
        .park_for_issuer(1, MAIN, big(MAX_PARKED_BYTES), w.now));
    assert_eq!(w.waits.parked(), 0);
    assert_eq!(w.waits.pace(), Pace::Eager);
    w.tick();
    assert_eq!(
        w.waits.pace(),
        Pace::Idle,
        "a refused request wants no load"
    );
    // Two that each fit but not together.
    let half = MAX_PARKED_BYTES / 2 + 1;
    assert!(w.waits.park_for_issuer(1, MAIN, big(half), w.now));
    assert!(!w.waits.park_for_issuer(2, MAIN, big(half), w.now));
    assert!(matches!(
        w.waits
            .park_for_keys(2, MAIN, Pending::Bearer(Box::new(big(half))), w.now),
        KeysWait::Full
    ));
    let mut call = refresh_call("abc");
    call.pending = PendingBox(Pending::Bearer(Box::new(big(half))));
    assert!(!w.waits.park_refresh(2, call));
    assert_eq!(w.waits.parked(), 1);
    // Many small ones still fit beside it.
    assert!(w.park(3, MAIN));
    w.waits.forget(1);
    assert!(w.waits.park_for_issuer(2, MAIN, big(half), w.now));
}

#[test]
fn forget_drops_every_wait_of_a_stream_and_only_its() {
    let mut w = World::new(config());
    assert!(w.park(1, MAIN));
    assert!(w.park(2, MAIN));
    assert_eq!(fetched(&w.tick()), [(0, "discovery")]);
    // A load in flight: keys waiters join it.
    assert!(matches!(w.park_keys(1), KeysWait::Parked));
    assert!(w.waits.park_refresh(1, refresh_call("abc")));
    assert!(w.waits.park_refresh(3, refresh_call("def")));
    assert_eq!(w.waits.parked(), 5);
    w.waits.forget(1);
    assert_eq!(w.waits.parked(), 2);
    w.waits.forget(99);
    assert_eq!(w.waits.parked(), 2);
    let keys = w.discovered(MAIN, ISSUER);
    let a = w.ok(MAIN, keys, &testkeys::jwks_json());
    assert_eq!(woken(&a), [(2, "decide")]);
    assert_eq!(woken(&w.tick()), [(3, "refresh")]);
}

#[test]
fn a_failure_after_adopting_a_snapshot_does_not_refuse_the_waiters() {
    let mut w = World::new(config());
    assert!(w.park(1, MAIN));
    let fetch = the_fetch(&w.tick(), MAIN);
    // Another worker's load lands first; ours is still in flight, so nobody is woken yet.
    w.now += 1;
    let a = w.tick_shared(&snapshot(ISSUER, w.now), 1);
    assert!(w.issuers.get(MAIN).is_some());
    let early = woken(&a);
    // Then our own callout fails: the metadata is there, the request can be decided.
    let a = w.answer(MAIN, fetch, None);
    let late = woken(&a);
    assert_eq!([early, late].concat(), [(1, "decide")]);
}

#[test]
fn a_failed_refetch_of_an_adopted_stale_snapshot_does_not_refuse_the_waiters() {
    for refused in [true, false] {
        let mut w = World::new(config());
        assert!(w.park(1, MAIN));
        // A new VM's first tick finds only stale metadata (the IdP has been down a while).
        let a = w.tick_shared(&snapshot(ISSUER, NOW - REFRESH_SECS), 1);
        assert!(w.issuers.get(MAIN).is_some());
        let fetch = the_fetch(&a, MAIN);
        let early = woken(&a);
        let a = if refused {
            w.waits
                .on_dispatch_failed(&w.issuers, MAIN, w.now, "idp.example.com")
        } else {
            w.answer(MAIN, fetch, None)
        };
        let late = woken(&a);
        assert_eq!(
            [early, late].concat(),
            [(1, "decide")],
            "refused: {refused}"
        );
    }
}

/// Load claims (see `issuer::loader::claim`): a worker due to load claims it first; while
/// another worker's claim is live it waits, and once that claim is older than a load may
/// take it takes over; a claim lost to a faster worker starts nothing.
#[test]
fn a_load_is_claimed_and_another_workers_live_claim_is_waited_for() {
    let mut w = World::new(config());
    assert!(w.park(1, MAIN));
    let theirs = claim::Claim {
        worker: 2,
        started_at: NOW,
        failed_at: 0,
    };
    let held = |w: &mut World| {
        let seen = [(None, None), (Some(theirs.encode()), Some(5))];
        w.waits.tick(&w.config, &mut w.issuers, w.now, &seen)
    };
    assert!(
        fetches(&held(&mut w)).is_empty(),
        "waits for the other load"
    );
    assert_eq!(w.waits.pace(), Pace::Poll, "and looks often");
    // Our own claim: made with compare-and-swap on the version read, as ours.
    w.now = NOW + w.config.idp_timeout_ms / 1000 + 6;
    let a = held(&mut w);
    let [Action::Claim {
        issuer, bytes, cas, ..
    }] = &a[..]
    else {
        panic!("expected a claim of the stale load, got {a:?}");
    };
    assert_eq!((*issuer, *cas), (MAIN, Some(5)));
    let mine = claim::Claim::decode(bytes).unwrap();
    assert_eq!(
        (mine.worker, mine.started_at, mine.failed_at),
        (1, w.now, 0)
    );
    // Lost to a faster worker: nothing starts, and the next tick comes soon.
    let a = w
        .waits
        .on_claimed(&w.config, &w.issuers, MAIN, false, None, w.now);
    assert!(a.is_empty());
    assert_eq!(w.waits.pace(), Pace::Eager);
    // Won: the load starts; its failure is written over the claim for the others.
    let a = held(&mut w);
    assert!(matches!(a[..], [Action::Claim { .. }]));
    let a = w
        .waits
        .on_claimed(&w.config, &w.issuers, MAIN, true, Some(6), w.now);
    let fetch = the_fetch(&a, MAIN);
    let a = w.answer(MAIN, fetch, None);
    let released: Vec<_> = a
        .iter()
        .filter_map(|a| match a {
            Action::Release { bytes, cas, .. } => {
                Some((claim::Claim::decode(bytes).unwrap(), *cas))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        released,
        [(
            claim::Claim {
                worker: 1,
                started_at: w.now,
                failed_at: w.now
            },
            Some(6)
        )]
    );
}
