//! Where a request goes and what it carries: whether its path may skip authentication
//! (`path`, `routes`), where a login or sign-out may send the browser (`redirect`, `domain`),
//! and the identity headers the app trusts (`headers`).

pub mod domain;
pub mod headers;
pub mod map;
pub mod path;
pub mod redirect;
pub mod routes;
pub mod wire;
