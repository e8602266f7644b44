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
pub mod cookie;
pub mod csrf;
pub mod domain;
#[cfg(target_arch = "wasm32")]
mod filter;
pub mod gate;
pub mod headers;
pub mod loader;
pub mod memcmp;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod path;
pub mod pkce;
pub mod policy;
pub mod provider;
pub mod providers;
pub mod redirect;
pub mod refresh;
pub mod routes;
pub mod seal;
pub mod session;
