//! Property-based fuzzing on stable Rust: every parser that sees attacker input, driven by
//! proptest with invariants that must hold for any input, not just "no panic".
//!
//! `cargo test --test properties` (part of `just test`) runs each target for a fixed number
//! of cases; `FUZZ_SECONDS=600 cargo test --release --test properties` (`just fuzz`) shares
//! that many seconds between the targets, drawing fresh random seeds until time is up;
//! `FUZZ_TARGET_SECONDS=600` (`just fuzz-each`) gives each target that many. With
//! `FUZZ_RESULTS=<file>` each target appends one JSON line (cases run, seconds, the failure
//! if any) for bench/fuzz_report.py. A failing case's seed is kept in
//! `tests/properties.proptest-regressions` (commit it), which every run replays first: a
//! failure found once is tested for ever after.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use serde_json::{json, Value};
use support::corpus::{app_view, decode_once, lines};
use support::parity::{self, Facts, Idp, Repo};
use url::Url;
use wasm_oauth2_proxy::cache::Cache;
use wasm_oauth2_proxy::config::{Config, CookieSettings, SameSite};
use wasm_oauth2_proxy::gate::{self, edited_headers, Context, Decision, Env, Request};
use wasm_oauth2_proxy::issuer::Issuers;
use wasm_oauth2_proxy::refresh::{self, Entry, Plan, State};
use wasm_oauth2_proxy::{
    oidc, routing::headers, routing::path, routing::redirect, session::cookie,
};

const TARGETS: u32 = 9;

/// This target's time: FUZZ_TARGET_SECONDS, or its share of FUZZ_SECONDS; `None`: a fixed
/// number of cases.
fn budget() -> Option<Duration> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    var("FUZZ_TARGET_SECONDS")
        .map(Duration::from_secs)
        .or_else(|| var("FUZZ_SECONDS").map(|total| Duration::from_secs(total) / TARGETS))
}

/// One JSON line for bench/fuzz_report.py in FUZZ_RESULTS, if set. Appended with one write,
/// so the targets running on other threads do not interleave.
fn record(name: &str, cases: u64, took: Duration, failure: Option<&str>) {
    let Some(path) = std::env::var_os("FUZZ_RESULTS") else {
        return;
    };
    let line = json!({
        "target": name,
        "cases": cases,
        "seconds": took.as_secs_f64(),
        "failed": failure.is_some(),
        "failure": failure,
    })
    .to_string()
        + "\n";
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("{name}: cannot record the result in {path:?}: {e}");
    }
}

/// Runs `test` on values from `strategy`: a fixed number of cases, or (with a budget) fresh
/// seeds until this target's time is spent. A failure panics with the shrunk input, after
/// proptest kept its seed in tests/properties.proptest-regressions.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let budget = budget();
    let start = Instant::now();
    let mut cases = 0u64;
    loop {
        let config = RunnerConfig {
            cases: 256,
            source_file: Some(file!()),
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
                "proptest-regressions",
            ))),
            ..RunnerConfig::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            let failure = e.to_string();
            record(name, cases, start.elapsed(), Some(&failure));
            panic!("{name}: {failure}");
        }
        cases += 256;
        match budget {
            Some(b) if start.elapsed() < b => continue,
            _ => break,
        }
    }
    record(name, cases, start.elapsed(), None);
    eprintln!("{name}: {cases} cases in {:.1?}", start.elapsed());
}

/// Strings over an alphabet that reaches the interesting branches of URL and path parsers.
fn tricky(max: usize) -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%".to_string()),
        Just("%2e".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("%00".to_string()),
        Just("%c0%ae".to_string()),
        Just("\\".to_string()),
        Just(";".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just("\t".to_string()),
        Just(" ".to_string()),
        Just("public".to_string()),
        Just("admin".to_string()),
        Just("app.example.com".to_string()),
        Just("evil.example".to_string()),
        Just("https:".to_string()),
        Just("//".to_string()),
        "[a-zA-Z0-9_~-]{1,3}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(atoms, 0..max).prop_map(|v| v.concat())
}

#[test]
fn path_skippable_means_every_reading_agrees() {
    fuzz("path", tricky(12).prop_map(|s| format!("/{s}")), |raw| {
        let normal = path::normalize(raw.split('?').next().unwrap_or(""));
        if let Some(n) = &normal {
            let again = path::normalize(n);
            prop_assert_eq!(again.as_deref(), Some(n.as_str()), "idempotent");
        }
        if let Some(p) = path::skippable(&raw) {
            // The path that matched is the one every app reads.
            prop_assert_eq!(app_view(p), decode_once(p), "{:?}", raw);
            prop_assert!(!p.contains("//") && !p.contains("/./") && !p.contains("/../"));
        }
        Ok(())
    });
}

fn settings() -> CookieSettings {
    CookieSettings {
        name: "_oauth2_proxy".into(),
        secure: true,
        samesite: SameSite::Lax,
        domains: vec![],
        path: "/".into(),
        expire: 3600,
        csrf_expire: 900,
    }
}

#[test]
fn cookies_round_trip_through_chunks_among_junk() {
    // Sealed values are base64url; a seeded generator is much faster than a regex strategy.
    let value = (0usize..70_000, any::<u64>()).prop_map(|(len, mut x)| {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                B64[(x >> 58) as usize] as char
            })
            .collect::<String>()
    });
    let junk = proptest::collection::vec(("[!-~&&[^=;]]{1,20}", "[!-~&&[^;]]{0,30}"), 0..20);
    fuzz(
        "cookie",
        (value, junk, any::<bool>()),
        |(value, junk, split)| {
            let s = settings();
            let t = cookie::Target {
                host: "app.example.com",
                now: 0,
            };
            let Some(set) = cookie::set_chunked(&s, &t, &[], "_oauth2_proxy", &value, 60) else {
                prop_assert!(
                    value.len() > 3500 * cookie::MAX_CHUNKS,
                    "refused at {} bytes",
                    value.len()
                );
                return Ok(());
            };
            let mut pairs: Vec<String> = set
                .iter()
                .map(|c| c.split(';').next().unwrap_or("").to_string())
                .filter(|p| !p.ends_with('='))
                .collect();
            // The app's own cookies, some with names that look like ours.
            for (n, v) in &junk {
                if !cookie::is_ours(&s, n) {
                    pairs.push(format!("{n}={v}"));
                }
            }
            let headers: Vec<String> = if split {
                pairs.clone()
            } else {
                vec![pairs.join("; ")]
            };
            let parsed = cookie::parse(headers.iter().map(String::as_str));
            let joined = cookie::read_joined(&parsed, "_oauth2_proxy");
            if value.is_empty() {
                return Ok(());
            }
            prop_assert_eq!(joined.as_deref(), Some(value.as_str()));
            // What the app sees holds none of ours.
            if let Some(rest) = cookie::strip_ours(&s, &parsed) {
                for pair in cookie::parse(std::iter::once(rest.as_str())) {
                    prop_assert!(!cookie::is_ours(&s, pair.0));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn cookie_parsing_of_anything_is_bounded() {
    fuzz("cookie-parse", tricky(40), |header| {
        let parsed = cookie::parse(std::iter::once(header.as_str()));
        prop_assert!(parsed.len() <= header.len());
        let joined = cookie::read_joined(&parsed, "_oauth2_proxy");
        prop_assert!(joined.is_none_or(|j| j.len() <= header.len()));
        let cleared = cookie::clear_all(
            &settings(),
            &cookie::Target { host: "h", now: 0 },
            &parsed,
            "_oauth2_proxy",
        );
        prop_assert!(cleared.len() <= 1 + cookie::MAX_CHUNKS);
        Ok(())
    });
}

#[test]
fn redirects_land_on_our_host_or_a_listed_one() {
    let base = Url::parse("https://app.example.com/start").unwrap();
    let whitelist = vec![".trusted.example".to_string()];
    fuzz("redirect", tricky(10), |rd| {
        if let Some(target) = redirect::allowed(&rd, "app.example.com", &whitelist) {
            // Browsers drop tabs and newlines and read `\` as `/`; the URL standard does too.
            let landed = base.join(&target);
            prop_assert!(landed.is_ok(), "{:?} -> {:?}", rd, target);
            let host = landed.unwrap().host_str().unwrap_or("").to_string();
            prop_assert!(
                host == "app.example.com"
                    || host == "trusted.example"
                    || host.ends_with(".trusted.example"),
                "{:?} -> {:?} lands on {:?}",
                rd,
                target,
                host
            );
        }
        Ok(())
    });
}

#[test]
fn config_parsing_never_panics_and_names_a_key() {
    let keys = [
        "oidc_issuer_url",
        "idp_cluster",
        "idp_clusters",
        "client_id",
        "client_secret",
        "cookie_secret",
        "email_domains",
        "authenticated_emails",
        "allowed_groups",
        "skip_auth_routes",
        "api_routes",
        "extra_jwt_issuers",
        "cookie_expire",
        "ping_path",
        "cookie_name",
        "proxy_prefix",
        "whitelist_domains",
        "bogus_key",
    ];
    let value = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        tricky(6).prop_map(Value::from),
        proptest::collection::vec(tricky(6), 0..3).prop_map(|v| json!(v)),
        (tricky(4), tricky(4)).prop_map(|(k, v)| json!({ k: v })),
    ];
    let edits = proptest::collection::vec((0..keys.len(), value), 0..6);
    fuzz("config", edits, |edits| {
        let mut doc = json!({
            "oidc_issuer_url": "https://idp.example.com",
            "idp_cluster": "idp",
            "client_id": "app",
            "client_secret": "s",
            "cookie_secret": "0123456789abcdef0123456789abcdef",
            "email_domains": ["*"],
        });
        let mut touched = vec![];
        for (k, v) in edits {
            doc[keys[k]] = v;
            touched.push(keys[k]);
        }
        match Config::parse(doc.to_string().as_bytes(), &|_| None) {
            Ok(c) => prop_assert!(!c.issuers.is_empty()),
            Err(e) => {
                let named = e.key.trim_end_matches("_env");
                prop_assert!(
                    touched.contains(&named) || touched.contains(&e.key.as_str()),
                    "error names `{}`, edits touched {:?}",
                    e.key,
                    touched
                );
            }
        }
        Ok(())
    });
}

#[test]
fn jwt_parsing_of_anything_never_verifies() {
    let jwks = oidc::Jwks::parse(
        json!({"keys": [{"kty": "RSA", "kid": "k", "use": "sig",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "e": "AQAB"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let segment = prop_oneof![
        "[A-Za-z0-9_-]{0,60}",
        any::<Vec<u8>>().prop_map(|b| base64_url(&b)),
        prop_oneof![
            Just(json!({"alg": "RS256", "kid": "k"})),
            Just(json!({"alg": "none"})),
            Just(json!({"alg": "HS256", "kid": "k"})),
            Just(json!({"alg": "RS256", "crit": ["x"]})),
            Just(json!({"iss": "https://idp.example.com", "sub": "a", "exp": 9_999_999_999u64})),
        ]
        .prop_map(|v| base64_url(v.to_string().as_bytes())),
    ];
    let token = proptest::collection::vec(segment, 1..5).prop_map(|v| v.join("."));
    fuzz("jwt", token, |t| {
        prop_assert!(oidc::verify(&t, &jwks).is_err(), "{:?} verified", t);
        let _ = oidc::unverified_issuer(&t);
        Ok(())
    });
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Design invariants 1 and 2, for any request: no client copy of an identity header reaches
/// the app in any spelling, and nothing reaches it without a session except a skip route.
#[test]
fn gate_strips_every_spelling_and_admits_no_one_without_a_session() {
    let config = Config::parse(
        json!({
            "oidc_issuer_url": "https://idp.example.com",
            "idp_cluster": "idp",
            "client_id": "app",
            "client_secret": "s",
            "cookie_secret": "0123456789abcdef0123456789abcdef",
            "email_domains": ["*"],
            "skip_auth_routes": ["GET=^/public/"],
            "skip_jwt_bearer_tokens": true,
        })
        .to_string()
        .as_bytes(),
        &|_| None,
    )
    .unwrap();
    let name = prop_oneof![
        proptest::sample::select(lines("identity-header-spellings.txt")),
        "[a-zA-Z_.~-]{1,30}",
        Just("cookie".to_string()),
        Just("authorization".to_string()),
        Just("accept".to_string()),
    ];
    let header = (name, tricky(8));
    let req = (
        prop_oneof![Just("GET"), Just("POST"), Just("OPTIONS")],
        tricky(10),
        proptest::collection::vec(header, 0..12),
    );
    fuzz("gate", req, |(method, p, extra)| {
        let mut hs = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), format!("/{p}")),
            (":authority".to_string(), "app.example.com".to_string()),
        ];
        hs.extend(extra);
        let req = Request { headers: hs.into() };
        let providers = Issuers::new(1);
        let mut sessions = Cache::new(16, 1 << 20);
        let mut bearers = Cache::new(16, 1 << 20);
        let mut exchanged = Cache::new(16, 1 << 20);
        let mut metrics = wasm_oauth2_proxy::metrics::Metrics::default();
        let mut cx = Context {
            config: &config,
            issuers: &providers,
            sessions: &mut sessions,
            bearers: &mut bearers,
            exchanged: &mut exchanged,
            metrics: &mut metrics,
        };
        let mut random = |b: &mut [u8]| {
            b.fill(7);
            true
        };
        let mut env = Env {
            now: 1_700_000_000,
            random: &mut random,
        };
        if let Decision::Continue { remove, set, .. } =
            gate::decide(&mut cx, &req, &mut env).decision
        {
            // No keys are loaded, so no session or token can be valid: only a skip route.
            let path = req.headers.iter().nth(1).map(|(_, v)| v).unwrap();
            let skipped = path::skippable(path).is_some_and(|p| p.starts_with("/public/"));
            prop_assert!(
                method == "GET" && skipped,
                "{} {:?} reached the app",
                method,
                path
            );
            for (n, _) in edited_headers(&req.headers, &remove, &set) {
                prop_assert!(!headers::is_owned(n), "{} reached the app", n);
            }
        }
        Ok(())
    });
}

/// What one worker does next with the shared refresh slots.
#[derive(Debug, Clone)]
enum SlotOp {
    /// Read the session's candidate slots and decide (`refresh::plan`), remembering the
    /// compare-and-swap versions.
    Read(usize),
    /// Carry out the remembered claim: compare-and-swap.
    Write(usize),
    /// Read the slots again after the write (`refresh::confirm`): refresh, or back off.
    Confirm(usize),
    /// A worker holding the claim publishes its outcome (0 done, 1 ended, 2 unavailable).
    Finish(usize, u8),
    /// Time passes.
    Tick(u64),
    /// Junk in a slot (another filter version, a torn write).
    Junk(usize, Vec<u8>),
    /// A whole refresh without interleaving: read, write, finish.
    Attempt(usize, u8),
}

/// Workers with requests of six sessions whose candidate slots are the same four (the worst
/// case of sharing): never two live claims on one session, and never a refresh of a
/// session generation that was already refreshed within `HOLD_SECS` — which would present
/// a refresh token the IdP rotated (a reuse-detecting IdP then revokes the grant).
#[test]
fn refresh_slots_give_one_claim_at_a_time_and_never_reuse_a_rotated_token() {
    const WORKERS: usize = 9;
    const SESSIONS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];
    const TIMEOUT: u64 = 3;
    let op = prop_oneof![
        2 => (0..WORKERS).prop_map(SlotOp::Read),
        2 => (0..WORKERS).prop_map(SlotOp::Write),
        2 => (0..WORKERS).prop_map(SlotOp::Confirm),
        2 => (0..WORKERS, 0u8..3).prop_map(|(w, o)| SlotOp::Finish(w, o)),
        4 => (0..WORKERS, prop_oneof![3 => Just(0u8), 1 => 1u8..3])
            .prop_map(|(w, o)| SlotOp::Attempt(w, o)),
        1 => prop_oneof![0u64..4, Just(60), Just(120)].prop_map(SlotOp::Tick),
        1 => (0..refresh::CHOICES, proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(i, b)| SlotOp::Junk(i, b)),
    ];
    let ops = proptest::collection::vec(op, 1..120).prop_map(|ops| {
        ops.into_iter()
            .flat_map(|op| match op {
                SlotOp::Attempt(w, o) => vec![
                    SlotOp::Read(w),
                    SlotOp::Write(w),
                    SlotOp::Confirm(w),
                    SlotOp::Finish(w, o),
                ],
                other => vec![other],
            })
            .collect::<Vec<_>>()
    });
    fuzz("refresh", ops, |ops| {
        // The slots as Envoy's shared data holds them: bytes and a version bumped on each
        // write.
        let mut slots: Vec<(Option<Vec<u8>>, u32)> = vec![(None, 0); refresh::CHOICES];
        let mut now = 1_000u64;
        // Each worker serves one session (w % 6), knowing some generation of it.
        let session = |w: usize| SESSIONS[w % SESSIONS.len()];
        let mut generation = [0u64; WORKERS];
        // The plan read, the slots seen and when; the claim written (slot, bytes, since,
        // generation, what the slot held before), and whether it was confirmed.
        type Seen = Vec<(Option<Vec<u8>>, u32)>;
        let mut read: Vec<Option<(Plan, Seen, u64)>> = vec![None; WORKERS];
        type Held = (usize, Vec<u8>, u64, u64, Option<Vec<u8>>);
        let mut written: Vec<Option<Held>> = vec![None; WORKERS];
        let mut held: Vec<Option<Held>> = vec![None; WORKERS];
        // When each (session, generation) was refreshed: its refresh token then rotated.
        let mut rotated: std::collections::HashMap<(usize, u64), u64> = Default::default();
        for op in ops {
            match op {
                SlotOp::Read(w) => {
                    let bytes: Vec<Option<&[u8]>> =
                        slots.iter().map(|(b, _)| b.as_deref()).collect();
                    let plan = refresh::plan(&bytes, session(w), generation[w], now, TIMEOUT, now);
                    if let Plan::Adopt(cookie) = &plan {
                        let g = cookie
                            .parse::<u64>()
                            .map_err(|_| TestCaseError::fail("cookie"))?;
                        prop_assert!(g > generation[w], "adopted an older session");
                        generation[w] = g;
                    }
                    read[w] = Some((plan, slots.clone(), now));
                }
                SlotOp::Write(w) => {
                    if let Some((Plan::Claim { slot, bytes }, seen, at)) = read[w].take() {
                        let free = written[w].is_none() && held[w].is_none();
                        if seen[slot].1 == slots[slot].1 && free {
                            let before = slots[slot].0.clone();
                            slots[slot] = (Some(bytes.clone()), slots[slot].1 + 1);
                            written[w] = Some((slot, bytes, at, generation[w], before));
                        }
                    }
                }
                SlotOp::Confirm(w) => {
                    let Some((slot, bytes, at, g, before)) = written[w].take() else {
                        continue;
                    };
                    let all: Vec<Option<&[u8]>> = slots.iter().map(|(b, _)| b.as_deref()).collect();
                    let ours = all[slot] == Some(bytes.as_slice());
                    if ours && refresh::confirm(&all, slot, session(w), g, now, TIMEOUT) {
                        let s = w % SESSIONS.len();
                        if let Some(when) = rotated.get(&(s, g)) {
                            // The README's promise: two minutes on one Envoy.
                            prop_assert!(
                                now.saturating_sub(*when) >= 120,
                                "{} generation {} refreshed again {}s after its token \
                                 was rotated",
                                session(w),
                                g,
                                now - when
                            );
                        }
                        held[w] = Some((slot, bytes, at, g, before));
                    } else if ours {
                        // Back off: what the slot held goes back.
                        slots[slot] = (before, slots[slot].1 + 1);
                    }
                }
                SlotOp::Finish(w, outcome) => {
                    let Some((slot, claim, _, g, _)) = held[w].take() else {
                        continue;
                    };
                    if !refresh::still_claimed(slots[slot].0.as_deref(), &claim) {
                        continue;
                    }
                    let s = w % SESSIONS.len();
                    let state = match outcome {
                        0 => {
                            rotated.insert((s, g), now);
                            generation[w] = g + 1;
                            State::Done((g + 1).to_string())
                        }
                        1 => State::Ended,
                        _ => State::Unavailable,
                    };
                    let entry = Entry::outcome(&claim, state, now)
                        .ok_or_else(|| TestCaseError::fail("claim"))?;
                    slots[slot] = (Some(entry.encode()), slots[slot].1 + 1);
                }
                SlotOp::Tick(secs) => now += secs,
                // Only the filter writes a slot, and only as a claim holder or to create it:
                // junk can precede its entries (the `free` it creates slots with, another
                // version's bytes), never overwrite one.
                SlotOp::Junk(i, bytes)
                    if slots[i].0.as_deref().and_then(Entry::decode).is_none()
                        && written.iter().chain(&held).flatten().all(|h| h.0 != i) =>
                {
                    if Entry::decode(&bytes).is_none() {
                        slots[i] = (Some(bytes), slots[i].1 + 1);
                    }
                }
                SlotOp::Junk(..) | SlotOp::Attempt(..) => {}
            }
            // Never two live claims on a session: a claim older than the timeout and grace
            // may be taken over (its worker is presumed dead), a younger one never.
            for (s, name) in SESSIONS.iter().enumerate() {
                let live = held
                    .iter()
                    .enumerate()
                    .filter(|(w, h)| {
                        w % SESSIONS.len() == s
                            && h.as_ref().is_some_and(|(_, _, since, ..)| {
                                now - since <= TIMEOUT + refresh::GRACE_SECS
                            })
                    })
                    .count();
                prop_assert!(live <= 1, "{} live claims on {}", live, name);
            }
        }
        Ok(())
    });
}

fn subset<T: Clone + std::fmt::Debug + 'static>(all: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(any::<bool>(), all.len()).prop_map(move |pick| {
        all.iter()
            .zip(pick)
            .filter(|(_, p)| *p)
            .map(|(x, _)| x.clone())
            .collect()
    })
}

fn one_of<T: Clone + std::fmt::Debug + 'static>(all: Vec<T>) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn facts() -> impl Strategy<Value = Facts> {
    let who = (
        one_of(vec![
            Some("alice@example.com"),
            Some("bob@eu.example.com"),
            Some("carol@other.org"),
            Some("evil@x.org@example.com"),
            None,
        ]),
        one_of(vec![None, Some(true), Some(false)]),
        subset(vec!["devs", "ops", "acme/platform", "acme:ops"]),
        subset(vec!["admin", "viewer"]),
        subset(vec!["viewer"]),
        one_of(vec![None, Some("example.com"), Some("other.example")]),
        one_of(vec![parity::TENANT, parity::OTHER_TENANT]),
        one_of(vec![None, Some(true), Some(false)]),
    );
    let api = (
        subset(vec!["acme", "other"]),
        subset(vec![("acme", "core"), ("acme", "ops"), ("other", "core")]),
        proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>())),
        any::<bool>(),
        proptest::option::of((one_of(vec![10u8, 20, 30, 40, 50]), any::<bool>())),
    );
    (who, api).prop_map(
        |((email, verified, groups, realm, client, hd, tid, edov), api)| {
            let (orgs, teams, repo, collaborator, project) = api;
            let text = |l: Vec<&str>| l.into_iter().map(str::to_owned).collect::<Vec<_>>();
            Facts {
                email: email.map(str::to_owned),
                email_verified: verified,
                groups: text(groups),
                realm_roles: text(realm),
                client_roles: text(client),
                hd: hd.map(str::to_owned),
                tid: Some(tid.to_owned()),
                xms_edov: edov,
                login: "octocat".into(),
                orgs: text(orgs),
                teams: teams
                    .into_iter()
                    .map(|(o, t)| (o.to_owned(), t.to_owned()))
                    .collect(),
                repo: repo.map(|(private, push, pull)| Repo {
                    private,
                    push,
                    pull,
                }),
                collaborator,
                projects: project
                    .map(|(level, archived)| ("acme/app".to_string(), level, archived))
                    .into_iter()
                    .collect(),
            }
        },
    )
}

fn rules(idp: Idp) -> impl Strategy<Value = Value> {
    let generic = (
        one_of(vec![
            json!(["*"]),
            json!(["example.com"]),
            json!([".example.com"]),
            json!(["*.example.com"]),
            json!(["other.org"]),
        ]),
        one_of(vec![json!([]), json!(["Carol@other.org"])]),
        one_of(vec![
            json!([]),
            json!(["devs"]),
            json!(["acme:ops"]),
            json!(["acme/platform"]),
        ]),
        one_of(vec![
            json!([]),
            json!(["admin"]),
            json!(["gate-client:viewer"]),
        ]),
        any::<bool>(),
    );
    let own = (
        one_of(vec![json!([]), json!(["example.com"])]),
        one_of(vec![json!([]), json!(["acme/platform"])]),
        one_of(vec![json!([]), json!(["acme/app"]), json!(["acme/app=30"])]),
        one_of(vec![
            json!([parity::TENANT]),
            json!(["*"]),
            json!([parity::TENANT, parity::OTHER_TENANT]),
        ]),
        (
            one_of(vec![None, Some("acme")]),
            one_of(vec![json!([]), json!(["ops"])]),
            one_of(vec![None, Some("acme/app")]),
            any::<bool>(),
            one_of(vec![json!([]), json!(["octocat"]), json!(["hubot"])]),
        ),
    );
    (generic, own).prop_map(move |(g, own)| {
        let (domains, emails, groups, roles, unverified) = g;
        let mut r = json!({
            "email_domains": domains,
            "authenticated_emails": emails,
            "allowed_groups": groups,
            "allowed_roles": roles,
            "insecure_oidc_allow_unverified_email": unverified,
        });
        let (hd, gl_groups, gl_projects, tenants, (org, teams, repo, token, users)) = own;
        let m = r.as_object_mut().expect("object");
        match idp {
            Idp::Google => {
                m.insert("google_hosted_domains".into(), hd);
            }
            Idp::GitLab => {
                m.insert("gitlab_group".into(), gl_groups);
                m.insert("gitlab_projects".into(), gl_projects);
            }
            Idp::Entra => {
                m.insert("entra_id_allowed_tenants".into(), tenants);
            }
            Idp::GitHub => {
                if let Some(org) = org {
                    m.insert("github_org".into(), org.into());
                    m.insert("github_team".into(), teams);
                }
                if let Some(repo) = repo {
                    m.insert("github_repo".into(), repo.into());
                    if token {
                        m.insert("github_token".into(), "ghp_x".into());
                    }
                }
                m.insert("github_users".into(), users);
            }
            _ => {}
        }
        r
    })
}

/// Random users and random rule sets, every provider: the gate's verdict on every credential
/// path (login, refresh, bearer token, `/oauth2/auth`, WebSocket, gRPC) equals the reference
/// function's (`tests/support/parity.rs`), written from oauth2-proxy's rules apart from the
/// filter's code. So no path admits anyone another would refuse, for the same facts.
#[test]
fn every_credential_path_agrees_with_the_reference_rules() {
    let case = one_of(Idp::ALL.to_vec()).prop_flat_map(|idp| (Just(idp), rules(idp), facts()));
    fuzz("parity", case, |(idp, rules, facts)| {
        let got = parity::verdicts(idp, &rules, &facts).map_err(TestCaseError::fail)?;
        for (path, verdict) in got {
            let want = parity::reference(idp, &facts, path, &rules);
            prop_assert_eq!(
                &verdict,
                &want,
                "{:?} {:?} {} {:?}",
                idp,
                path,
                rules,
                facts
            );
        }
        Ok(())
    });
}
