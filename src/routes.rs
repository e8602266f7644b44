//! Requests that go to the app without a session, as oauth2-proxy's `skip_auth_routes` and
//! `skip_auth_preflight` allow. Identity headers a client sent are still stripped from them.

use regex_lite::Regex;

/// One `skip_auth_routes` entry: `METHOD=regex` or just `regex` (any method). As in
/// oauth2-proxy the regex is matched against the path (no query) and is not anchored for
/// you: `^/public/` means what it says, `/public` also matches `/x/public`.
#[derive(Clone, Debug)]
pub struct SkipRoute {
    method: Option<String>,
    path: Regex,
}

impl SkipRoute {
    pub fn parse(entry: &str) -> Result<SkipRoute, String> {
        // A method prefix is an HTTP token; anything else before a `=` belongs to the regex.
        let (method, pattern) = match entry.split_once('=') {
            Some((m, p)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                (Some(m.to_ascii_uppercase()), p)
            }
            _ => (None, entry),
        };
        if pattern.is_empty() {
            return Err(format!("`{entry}` has an empty path regex"));
        }
        let path = Regex::new(pattern).map_err(|e| format!("`{pattern}` is not a regex: {e}"))?;
        Ok(SkipRoute { method, path })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.is_match(path)
    }
}

/// Whether a request with this method and path skips authentication.
pub fn skips(routes: &[SkipRoute], preflight: bool, method: &str, path: &str) -> bool {
    (preflight && method == "OPTIONS") || routes.iter().any(|r| r.matches(method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(entries: &[&str]) -> Vec<SkipRoute> {
        entries
            .iter()
            .map(|e| SkipRoute::parse(e).unwrap())
            .collect()
    }

    #[test]
    fn method_and_path() {
        let r = routes(&["GET=^/public/", "^/health$", "post=^/hooks/[a-z]+$"]);
        assert!(skips(&r, false, "GET", "/public/a.css"));
        assert!(!skips(&r, false, "POST", "/public/a.css"));
        assert!(skips(&r, false, "PUT", "/health"));
        assert!(!skips(&r, false, "GET", "/health/x"));
        assert!(skips(&r, false, "POST", "/hooks/github"));
        assert!(!skips(&r, false, "POST", "/hooks/GitHub"));
        assert!(!skips(&r, false, "GET", "/private"));
    }

    #[test]
    fn unanchored_like_oauth2_proxy() {
        let r = routes(&["/public"]);
        assert!(skips(&r, false, "GET", "/x/public"));
    }

    #[test]
    fn equals_sign_without_method_is_part_of_the_regex() {
        let r = routes(&["^/a=b$", "^/x/=y"]);
        assert!(skips(&r, false, "GET", "/a=b"));
        assert!(skips(&r, false, "GET", "/x/=y"));
    }

    #[test]
    fn preflight() {
        assert!(skips(&[], true, "OPTIONS", "/anything"));
        assert!(!skips(&[], false, "OPTIONS", "/anything"));
        assert!(!skips(&[], true, "GET", "/anything"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(SkipRoute::parse("GET=").is_err());
        assert!(SkipRoute::parse("^/(unclosed").is_err());
        assert!(SkipRoute::parse("").is_err());
    }
}
