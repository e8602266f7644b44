//! The filter's hot path for one request, as the proxy-wasm adapter runs it, without Envoy:
//! for profiling the compiled Wasm under another V8 embedder (Node.js, see
//! `bench/v8_profile.py`) and comparing with the same code natively.
//!
//! Per iteration, as `filter::plugin::on_request` with `filter::host` does:
//!   1. the host hands over the request header map in proxy-wasm's serialized form, into a
//!      buffer the module allocated (`proxy_on_memory_allocate`), and the SDK deserializes
//!      it (proxy-wasm 0.2 `hostcalls::get_map_bytes` -> `utils::deserialize_map_bytes`);
//!   2. `map_lossy` turns each value into a `String` (`String::from_utf8`);
//!   3. `gate::decide`;
//!   4. on `Decision::Continue`, `gate::edited_headers` and the SDK's `utils::serialize_map`
//!      for `proxy_set_header_map_pairs` (`hostcalls::set_map`).
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
use wasm_oauth2_proxy::cache::Cache;
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::gate::{self, Admitted, Context, Decision, Env, Exchanged, Request};
use wasm_oauth2_proxy::issuer::{Issuers, MAIN};
use wasm_oauth2_proxy::metrics::Metrics;
use wasm_oauth2_proxy::routing::headers;

// ---------------------------------------------------------------------------------------
// proxy-wasm 0.2 SDK, copied: the header map wire format (src/hostcalls.rs `mod utils`).
// u32 count, then per pair u32 key length and u32 value length, then each key and value
// followed by a NUL. Little-endian.

/// `utils::serialize_map` (what `hostcalls::set_map` sends), and what the host sends us.
fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let mut size: usize = 4;
    for (name, value) in map {
        size += name.len() + value.len() + 10;
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(size);
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// `utils::deserialize_map_bytes` (what `hostcalls::get_map_bytes` returns).
fn deserialize_map_bytes(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[0..4]).unwrap()) as usize;
    let mut map = Vec::with_capacity(size);
    let mut p = 4 + size * 8;
    for n in 0..size {
        let s = 4 + n * 8;
        let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[s..s + 4]).unwrap()) as usize;
        let key = bytes[p..p + size].to_vec();
        p += size + 1;
        let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[s + 4..s + 8]).unwrap()) as usize;
        let value = bytes[p..p + size].to_vec();
        p += size + 1;
        map.push((String::from_utf8(key).unwrap(), value));
    }
    map
}

/// `proxy_on_memory_allocate` (src/allocator.rs) plus the host's copy into that buffer, and
/// `Vec::from_raw_parts` in `get_map_bytes`: a fresh exact-capacity buffer per call.
#[inline(never)]
fn host_hands_over(wire: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(wire.len());
    v.extend_from_slice(wire);
    black_box(v.into_boxed_slice().into_vec())
}

/// `filter::host::map_lossy`: SDK deserialization, then each value into a `String`.
#[inline(never)]
fn map_lossy(wire: &[u8]) -> (Vec<(String, String)>, bool) {
    headers::lossy(deserialize_map_bytes(wire))
}

/// `filter::host::edit_request_headers` with the exact headers at hand: the edited map,
/// serialized for `proxy_set_header_map_pairs` (the host then reads it; not timed here).
#[inline(never)]
fn write_back(req: &Request, remove: &[String], set: &[(String, String)]) -> usize {
    if remove.is_empty() && set.is_empty() {
        return 0;
    }
    let pairs = gate::edited_headers(&req.headers, remove, set);
    let wire = serialize_map(&pairs);
    black_box(&wire);
    wire.len()
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
    providers: Issuers,
    sessions: Cache<Admitted>,
    bearers: Cache<Admitted>,
    exchanged: Cache<Exchanged>,
    metrics: Metrics,
}

impl Gate {
    fn new(keys: &str) -> Gate {
        let mut providers = Issuers::new(1);
        providers.set(MAIN, provider(keys));
        Gate {
            config: config(),
            providers,
            sessions: Cache::new(gate::SESSION_CACHE_ENTRIES, gate::SESSION_CACHE_BYTES),
            bearers: Cache::new(gate::BEARER_CACHE_ENTRIES, gate::BEARER_CACHE_BYTES),
            exchanged: Cache::new(gate::EXCHANGE_CACHE_ENTRIES, gate::EXCHANGE_CACHE_BYTES),
            metrics: Metrics::default(),
        }
    }

    #[inline(never)]
    fn decide(&mut self, req: &Request) -> gate::Step {
        let mut random = |b: &mut [u8]| {
            b.fill(9);
            true
        };
        let mut env = Env {
            now: NOW,
            random: &mut random,
        };
        let mut cx = Context {
            config: &self.config,
            issuers: &self.providers,
            sessions: &mut self.sessions,
            bearers: &mut self.bearers,
            exchanged: &mut self.exchanged,
            metrics: &mut self.metrics,
        };
        gate::decide(&mut cx, req, &mut env)
    }

    /// One request through the adapter; the bytes written back (0: nothing to write).
    #[inline(never)]
    fn request(&mut self, wire: &[u8]) -> usize {
        let buf = host_hands_over(wire);
        let (headers, exact) = map_lossy(&buf);
        drop(buf);
        let req = Request { headers };
        let step = self.decide(&req);
        match step.decision {
            Decision::Continue { remove, set, .. } if exact => write_back(&req, &remove, &set),
            Decision::Continue { .. } => panic!("headers not exact"),
            other => panic!("not admitted: {other:?}"),
        }
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
    let wire = serialize_map(&pairs);
    // First request: opens the session / verifies the token and caches it.
    let out = gate.request(&wire);
    let cookie = headers
        .iter()
        .find(|(n, _)| n == "cookie")
        .map_or(0, |(_, v)| v.len());
    let start = Instant::now();
    let mut sum = 0usize;
    for _ in 0..n {
        sum = sum.wrapping_add(gate.request(black_box(&wire)));
    }
    let total = per_iter(start, n);
    black_box(sum);
    print!(
        "case={name} headers={} wire_bytes={} cookie_bytes={cookie} out_bytes={out} iters={n} \
         ns_per_iter={total:.0}",
        headers.len(),
        wire.len()
    );
    if phases {
        // Each step alone, on the same inputs.
        let start = Instant::now();
        for _ in 0..n {
            let buf = host_hands_over(black_box(&wire));
            black_box(map_lossy(&buf));
        }
        let read = per_iter(start, n);
        let req = Request {
            headers: map_lossy(&wire).0,
        };
        let start = Instant::now();
        for _ in 0..n {
            black_box(gate.decide(black_box(&req)));
        }
        let decide = per_iter(start, n);
        let Decision::Continue { remove, set, .. } = gate.decide(&req).decision else {
            panic!("not admitted")
        };
        let start = Instant::now();
        for _ in 0..n {
            black_box(write_back(black_box(&req), &remove, &set));
        }
        let write = per_iter(start, n);
        print!(" read_ns={read:.0} decide_ns={decide:.0} write_ns={write:.0}");
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
