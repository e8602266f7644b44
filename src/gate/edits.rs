//! What goes on to the app: the request's headers with every client copy of an identity
//! header and our own cookies removed, and the identity set.

use super::request::Request;
use super::vocab::Decision;
use crate::config::Config;
use crate::routing::headers;
use crate::routing::map::Headers;
use crate::session::cookie;
use std::rc::Rc;

/// What goes to the app: client copies of every identity header (whatever their case,
/// count or spelling) and our cookies removed, `identity` set. Other cookies are left
/// byte-for-byte alone unless ours must be cut out of the same header.
pub(super) fn upstream_edits(
    config: &Config,
    req: &Request,
    identity: &[(&'static str, Rc<str>)],
    cookies: &[(&str, &str)],
    reply: &[String],
) -> Decision {
    let rewrite_cookie = cookies
        .iter()
        .any(|(n, _)| cookie::is_ours(&config.cookie, n));
    let mut set = identity.to_vec();
    let kept_cookies = if rewrite_cookie {
        cookie::strip_ours(&config.cookie, cookies)
    } else {
        None
    };
    // Setting a header replaces every copy the client sent, so only what is not set again
    // needs removing.
    let mut remove: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            headers::is_owned(n) || (rewrite_cookie && n.eq_ignore_ascii_case("cookie"))
        })
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !set.iter().any(|(s, _)| s == n))
        .filter(|n| !(n == "cookie" && kept_cookies.is_some()))
        .collect();
    remove.sort();
    remove.dedup();
    if let Some(rest) = kept_cookies {
        set.push(("cookie", rest.into()));
    }
    Decision::Continue {
        remove,
        set,
        reply: reply.to_vec(),
    }
}

/// The request headers once `remove` and `set` (a `Decision::Continue`) are applied: every
/// copy of a removed or set name is dropped, then each set value is added once.
pub fn edited_headers<'a>(
    headers: &'a Headers,
    remove: &'a [String],
    set: &'a [(&'static str, Rc<str>)],
) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
    let replaced = move |n: &str| {
        remove.iter().any(|r| r.eq_ignore_ascii_case(n))
            || set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
    };
    headers
        .iter()
        .filter(move |(n, _)| !replaced(n))
        .chain(set.iter().map(|(n, v)| (*n, &**v)))
}
