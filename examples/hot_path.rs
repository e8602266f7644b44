//! The filter's hot path for one request, as the proxy-wasm adapter runs it, without Envoy:
//! for profiling the compiled Wasm under another V8 embedder (Node.js, see
//! `bench/v8_profile.py`) and comparing with the same code natively.
//!
//! Per iteration, as `filter::driver` does for `on_http_request_headers`:
//!   1. the host hands over the request header map in proxy-wasm's serialized form, into a
//!      buffer the module allocated (`proxy_on_memory_allocate`), and `routing::wire::parse`
//!      reads it;
//!   2. the coordinator handles the request (`gate::decide` and carrying out its step);
//!   3. its `Continue` action holds the edited map, serialized in one buffer for
//!      `proxy_set_header_map_pairs`.
//!
//!   cargo run --release --example hot_path -- [CASE] [ITERATIONS] [--phases]
//!   wasmtime/node: hot_path.wasm [CASE] [ITERATIONS] [--phases]
//!
//! CASE: `session` (one ~1.5 KB session cookie), `chunked` (150 groups, 5 chunk cookies,
//! ~18 KB), `bearer` (a cached `Authorization: Bearer <ID token>`), or `all` (default).
//! The first iteration fills the caches (opening the session, verifying the token); the
//! timed loop then runs ITERATIONS (default 200000) more. `--phases` also times each step
//! alone, so native and Wasm can be compared step by step.

#[path = "../benches/support/fixtures.rs"]
mod fixtures;
use fixtures::{b64, config, cookie_header, provider, sealed, ISSUER, NOW};

use std::hint::black_box;
use std::time::Instant;

use p256::ecdsa::signature::Signer;
use serde_json::json;
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::coordinator::{Action, Coordinator, Event, HeaderEdit};
use wasm_oauth2_proxy::gate::Request;
use wasm_oauth2_proxy::routing::map::Headers;
use wasm_oauth2_proxy::routing::wire;

/// `proxy_on_memory_allocate` (the SDK's allocator) plus the host's copy into that buffer:
/// a fresh exact-capacity buffer per call, which `envoy::request_header_map` takes over.
#[inline(never)]
fn host_hands_over(bytes: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    black_box(v)
}

#[inline(never)]
fn read(bytes: Vec<u8>) -> (Headers, bool) {
    match wire::parse(bytes) {
        Some(read) => read,
        None => panic!("not a header map"),
    }
}

// ---------------------------------------------------------------------------------------
// The gate's state, as in benches/core.rs.

/// The `Cookie` header a browser sends for the sealed session, chunked as the gate sets it,
/// after an unrelated cookie of the app's.
fn browser_cookie(c: &Config, groups: usize) -> String {
    cookie_header(c, &sealed(c, groups))
}

/// An ES256 ID token from the login issuer, and the JWKS with its key (a fixed key: no
/// randomness or RSA key generation needed, which would be slow unoptimised in Wasm).
fn bearer_token() -> (String, String) {
    let key = match p256::ecdsa::SigningKey::from_slice(&[0x42; 32]) {
        Ok(k) => k,
        Err(e) => panic!("p256 key: {e}"),
    };
    let point = key.verifying_key().to_encoded_point(false);
    let jwks = json!({"keys": [{"kty": "EC", "kid": "ec", "crv": "P-256",
        "x": b64(point.x().map(|x| &x[..]).unwrap_or_default()),
        "y": b64(point.y().map(|y| &y[..]).unwrap_or_default())}]});
    let claims = json!({"iss": ISSUER, "aud": "bench", "sub": "john", "exp": NOW + 3600,
        "iat": NOW, "email": "john@example.com", "email_verified": true,
        "groups": ["developers", "ops"]});
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256", "kid": "ec", "typ": "JWT"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    (
        format!("{input}.{}", b64(&sig.to_bytes())),
        jwks.to_string(),
    )
}

/// The request header map as Envoy hands it to the filter (lowercase names, pseudo-headers
/// first, Envoy's own `x-forwarded-proto` and `x-request-id` added).
fn browser_headers(extra: &[(&str, &str)], accept: &str) -> Vec<(String, String)> {
    let mut h: Vec<(&str, &str)> = vec![
        (":authority", "app.example.com"),
        (":path", "/some/page?tab=overview"),
        (":method", "GET"),
        (":scheme", "https"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/126.0.0.0 Safari/537.36",
        ),
        ("accept", accept),
        ("accept-language", "en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
    ];
    h.extend_from_slice(extra);
    h.push(("x-forwarded-proto", "https"));
    h.push(("x-request-id", "6f1c2a9e-8d4b-4c3e-9a57-2b1f0e6d7c88"));
    h.into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                    image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

// ---------------------------------------------------------------------------------------

struct Gate {
    config: Config,
    coordinator: Coordinator,
    stream: u32,
}

fn fixed(b: &mut [u8]) -> bool {
    b.fill(9);
    true
}

impl Gate {
    /// A coordinator whose first tick adopts the login issuer's metadata (signed by `keys`)
    /// from shared data, as a worker does when another one loaded it.
    fn new(keys: &str) -> Gate {
        let snapshot = provider(keys).snapshot();
        let mut coordinator = Coordinator::new(config(), fixed);
        coordinator.handle(Event::Tick, NOW * 1000);
        while let Some(action) = coordinator.poll_action() {
            if let Action::Read { read, keys } = action {
                let values = keys
                    .iter()
                    .map(|k| match k.contains("refresh") {
                        true => (None, None),
                        false => (snapshot.clone(), Some(1)),
                    })
                    .collect();
                coordinator.handle(Event::Read { read, values }, NOW * 1000);
            }
        }
        Gate {
            config: config(),
            coordinator,
            stream: 0,
        }
    }

    /// The coordinator's work for one request: the bytes written back (0: nothing to
    /// write).
    #[inline(never)]
    fn decide(&mut self, headers: Headers, exact: bool) -> usize {
        self.stream = self.stream.wrapping_add(1);
        let req = Request { headers };
        let event = Event::Request {
            stream: self.stream,
            req,
            exact,
        };
        self.coordinator.handle(event, NOW * 1000);
        let mut out = None;
        while let Some(action) = self.coordinator.poll_action() {
            match action {
                Action::Continue {
                    edit: HeaderEdit::Whole(map),
                    ..
                } => out = Some(map.len()),
                Action::Continue { edit, .. } => panic!("not written whole: {edit:?}"),
                Action::Respond { response, .. } => panic!("not admitted: {}", response.status),
                _ => {}
            }
        }
        match out {
            Some(n) => n,
            None => panic!("not admitted"),
        }
    }

    /// One request through the adapter.
    #[inline(never)]
    fn request(&mut self, bytes: &[u8]) -> usize {
        let (headers, exact) = read(host_hands_over(bytes));
        self.decide(headers, exact)
    }
}

fn per_iter(start: Instant, n: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn run(name: &str, gate: &mut Gate, headers: Vec<(String, String)>, n: u64, phases: bool) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let bytes = wire::serialize(&pairs);
    // First request: opens the session / verifies the token and caches it.
    let out = gate.request(&bytes);
    let cookie = headers
        .iter()
        .find(|(n, _)| n == "cookie")
        .map_or(0, |(_, v)| v.len());
    let start = Instant::now();
    let mut sum = 0usize;
    for _ in 0..n {
        sum = sum.wrapping_add(gate.request(black_box(&bytes)));
    }
    let total = per_iter(start, n);
    black_box(sum);
    print!(
        "case={name} headers={} wire_bytes={} cookie_bytes={cookie} out_bytes={out} iters={n} \
         ns_per_iter={total:.0}",
        headers.len(),
        bytes.len()
    );
    if phases {
        // Each step alone, on the same inputs.
        let start = Instant::now();
        for _ in 0..n {
            black_box(read(host_hands_over(black_box(&bytes))));
        }
        let read_ns = per_iter(start, n);
        let (parsed, exact) = read(bytes.clone());
        let start = Instant::now();
        for _ in 0..n {
            black_box(gate.decide(black_box(parsed.clone()), exact));
        }
        let decide = per_iter(start, n);
        // The clone each decision above was given, to subtract.
        let start = Instant::now();
        for _ in 0..n {
            black_box(black_box(&parsed).clone());
        }
        let clone = per_iter(start, n);
        // The decision and the map written back, without the clone given to it.
        let decide = decide - clone;
        print!(" read_ns={read_ns:.0} decide_ns={decide:.0}");
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let phases = args.iter().any(|a| a == "--phases");
    let rest: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let case = rest.first().map_or("all", |s| s.as_str());
    let n: u64 = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);

    let (token, keys) = bearer_token();
    let mut gate = Gate::new(&keys);
    let cases: &[&str] = match case {
        "all" => &["session", "chunked", "bearer"],
        "session" => &["session"],
        "chunked" => &["chunked"],
        "bearer" => &["bearer"],
        other => panic!("unknown case {other}: session, chunked, bearer or all"),
    };
    for case in cases {
        let headers = match *case {
            // Five groups: a ~1.5 KB cookie, one chunk.
            "session" => {
                let cookies = browser_cookie(&gate.config, 5);
                browser_headers(&[("cookie", &cookies)], HTML)
            }
            "chunked" => {
                let cookies = browser_cookie(&gate.config, 150);
                browser_headers(&[("cookie", &cookies)], HTML)
            }
            _ => {
                let auth = format!("Bearer {token}");
                browser_headers(&[("authorization", &auth)], "application/json")
            }
        };
        run(case, &mut gate, headers, n, phases);
    }
}
