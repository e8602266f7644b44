//! wasm-oauth2-proxy: an OAuth2 / OpenID Connect login gate for Envoy.
//!
//! Everything that decides lives in plain, I/O-free modules so it can be tested natively;
//! only `filter` talks to the proxy-wasm host.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![deny(unsafe_code)]

pub mod cache;
pub mod callout;
pub mod config;
pub mod coordinator;
// Natively the adapter is only driven by its tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
pub mod gate;
pub mod issuer;
pub mod log;
pub mod memcmp;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod policy;
pub mod providers;
pub mod refresh;
pub mod routing;
pub mod session;
