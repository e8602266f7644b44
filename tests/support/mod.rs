//! Support code for the end-to-end tests (`tests/e2e/`, every module `just e2e` runs), also
//! shared by the native suites (`tests/corpora.rs`, `tests/properties.rs`, `tests/parity.rs`).
//!
//! Everything here runs real processes on 127.0.0.1: the oidc-provider IdP (node), the demo
//! echo app (node), Envoy with the optimized filter, and — for the negative suite — a
//! deliberately misbehaving OpenID Provider written in Rust (`bad_op`).
#![allow(dead_code)]

pub mod bad_op;
pub mod checks;
pub mod corpus;
pub mod fault_proxy;
pub mod html;
pub mod http;
pub mod idp;
pub mod jwt;
pub mod mock_common;
pub mod mock_entra;
pub mod mock_github;
pub mod mock_gitlab;
pub mod mock_google;
pub mod mock_oidc;
pub mod parity;
pub mod proc;
pub mod sidecar;
pub mod stack;
pub mod tls;
pub mod upstream;

use std::path::PathBuf;

/// The three environment variables the suite needs. Missing ones FAIL the test (never skip).
pub struct Env {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub root: PathBuf,
}

fn required(name: &str, what: &str) -> PathBuf {
    let v = std::env::var_os(name).unwrap_or_else(|| {
        panic!(
            "e2e: environment variable {name} is not set ({what}). \
             Run the suite as: WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm \
             WOP_ROOT=$PWD cargo test --test e2e -- --test-threads 2 (or `just e2e`)"
        )
    });
    let p = PathBuf::from(v);
    assert!(
        p.exists(),
        "e2e: {name}={} does not exist ({what})",
        p.display()
    );
    p
}

impl Env {
    pub fn get() -> Env {
        let env = Env {
            envoy: required("WOP_ENVOY", "path of the envoy binary"),
            wasm: required("WOP_WASM", "path of the built, optimized filter .wasm"),
            root: required("WOP_ROOT", "repository root"),
        };
        for rel in ["idp/server.js", "demo/app.js", "envoy/local.yaml.tmpl"] {
            assert!(
                env.root.join(rel).exists(),
                "e2e: {} is missing under WOP_ROOT={}",
                rel,
                env.root.display()
            );
        }
        env
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Random URL-safe token.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// 32 random bytes, standard base64 (the format of `cookie_secret`).
pub fn random_cookie_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}
