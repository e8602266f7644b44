//! Which requests skip authentication (oauth2-proxy's `skip_auth_routes` and
//! `skip_auth_preflight`) and which are API routes that get a 401 rather than a redirect
//! (`api_routes`). Identity headers a client sent are still stripped from skipped requests.

use crate::routing::path;
use regex_lite::Regex;

/// One `skip_auth_routes` entry: `METHOD=regex`, `METHOD!=regex` (any method but that one) or
/// just `regex` (any method). As in oauth2-proxy the regex is matched against the path, never
/// the query, and is not anchored for you: `^/public/` means what it says, `/public` also
/// matches `/x/public`.
#[derive(Clone, Debug)]
pub struct SkipRoute {
    method: Method,
    path: PathRegex,
}

#[derive(Clone, Debug)]
enum Method {
    Any,
    Only(String),
    AllBut(String),
}

impl SkipRoute {
    pub fn parse(entry: &str) -> Result<SkipRoute, String> {
        // A method is an HTTP token of letters; anything else before a `=` belongs to the regex.
        let is_method = |m: &str| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic());
        let (method, pattern) = match entry.split_once('=') {
            Some((m, p)) if is_method(m) => (Method::Only(m.to_ascii_uppercase()), p),
            Some((m, p)) => match m.strip_suffix('!') {
                Some(m) if is_method(m) => (Method::AllBut(m.to_ascii_uppercase()), p),
                _ => (Method::Any, entry),
            },
            None => (Method::Any, entry),
        };
        Ok(SkipRoute {
            method,
            path: regex(pattern)?,
        })
    }

    /// An entry of oauth2-proxy's older `skip_auth_regex`: a path regex for any method.
    pub fn any_method(pattern: &str) -> Result<SkipRoute, String> {
        Ok(SkipRoute {
            method: Method::Any,
            path: regex(pattern)?,
        })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = match &self.method {
            Method::Any => true,
            Method::Only(m) => m.eq_ignore_ascii_case(method),
            Method::AllBut(m) => !m.eq_ignore_ascii_case(method),
        };
        method_ok && self.path.is_match(path)
    }
}

/// A path regex, and the plain string test that decides it alike when the pattern is an
/// anchored literal (`^/public/`, `^/healthz$`): regex-lite has no literal shortcuts, and
/// these run on every request.
#[derive(Clone, Debug)]
struct PathRegex {
    regex: Regex,
    literal: Option<Literal>,
}

#[derive(Clone, Debug)]
enum Literal {
    Prefix(String),
    Exact(String),
}

impl PathRegex {
    fn is_match(&self, path: &str) -> bool {
        match &self.literal {
            Some(Literal::Prefix(p)) => path.starts_with(p.as_str()),
            Some(Literal::Exact(p)) => path == p,
            None => self.regex.is_match(path),
        }
    }
}

/// `^literal` or `^literal$`, where the literal holds only characters no regex syntax gives a
/// meaning to outside a class (`$` is end of text: regex-lite has no multi-line mode unless
/// asked for with a flag, which starts with `(`).
fn literal(pattern: &str) -> Option<Literal> {
    let rest = pattern.strip_prefix('^')?;
    let (text, exact) = match rest.strip_suffix('$') {
        Some(text) => (text, true),
        None => (rest, false),
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/_-=,:@!%;'\"<>".contains(&b);
    if !text.bytes().all(plain) {
        return None;
    }
    Some(match exact {
        true => Literal::Exact(text.to_string()),
        false => Literal::Prefix(text.to_string()),
    })
}

fn regex(pattern: &str) -> Result<PathRegex, String> {
    if pattern.is_empty() {
        return Err("empty path regex".into());
    }
    let regex = Regex::new(pattern).map_err(|e| format!("`{pattern}` is not a regex: {e}"))?;
    Ok(PathRegex {
        regex,
        literal: literal(pattern),
    })
}

/// One `api_routes` entry: a path regex, unanchored like `skip_auth_routes`.
#[derive(Clone, Debug)]
pub struct ApiRoute(PathRegex);

impl ApiRoute {
    pub fn parse(entry: &str) -> Result<ApiRoute, String> {
        regex(entry).map(ApiRoute)
    }
}

/// Whether a request with this method and `:path` skips authentication. Only a path that is
/// already canonical and unambiguous can match (see [`path::skippable`]): anything an app
/// could resolve to another path than the one that matched must log in like any other.
pub fn skips(routes: &[SkipRoute], preflight: bool, method: &str, raw_path: &str) -> bool {
    if preflight && method == "OPTIONS" {
        return true;
    }
    if routes.is_empty() {
        return false;
    }
    path::skippable(raw_path).is_some_and(|p| routes.iter().any(|r| r.matches(method, p)))
}

/// Whether an unauthenticated request on this path gets a 401 instead of a login redirect.
/// Only the response changes, never whether the request gets in, so the raw path is fine.
pub fn is_api(routes: &[ApiRoute], path_only: &str) -> bool {
    routes.iter().any(|r| r.0.is_match(path_only))
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
    fn all_but_one_method() {
        let r = routes(&["POST!=^/open/", "get!=^/feed$"]);
        assert!(skips(&r, false, "GET", "/open/x"));
        assert!(skips(&r, false, "DELETE", "/open/x"));
        assert!(!skips(&r, false, "POST", "/open/x"));
        assert!(!skips(&r, false, "GET", "/feed"));
        assert!(skips(&r, false, "HEAD", "/feed"));
    }

    #[test]
    fn query_never_takes_part() {
        // oauth2-proxy CVE-2025-54576: a skip rule matched against the query let
        // `/private?x=/public/` through.
        let r = routes(&["/public/", "GET=^/ok$"]);
        assert!(!skips(&r, false, "GET", "/private?x=/public/"));
        assert!(!skips(&r, false, "GET", "/private?/public/"));
        assert!(skips(&r, false, "GET", "/ok?anything=/private"));
        assert!(skips(&r, false, "GET", "/x/public/y?q"));
    }

    #[test]
    fn non_canonical_paths_never_skip() {
        let r = routes(&["^/public/"]);
        for p in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/..%2fadmin",
            "/public%2f..%2fadmin",
            "/public/..;/admin",
            "/public\\..\\admin",
            "/public/%00/../admin",
            "//public/x",
            "/public//x",
            "/public/./x",
            "/%70ublic/x",
            "http://host/public/x",
        ] {
            assert!(!skips(&r, false, "GET", p), "{p}");
        }
    }

    #[test]
    fn skip_auth_regex_entries_are_paths_only() {
        let r = vec![SkipRoute::any_method("^/GET=x$").unwrap()];
        assert!(skips(&r, false, "POST", "/GET=x"));
    }

    #[test]
    fn unanchored_like_oauth2_proxy() {
        let r = routes(&["/public"]);
        assert!(skips(&r, false, "GET", "/x/public"));
    }

    #[test]
    fn equals_sign_without_method_is_part_of_the_regex() {
        let r = routes(&["^/a=b$", "^/x/=y", "^/q!=z$"]);
        assert!(skips(&r, false, "GET", "/a=b"));
        assert!(skips(&r, false, "GET", "/x/=y"));
        assert!(skips(&r, false, "GET", "/q!=z"));
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
        assert!(SkipRoute::parse("GET!=").is_err());
        assert!(SkipRoute::parse("^/(unclosed").is_err());
        assert!(SkipRoute::parse("").is_err());
        assert!(ApiRoute::parse("").is_err());
        assert!(ApiRoute::parse("(").is_err());
    }

    /// The literal shortcut decides every pattern it takes exactly as the regex does.
    #[test]
    fn literal_patterns_match_as_their_regex() {
        let pieces = [
            "^", "$", "/", "a", "b", ".", "*", "+", "?", "|", "(", ")", "[", "]", "\\", "-", "=",
            "%", "$",
        ];
        let mut taken = 0;
        let mut patterns = vec![String::new()];
        for _ in 0..4 {
            patterns = patterns
                .iter()
                .flat_map(|p| pieces.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for pattern in &patterns {
                let Ok(re) = regex(pattern) else { continue };
                if re.literal.is_none() {
                    continue;
                }
                taken += 1;
                for path in [
                    "/", "/a", "/a/", "/ab", "/a/b", "a", "", "/b", "/a$", "/-=%", "^/a",
                ] {
                    assert_eq!(
                        re.is_match(path),
                        re.regex.is_match(path),
                        "{pattern:?} on {path:?}"
                    );
                }
            }
        }
        assert!(taken > 100, "only {taken} literal patterns tried");
        assert!(regex("^/public/").unwrap().literal.is_some());
        assert!(regex("^/public/a.css").unwrap().literal.is_none());
        assert!(regex("(?m)^/a$").unwrap().literal.is_none());
    }

    #[test]
    fn api_routes_match_the_path() {
        let api = vec![ApiRoute::parse("^/api/").unwrap()];
        assert!(is_api(&api, "/api/v1"));
        assert!(!is_api(&api, "/app/api/"));
        assert!(!is_api(&[], "/api/v1"));
    }
}
