//! Native micro-benchmarks of the core: session sealing and opening, cookie parsing, token
//! verification per algorithm and the gate's decision for the common routes. `just bench`
//! runs them briefly; `cargo bench --bench core` runs them at criterion's defaults.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::Sha256;
use wasm_oauth2_proxy::cache::Cache;
use wasm_oauth2_proxy::gate::{self, Context, Decision, Env, Request};
use wasm_oauth2_proxy::issuer::{Issuers, MAIN};
use wasm_oauth2_proxy::oidc::{self, Jwks};
use wasm_oauth2_proxy::session;
use wasm_oauth2_proxy::session::cookie;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{b64, config, cookie_header, provider, sealed, session, COOKIE, ISSUER, NOW};

fn seal_open(cr: &mut Criterion) {
    let c = config();
    let mut g = cr.benchmark_group("session");
    for groups in [1usize, 150] {
        let s = session(groups);
        let value = sealed(&c, groups);
        g.bench_with_input(BenchmarkId::new("seal", groups), &s, |b, s| {
            b.iter(|| session::seal(&c.keys.current.session, COOKIE, black_box(s), [7; 12]))
        });
        g.bench_with_input(BenchmarkId::new("open", groups), &value, |b, v| {
            b.iter(|| session::open(&c.keys.current.session, COOKIE, black_box(v), NOW))
        });
    }
    g.finish();
}

fn cookies(cr: &mut Criterion) {
    let c = config();
    let mut g = cr.benchmark_group("cookie");
    for groups in [1usize, 150] {
        let header = cookie_header(&c, &sealed(&c, groups));
        g.bench_with_input(
            BenchmarkId::new("parse_and_join", groups),
            &header,
            |b, h| {
                b.iter(|| {
                    let pairs = cookie::parse(std::iter::once(black_box(h.as_str())));
                    cookie::read_joined(&pairs, COOKIE)
                })
            },
        );
    }
    g.finish();
}

/// Tokens signed with fresh keys, and the JWKS document holding all of their public halves.
fn tokens() -> (String, Vec<(&'static str, String)>) {
    let mut rng = rand::thread_rng();
    let rsa = match rsa::RsaPrivateKey::new(&mut rng, 2048) {
        Ok(k) => k,
        Err(e) => panic!("rsa keygen: {e}"),
    };
    let ec = p256::ecdsa::SigningKey::random(&mut rng);
    let public = rsa.to_public_key();
    let point = ec.verifying_key().to_encoded_point(false);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())},
        {"kty": "EC", "kid": "ec", "crv": "P-256",
         "x": b64(&point.x().map(|x| x.to_vec()).unwrap_or_default()),
         "y": b64(&point.y().map(|y| y.to_vec()).unwrap_or_default())},
    ]});
    let claims = b64(json!({"iss": ISSUER, "aud": "bench", "sub": "john", "exp": NOW + 3600, "email": "john@example.com"})
        .to_string()
        .as_bytes());
    let input = |alg: &str, kid: &str| {
        format!(
            "{}.{claims}",
            b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes())
        )
    };
    let rs = input("RS256", "rsa");
    let rs_sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa.clone())
        .sign(rs.as_bytes())
        .to_vec();
    let ps = input("PS256", "rsa");
    let ps_sig = rsa::pss::SigningKey::<Sha256>::new(rsa)
        .sign_with_rng(&mut rng, ps.as_bytes())
        .to_vec();
    let es = input("ES256", "ec");
    let es_sig: p256::ecdsa::Signature = ec.sign(es.as_bytes());
    let tokens = vec![
        ("RS256", format!("{rs}.{}", b64(&rs_sig))),
        ("PS256", format!("{ps}.{}", b64(&ps_sig))),
        ("ES256", format!("{es}.{}", b64(&es_sig.to_bytes()))),
    ];
    (jwks.to_string(), tokens)
}

fn verify(cr: &mut Criterion) {
    let (jwks, tokens) = tokens();
    let jwks = match Jwks::parse(jwks.as_bytes()) {
        Ok(j) => j,
        Err(e) => panic!("jwks: {e}"),
    };
    let mut g = cr.benchmark_group("jwt_verify");
    for (alg, token) in &tokens {
        assert!(
            oidc::verify(token, &jwks).is_ok(),
            "{alg} token must verify"
        );
        g.bench_with_input(BenchmarkId::from_parameter(alg), token, |b, t| {
            b.iter(|| oidc::verify(black_box(t), &jwks))
        });
    }
    g.finish();
}

fn request(path: &str, cookie: Option<&str>) -> Request {
    with_header(path, cookie.map(|c| ("cookie", c)))
}

fn with_header(path: &str, extra: Option<(&str, &str)>) -> Request {
    let mut headers: Vec<(String, String)> = [
        (":method", "GET"),
        (":path", path),
        (":authority", "app.example.com"),
        (":scheme", "http"),
        ("accept", "text/html"),
        ("user-agent", "bench"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    if let Some((n, v)) = extra {
        headers.push((n.into(), v.into()));
    }
    Request {
        headers: headers.into(),
    }
}

/// The gate's whole decision, as the filter calls it per request: routing, the session
/// (or verified bearer token) cache lookup and the header edits for the app.
fn decide(cr: &mut Criterion) {
    let c = config();
    let (keys, tokens) = tokens();
    let mut providers = Issuers::new(1);
    providers.set(MAIN, provider(&keys));
    let bearer = format!("Bearer {}", tokens.first().map_or("", |(_, t)| t.as_str()));
    let mut sessions = Cache::new(1024, 8 << 20);
    let mut bearers = Cache::new(1024, 4 << 20);
    let mut exchanged = Cache::new(1024, 4 << 20);
    let mut metrics = wasm_oauth2_proxy::metrics::Metrics::default();
    let mut random = |b: &mut [u8]| {
        b.fill(9);
        true
    };
    let mut run = |req: &Request| {
        let mut env = Env {
            now: NOW,
            random: &mut random,
        };
        let mut cx = Context {
            config: &c,
            issuers: &providers,
            sessions: &mut sessions,
            bearers: &mut bearers,
            exchanged: &mut exchanged,
            metrics: &mut metrics,
        };
        gate::decide(&mut cx, req, &mut env).decision
    };
    let cases = [
        ("ping", request("/ping", None)),
        ("no_session_302", request("/some/page", None)),
        ("skip_auth_route", request("/public/app.css", None)),
        (
            "session_cached",
            request("/some/page", Some(&cookie_header(&c, &sealed(&c, 1)))),
        ),
        (
            "chunked_session_cached",
            request("/some/page", Some(&cookie_header(&c, &sealed(&c, 150)))),
        ),
        (
            "bearer_cached",
            with_header("/some/page", Some(("authorization", &bearer))),
        ),
    ];
    let mut g = cr.benchmark_group("gate_decide");
    for (name, req) in &cases {
        if name.ends_with("_cached") || *name == "skip_auth_route" {
            assert!(
                matches!(run(req), Decision::Continue { .. }),
                "{name} must pass"
            );
        }
        g.bench_with_input(BenchmarkId::from_parameter(name), req, |b, r| {
            b.iter(|| run(black_box(r)))
        });
    }
    g.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = core;
    config = short();
    targets = seal_open, cookies, verify, decide
}
criterion_main!(core);
