//! Property-based fuzzing on stable Rust: every parser that sees attacker input, driven by
//! proptest with invariants that must hold for any input, not just "no panic".
//!
//! `cargo test --test properties` (part of `just test`) runs each target for a fixed number
//! of cases; `FUZZ_SECONDS=600 cargo test --release --test properties` (`just fuzz`) shares
//! that many seconds between the targets, drawing fresh random seeds until time is up.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use support::corpus::{app_view, decode_once, lines};
use url::Url;
use wasm_oauth2_proxy::cache::Cache;
use wasm_oauth2_proxy::config::{Config, CookieSettings, SameSite};
use wasm_oauth2_proxy::gate::{self, edited_headers, Context, Decision, Env, Request};
use wasm_oauth2_proxy::provider::Providers;
use wasm_oauth2_proxy::refresh::{self, Entry, Plan, State};
use wasm_oauth2_proxy::{cookie, headers, oidc, path, redirect};

const TARGETS: u32 = 8;

/// Runs `test` on values from `strategy`: a fixed number of cases, or (with FUZZ_SECONDS) fresh
/// seeds until this target's share of the time is spent. A failure panics with the shrunk input.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|total| Duration::from_secs(total) / TARGETS);
    let start = Instant::now();
    let mut cases = 0u64;
    loop {
        let config = RunnerConfig {
            cases: 256,
            failure_persistence: None,
            ..RunnerConfig::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        cases += 256;
        match budget {
            Some(b) if start.elapsed() < b => continue,
            _ => break,
        }
    }
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
        let req = Request { headers: hs };
        let providers = Providers::new(1);
        let mut sessions = Cache::new(16, 1 << 20);
        let mut bearers = Cache::new(16, 1 << 20);
        let mut exchanged = Cache::new(16, 1 << 20);
        let mut metrics = wasm_oauth2_proxy::metrics::Metrics::default();
        let mut cx = Context {
            config: &config,
            providers: &providers,
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
            let path = req.headers[1].1.as_str();
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

/// What one worker does next with the shared refresh slot of one session.
#[derive(Debug, Clone)]
enum SlotOp {
    /// Read the slot and decide (`refresh::plan`), remembering the compare-and-swap token.
    Read(usize),
    /// Carry out the remembered claim: compare-and-swap.
    Write(usize),
    /// A worker holding the claim publishes its outcome (0 done, 1 ended, 2 unavailable).
    Finish(usize, u8),
    /// Time passes.
    Tick(u64),
    /// Junk in the slot (another filter version, a torn write).
    Junk(Vec<u8>),
}

#[test]
fn refresh_slots_give_one_claim_at_a_time() {
    const WORKERS: usize = 4;
    const TIMEOUT: u64 = 3;
    let op = prop_oneof![
        (0..WORKERS).prop_map(SlotOp::Read),
        (0..WORKERS).prop_map(SlotOp::Write),
        (0..WORKERS, 0u8..3).prop_map(|(w, o)| SlotOp::Finish(w, o)),
        (0u64..4).prop_map(SlotOp::Tick),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(SlotOp::Junk),
    ];
    fuzz("refresh", proptest::collection::vec(op, 1..60), |ops| {
        // The slot as Envoy's shared data holds it: bytes and a version bumped on each write.
        let (mut slot, mut version): (Option<Vec<u8>>, u32) = (None, 0);
        let mut now = 1_000u64;
        // Each worker: the session generation it knows, a plan read, and a claim held since.
        let mut generation = [0u64; WORKERS];
        // The claim's timestamp is the time of the read that planned it.
        let mut read: [Option<(Plan, u32, u64)>; WORKERS] = Default::default();
        let mut held: [Option<u64>; WORKERS] = [None; WORKERS];
        let mut claims: [Option<Vec<u8>>; WORKERS] = Default::default();
        for op in ops {
            match op {
                SlotOp::Read(w) => {
                    let plan = refresh::plan(slot.as_deref(), "s", generation[w], now, TIMEOUT);
                    if let Plan::Adopt(cookie) = &plan {
                        let g = cookie
                            .parse::<u64>()
                            .map_err(|_| TestCaseError::fail("cookie"))?;
                        prop_assert!(g > generation[w], "adopted an older session");
                        generation[w] = g;
                    }
                    read[w] = Some((plan, version, now));
                }
                SlotOp::Write(w) => {
                    if let Some((Plan::Claim(bytes), seen, at)) = read[w].take() {
                        if seen == version && held[w].is_none() {
                            claims[w] = Some(bytes.clone());
                            slot = Some(bytes);
                            version += 1;
                            held[w] = Some(at);
                        }
                    }
                }
                SlotOp::Finish(w, outcome) => {
                    let claim = claims[w].take();
                    let ours = claim
                        .as_deref()
                        .is_some_and(|c| refresh::still_claimed(slot.as_deref(), c));
                    if held[w].take().is_some() && ours {
                        let state = match outcome {
                            0 => {
                                generation[w] += 1;
                                State::Done(generation[w].to_string())
                            }
                            1 => State::Ended,
                            _ => State::Unavailable,
                        };
                        let g = generation[w] - u64::from(outcome == 0);
                        let entry = Entry {
                            session: "s".into(),
                            generation: if outcome == 0 { g + 1 } else { g },
                            at: now,
                            state,
                        };
                        slot = Some(entry.encode());
                        version += 1;
                    }
                }
                SlotOp::Tick(secs) => now += secs,
                // Only the filter writes the slot, and only as a claim holder or to create it:
                // junk can precede claims, never overwrite one.
                SlotOp::Junk(bytes) if held.iter().all(Option::is_none) => {
                    prop_assert!(
                        matches!(
                            refresh::plan(Some(&bytes), "s", 0, now, TIMEOUT),
                            Plan::Claim(_)
                        ) || Entry::decode(&bytes).is_some()
                    );
                    slot = Some(bytes);
                    version += 1;
                }
                SlotOp::Junk(_) => {}
            }
            // Never two live claims: a claim older than the timeout and grace may be taken
            // over (its worker is presumed dead), a younger one never.
            let live = held
                .iter()
                .flatten()
                .filter(|since| now - **since <= TIMEOUT + refresh::GRACE_SECS)
                .count();
            prop_assert!(live <= 1, "{} live claims", live);
        }
        Ok(())
    });
}
