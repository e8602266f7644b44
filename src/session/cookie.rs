//! Cookie plumbing: reading the `Cookie` header, writing `Set-Cookie`, splitting large
//! values into `name_0`, `name_1`, … chunks (as oauth2-proxy does) and hiding our cookies
//! from the app.

use crate::config::{CookieSettings, SameSite};
use crate::routing::domain;
use std::borrow::Cow;

/// Browsers cap a cookie (name, value and attributes) near 4096 bytes; stay clear of it.
const MAX_COOKIE_LEN: usize = 4000;

/// The most chunks a session may be split into, and so the only chunk names read, written
/// or cleared. 16 chunks of 4 KB (as oauth2-proxy splits) hold far more than any IdP's
/// tokens and already exceed Envoy's default 60 KB request-header limit; a client sending
/// `_oauth2_proxy_<n>` for thousands of `n` gets them ignored, not joined or echoed back.
pub const MAX_CHUNKS: usize = 16;

/// `(name, value)` pairs from every `Cookie` header, in order.
pub fn parse<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<(&'a str, &'a str)> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            let n = n.trim();
            let v = v.trim().trim_matches('"');
            (!n.is_empty()).then_some((n, v))
        })
        .collect()
}

fn get<'a>(cookies: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// `Some(digits)` when `candidate` is `base_<digits>`.
fn chunk_digits<'a>(base: &str, candidate: &'a str) -> Option<&'a str> {
    let digits = candidate.strip_prefix(base)?.strip_prefix('_')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The index when `candidate` is a chunk name we could have written: `base_<n>` with `n`
/// in canonical decimal and below [`MAX_CHUNKS`].
fn chunk_index(base: &str, candidate: &str) -> Option<usize> {
    let digits = chunk_digits(base, candidate)?;
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().filter(|i| *i < MAX_CHUNKS)
}

/// Whether `candidate` is `name` itself or one of its chunks.
pub fn is_part_of(name: &str, candidate: &str) -> bool {
    candidate == name || chunk_index(name, candidate).is_some()
}

/// The whole value of cookie `name`, joining chunks when it was split (only then copied).
/// One pass over the cookies; chunks beyond [`MAX_CHUNKS`] are ignored.
pub fn read_joined<'a>(cookies: &[(&'a str, &'a str)], name: &str) -> Option<Cow<'a, str>> {
    if let Some(v) = get(cookies, name) {
        return Some(Cow::Borrowed(v));
    }
    let mut parts: [Option<&str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for (n, v) in cookies {
        if let Some(slot) = chunk_index(name, n).and_then(|i| parts.get_mut(i)) {
            // The first copy wins, as for an unchunked cookie.
            slot.get_or_insert(v);
        }
    }
    let present: Vec<&str> = parts.iter().map_while(|p| *p).collect();
    (!present.is_empty()).then(|| Cow::Owned(present.concat()))
}

/// True when the cookie is one of ours and must not reach the app: the session (whole or
/// any numbered chunk, even one we would never write) or a login-attempt cookie.
pub fn is_ours(settings: &CookieSettings, name: &str) -> bool {
    // Runs for every cookie of every request: no allocation.
    match name.strip_prefix(settings.name.as_str()) {
        Some("") | Some("_csrf") => true,
        Some(rest) if rest.starts_with("_csrf_") => true,
        Some(_) => chunk_digits(&settings.name, name).is_some(),
        None => false,
    }
}

/// Login-attempt cookies the browser sent: the shared one and every per-request one.
pub fn csrf_cookies<'a>(
    settings: &CookieSettings,
    cookies: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let shared = settings.csrf_name();
    cookies
        .iter()
        .filter(|(n, _)| {
            n.strip_prefix(shared.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
        })
        .copied()
        .collect()
}

/// The `Cookie` header the app should see: ours removed, everything else untouched.
/// `None` means no cookie is left and the header should be dropped.
pub fn strip_ours(settings: &CookieSettings, cookies: &[(&str, &str)]) -> Option<String> {
    // On every request with a session: one buffer, no formatting machinery.
    let mut kept = String::new();
    for (n, v) in cookies.iter().filter(|(n, _)| !is_ours(settings, n)) {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(n);
        kept.push('=');
        kept.push_str(v);
    }
    (!kept.is_empty()).then_some(kept)
}

/// What a cookie's attributes depend on besides the settings.
pub struct Target<'a> {
    /// Request host without port, to pick a matching `cookie_domains` entry.
    pub host: &'a str,
    pub now: u64,
}

fn attributes(settings: &CookieSettings, target: &Target, max_age: u64) -> String {
    let mut a = format!("; Path={}", settings.path);
    if let Some(domain) = pick_domain(&settings.domains, target.host) {
        a.push_str("; Domain=");
        a.push_str(domain);
    }
    a.push_str(&format!(
        "; Max-Age={max_age}; Expires={}",
        http_date(target.now.saturating_add(max_age))
    ));
    a.push_str("; HttpOnly");
    if settings.secure {
        a.push_str("; Secure");
    }
    match settings.samesite {
        SameSite::Lax => a.push_str("; SameSite=Lax"),
        SameSite::Strict => a.push_str("; SameSite=Strict"),
        SameSite::None => a.push_str("; SameSite=None"),
        SameSite::Unset => {}
    }
    a
}

/// The longest configured domain that the host is in, as oauth2-proxy's `cookie_domains`.
fn pick_domain<'a>(domains: &'a [String], host: &str) -> Option<&'a str> {
    domains
        .iter()
        .map(|d| d.as_str())
        .filter(|d| domain::labels_below(host, d.trim_start_matches('.')).is_some())
        .max_by_key(|d| d.len())
}

pub fn set_cookie(
    settings: &CookieSettings,
    target: &Target,
    name: &str,
    value: &str,
    max_age: u64,
) -> String {
    format!("{name}={value}{}", attributes(settings, target, max_age))
}

pub fn clear_cookie(settings: &CookieSettings, target: &Target, name: &str) -> String {
    format!("{name}={}", attributes(settings, target, 0))
}

/// `Set-Cookie` values that store `value` under `name`, split into chunks when too large,
/// and expire whatever the browser still holds from an earlier, differently split value.
/// `None` when the value needs more than [`MAX_CHUNKS`] chunks.
pub fn set_chunked(
    settings: &CookieSettings,
    target: &Target,
    present: &[&str],
    name: &str,
    value: &str,
    max_age: u64,
) -> Option<Vec<String>> {
    let attr_len = attributes(settings, target, max_age).len();
    let budget = MAX_COOKIE_LEN
        .saturating_sub(attr_len + name.len() + 8)
        .max(256);
    let mut out = Vec::new();
    if name.len() + 1 + value.len() + attr_len <= MAX_COOKIE_LEN {
        out.push(set_cookie(settings, target, name, value, max_age));
        for n in present {
            if chunk_index(name, n).is_some() {
                out.push(clear_cookie(settings, target, n));
            }
        }
        return Some(out);
    }
    // Values are base64url, so splitting at any byte boundary is safe.
    let chunks: Vec<&[u8]> = value.as_bytes().chunks(budget).collect();
    if chunks.len() > MAX_CHUNKS {
        return None;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let part = String::from_utf8_lossy(chunk);
        out.push(set_cookie(
            settings,
            target,
            &format!("{name}_{i}"),
            &part,
            max_age,
        ));
    }
    for n in present {
        let stale = *n == name || chunk_index(name, n).is_some_and(|i| i >= chunks.len());
        if stale {
            out.push(clear_cookie(settings, target, n));
        }
    }
    Some(out)
}

/// Expire every form of `name` the browser sent (whole or chunked), but only names we
/// could have written: at most 1 + [`MAX_CHUNKS`] `Set-Cookie` headers.
pub fn clear_all(
    settings: &CookieSettings,
    target: &Target,
    present: &[(&str, &str)],
    name: &str,
) -> Vec<String> {
    let mut out: Vec<String> = present
        .iter()
        .filter(|(n, _)| is_part_of(name, n))
        .map(|(n, _)| clear_cookie(settings, target, n))
        .collect();
    out.sort();
    if out.is_empty() {
        out.push(clear_cookie(settings, target, name));
    }
    out.dedup();
    out
}

/// RFC 7231 IMF-fixdate, for `Expires`.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS.get((days % 7) as usize).unwrap_or(&"Thu"),
        day,
        MONTHS.get((month - 1) as usize).unwrap_or(&"Jan"),
        year,
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings {
            name: "_oauth2_proxy".into(),
            secure: true,
            samesite: SameSite::Lax,
            domains: vec![],
            path: "/".into(),
            expire: 3600,
            csrf_expire: 900,
        }
    }

    const T: Target = Target {
        host: "app.example.com",
        now: 0,
    };

    #[test]
    fn parses_multiple_headers() {
        let c = parse(["a=1; b=2", "c=\"3\""].into_iter());
        assert_eq!(c, vec![("a", "1"), ("b", "2"), ("c", "3")]);
    }

    #[test]
    fn attributes_are_all_there() {
        let s = set_cookie(&settings(), &T, "_oauth2_proxy", "v", 60);
        assert_eq!(
            s,
            "_oauth2_proxy=v; Path=/; Max-Age=60; Expires=Thu, 01 Jan 1970 00:01:00 GMT; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn domain_matching() {
        let mut s = settings();
        s.domains = vec![
            ".example.com".into(),
            "app.example.com".into(),
            "other.org".into(),
        ];
        assert!(set_cookie(&s, &T, "n", "v", 1).contains("; Domain=app.example.com;"));
        let t = Target {
            host: "x.example.com",
            now: 0,
        };
        assert!(set_cookie(&s, &t, "n", "v", 1).contains("; Domain=.example.com;"));
        let t = Target {
            host: "evil.com",
            now: 0,
        };
        assert!(!set_cookie(&s, &t, "n", "v", 1).contains("Domain"));
    }

    #[test]
    fn chunks_round_trip_and_stay_small() {
        let value: String = "abcdefghij".repeat(1000);
        let sets = set_chunked(&settings(), &T, &[], "_oauth2_proxy", &value, 60).unwrap();
        assert!(sets.len() >= 3);
        assert!(sets.iter().all(|s| s.len() <= MAX_COOKIE_LEN));
        let pairs: Vec<(String, String)> = sets
            .iter()
            .map(|s| {
                let nv = s.split(';').next().unwrap();
                let (n, v) = nv.split_once('=').unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        let view: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(read_joined(&view, "_oauth2_proxy").unwrap(), value);
    }

    #[test]
    fn stale_chunks_are_cleared() {
        let present = ["_oauth2_proxy_0", "_oauth2_proxy_1", "_oauth2_proxy_2"];
        let sets = set_chunked(&settings(), &T, &present, "_oauth2_proxy", "small", 60).unwrap();
        assert_eq!(sets.len(), 4);
        assert!(sets[0].starts_with("_oauth2_proxy=small;"));
        for i in 0..3 {
            assert!(sets[i + 1].starts_with(&format!("_oauth2_proxy_{i}=; ")));
            assert!(sets[i + 1].contains("Max-Age=0"));
        }
        let big = "x".repeat(5000);
        let sets = set_chunked(
            &settings(),
            &T,
            &["_oauth2_proxy", "_oauth2_proxy_5"],
            "_oauth2_proxy",
            &big,
            60,
        )
        .unwrap();
        assert!(sets.iter().any(|s| s.starts_with("_oauth2_proxy=; ")));
        assert!(sets.iter().any(|s| s.starts_with("_oauth2_proxy_5=; ")));
    }

    #[test]
    fn chunks_are_capped() {
        let name = "_oauth2_proxy";
        // Thousands of chunk names: only 0..MAX_CHUNKS are joined, in one pass.
        let owned: Vec<(String, String)> = (0..5000)
            .map(|i| (format!("{name}_{i}"), format!("{}", i % 10)))
            .collect();
        let view: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            read_joined(&view, name).unwrap(),
            "0123456789012345",
            "joined only the first MAX_CHUNKS"
        );
        let cleared = clear_all(&settings(), &T, &view, name);
        assert_eq!(cleared.len(), MAX_CHUNKS);
        // Non-canonical indexes are not ours to join or clear, but still never reach the app.
        let odd = [("_oauth2_proxy_00", "x"), ("_oauth2_proxy_01", "y")];
        assert_eq!(read_joined(&odd, name), None);
        assert_eq!(clear_all(&settings(), &T, &odd, name).len(), 1);
        assert_eq!(strip_ours(&settings(), &odd), None);
        // A gap ends the value: chunk 2 without chunk 1 is not joined.
        let gap = [("_oauth2_proxy_0", "a"), ("_oauth2_proxy_2", "c")];
        assert_eq!(read_joined(&gap, name).unwrap(), "a");
        // A value that needs more than MAX_CHUNKS chunks is refused, not truncated.
        let huge = "x".repeat(MAX_COOKIE_LEN * (MAX_CHUNKS + 1));
        assert!(set_chunked(&settings(), &T, &[], name, &huge, 60).is_none());
    }

    #[test]
    fn ours_are_stripped_others_kept() {
        let c = [
            ("_oauth2_proxy", "s"),
            ("_oauth2_proxy_0", "s"),
            ("_oauth2_proxy_csrf", "c"),
            ("_oauth2_proxy_x", "keep"),
            ("other", "1"),
        ];
        assert_eq!(
            strip_ours(&settings(), &c).unwrap(),
            "_oauth2_proxy_x=keep; other=1"
        );
        assert_eq!(strip_ours(&settings(), &c[..3]), None);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
