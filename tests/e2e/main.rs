//! End-to-end: real Envoy running the built, optimized filter, the real OpenID Provider
//! (`idp/`, oidc-provider), mock providers and misbehaving OPs written in Rust, and echo apps,
//! spoken to over HTTP as browsers and clients would. One test binary, so the heavy dev stack
//! (TLS, gRPC, WebSocket, browser drivers) links once and `just e2e` runs every module: a new
//! file here only needs its `mod` line below. Each module's first line says what it proves.
//!
//! ```sh
//! WOP_ENVOY=$PWD/.venv/bin/envoy WOP_WASM=$PWD/build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e -- --test-threads 2          # or `just e2e`
//! ```

#[allow(dead_code)]
#[path = "../openapi/mod.rs"]
mod openapi;
#[path = "../support/mod.rs"]
mod support;

mod bearer;
mod chromium;
mod convert;
mod endpoints;
mod envoy_lifecycle;
mod faults;
mod hardening;
mod headers;
mod lifecycle;
mod login;
mod metrics;
mod negative_tokens;
mod policy;
mod protocols;
mod providers;
mod redirects;
mod routes;
mod sessions;
mod sidecar;
mod workers;
