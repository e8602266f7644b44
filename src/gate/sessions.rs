//! The session a request's cookie holds: opened once and cached (with its verdict and its
//! headers for the app), sealed again when an old `cookie_secret` opened it, and forgotten
//! when it ends. Also the session a verified bearer token stands for.

use super::request::Incoming;
use super::vocab::{Admitted, Context};
use crate::config::Config;
use crate::oidc;
use crate::providers;
use crate::session::{self, cookie, Session};
use std::rc::Rc;

/// The request's session, opened (or from the cache); `None` without a valid one.
pub(super) fn current(cx: &mut Context, inc: &mut Incoming) -> Option<Rc<Admitted>> {
    let config = cx.config;
    let value = cookie::read_joined(&inc.cookies, &config.cookie.name)?;
    if let Some(hit) = cx.sessions.get(&value, inc.env.now) {
        return Some(hit);
    }
    let previous = config.keys.previous.iter().map(|k| &k.session);
    // Opened without the expiry check first, to count an expired session apart from a
    // forged or foreign one.
    let opened = session::open_any(
        &config.keys.current.session,
        previous,
        &config.cookie.name,
        &value,
        0,
    );
    let (s, old_key) = match opened {
        Some((s, _)) if s.expires_at <= inc.env.now => {
            cx.metrics.count("sessions_rejected.expired");
            return None;
        }
        Some(found) => found,
        None => {
            cx.metrics.count("sessions_rejected.invalid");
            return None;
        }
    };
    let mut a = Admitted::new(config, s);
    if old_key {
        // Sealed with a previous `cookie_secret`: seal it again with the current one, set on
        // this response, so the old secret can be retired.
        let nonce = inc.env.bytes::<12>()?;
        a.renewed = session::seal(
            &config.keys.current.session,
            &config.cookie.name,
            &a.session,
            nonce,
        );
        if let Some(new) = &a.renewed {
            let current = Admitted::new(config, a.session.clone());
            cx.sessions.insert(new, Rc::new(current));
        }
    }
    let a = Rc::new(a);
    cx.sessions.insert(&value, Rc::clone(&a));
    Some(a)
}

/// Drops the session the request's cookie holds from the cache (it is ending); `false`
/// when the request has no session cookie.
pub(super) fn forget(cx: &mut Context, cookies: &[(&str, &str)]) -> bool {
    let value = cookie::read_joined(cookies, &cx.config.cookie.name);
    if let Some(value) = &value {
        cx.sessions.remove(value);
    }
    value.is_some()
}

/// A session of what a verified bearer token says about its user, read as the provider
/// reads a login's token; its tokens are the caller's to fill in.
pub(super) fn from_token(
    config: &Config,
    verified: &oidc::Verified,
    now: u64,
    expires_at: u64,
) -> Session {
    Session {
        created_at: now,
        login_at: now,
        expires_at,
        sub: verified.sub.clone(),
        ..Session::default()
    }
    .with_identity(providers::bearer_identity(
        config.provider.get(),
        &config.provider_cx(None),
        verified,
    ))
}
