//! Which request paths `skip_auth_routes` may be matched against. Envoy hands us `:path`
//! untouched, and an app that resolves `/public/%2e%2e/admin` to `/admin` would otherwise be
//! reachable without a login. A path may skip auth only when it is already canonical and holds
//! nothing an app could read differently; any other path simply needs a session.

/// The path part of a `:path` value (everything before the first `?`), when it is safe to match
/// skip rules against: `Some(path)` only if the raw path is already in canonical form and holds
/// nothing an app could resolve differently. `None` means "this request cannot skip auth".
pub fn skippable(raw_path_and_query: &str) -> Option<&str> {
    let path = raw_path_and_query
        .split_once('?')
        .map_or(raw_path_and_query, |(path, _)| path);
    if plain(path) {
        return Some(path);
    }
    (normalize(path)? == path).then_some(path)
}

/// Whether `path` is its own normal form without decoding anything: printable ASCII with no
/// escape and no delimiter [`normalize`] refuses, no empty segment and no segment of dots.
/// Nearly every real path is; this spares them `normalize`'s allocations on every request.
fn plain(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    // One trailing slash is its own normal form; any other empty segment is merged away.
    let body = rest.strip_suffix('/').unwrap_or(rest);
    path.bytes()
        .all(|b| b.is_ascii_graphic() && !b"\\;%?#".contains(&b))
        && (rest.is_empty()
            || body
                .split('/')
                .all(|seg| !seg.is_empty() && !seg.bytes().all(|b| b == b'.')))
}

/// RFC 3986 normalization of a path (no query): percent-decoding of unreserved characters
/// (ALPHA / DIGIT / - . _ ~), upper-case hex in the remaining escapes, removal of dot segments
/// (section 5.2.4, including dot segments written as %2e / %2E which decode to '.'), and
/// merging of repeated slashes. `None` when the path is ambiguous: not starting with `/`, raw
/// control / space / `\` / `;` / `#` / `?` / non-ASCII, a malformed escape, an escape of a
/// delimiter, `%` or a control, decoded bytes that are not UTF-8, a segment of dots and
/// spaces other than `.` and `..`, or a character that folds to a delimiter or a dot.
pub fn normalize(path: &str) -> Option<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    // Slashes are merged first (empty segments dropped), so `..` can never pop an empty one.
    for raw in path.strip_prefix('/')?.split('/') {
        let (normal, decoded) = segment(raw)?;
        // Windows strips trailing dots and spaces (`..%20` is `..`), old shells read `...`.
        let dots_and_spaces = decoded.chars().all(|c| c == '.' || c == ' ');
        if dots_and_spaces && decoded.contains('.') && decoded != "." && decoded != ".." {
            return None;
        }
        if decoded.chars().any(folds_to_delimiter) {
            return None;
        }
        trailing_slash = matches!(decoded.as_str(), "" | "." | "..");
        match decoded.as_str() {
            "" | "." => {}
            ".." => drop(kept.pop()),
            _ => kept.push(normal),
        }
    }
    let mut out: String = kept.iter().map(|s| format!("/{s}")).collect();
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Some(out)
}

/// One segment's normal form and its fully decoded text.
fn segment(raw: &str) -> Option<(String, String)> {
    let (mut normal, mut decoded) = (String::new(), Vec::new());
    let mut bytes = raw.bytes();
    while let Some(c) = bytes.next() {
        let escaped = c == b'%';
        let b = if escaped {
            hex(bytes.next())? << 4 | hex(bytes.next())?
        } else {
            c
        };
        // These split or re-decode the path in some app (`%25` is a second decoding round);
        // raw `/` and `%` never get here.
        if b.is_ascii_control()
            || b"/\\;%?#".contains(&b)
            || !escaped && (b == b' ' || !b.is_ascii())
        {
            return None;
        }
        if escaped && !(b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            normal.push_str(&format!("%{b:02X}"));
        } else {
            normal.push(char::from(b));
        }
        decoded.push(b);
    }
    // Invalid UTF-8 includes overlong forms (`%c0%ae`) that old decoders read as `.`.
    Some((normal, String::from_utf8(decoded).ok()?))
}

fn hex(digit: Option<u8>) -> Option<u8> {
    char::from(digit?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Characters that NFKC (as of Unicode 14, every one whose compatibility form has one of
/// `. / \ ; % ? #`) or Windows "best fit" code-page conversion (yen and won are `\` in cp932 /
/// cp949, `∕` is `/`) turn into a delimiter or a dot: an app that folds them reads another path.
fn folds_to_delimiter(c: char) -> bool {
    matches!(c,
        '\u{A5}' | '\u{37E}' | '\u{2024}'..='\u{2026}' | '\u{2047}'..='\u{2049}'
        | '\u{20A9}' | '\u{2100}' | '\u{2101}' | '\u{2105}' | '\u{2106}' | '\u{2215}'
        | '\u{2488}'..='\u{249B}' | '\u{33C2}' | '\u{33C7}' | '\u{33D8}' | '\u{FE14}' | '\u{FE16}'
        | '\u{FE19}' | '\u{FE30}' | '\u{FE52}' | '\u{FE54}' | '\u{FE56}' | '\u{FE5F}' | '\u{FE68}'
        | '\u{FE6A}' | '\u{FF03}' | '\u{FF05}' | '\u{FF0E}' | '\u{FF0F}' | '\u{FF1B}' | '\u{FF1F}'
        | '\u{FF3C}' | '\u{1F100}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normal_forms() {
        for (input, normal) in [
            ("/", "/"),
            ("/%41%7a%2D%2e%5F%7E%30", "/Az-._~0"),
            ("/a%3d%c3%a9%20", "/a%3D%C3%A9%20"),
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/.%2E/b", "/b"),
            ("//a///b", "/a/b"),
            ("/a/", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a//..", "/"),
            ("/Ab/a.b/.c/c.", "/Ab/a.b/.c/c."),
        ] {
            assert_eq!(normalize(input).as_deref(), Some(normal), "{input:?}");
        }
        // Separated by `|`: the empty target, then one per rule.
        let ambiguous = "|a/b|*|http://h/x|/a\u{1}|/a\u{7f}|/a b|/a\\b|/a;b|/a#b|/a?b|/caf\u{e9}|\
            /a%|/a%2|/a%zz|/a%u002e|/a%2fb|/a%5Cb|/a%3bb|/a%252e|/a%3F|/a%23|/a%00|/a%1f|/a%7F|\
            /a%c0%ae|/a%e0%80%ae|/a%c3|/a%c3/%a9|/a/...|/a/..%20/b|/a/.%20|/a/%ef%bc%8e%ef%bc%8e|\
            /a/%E2%80%A5/b|/a%C2%A5b";
        for input in ambiguous.split('|') {
            assert_eq!(normalize(input), None, "{input:?}");
        }
    }

    #[test]
    fn legitimate_paths_stay_skippable() {
        let paths = "/public/a.css /public/x/y.js /public/caf%C3%A9.png /public/a%20b /health / \
            /public/ /public/a-b_c~d.e /public/.well-known/x /public/a..b /public/v1.2/app.min.js \
            /public/%E6%97%A5%E6%9C%AC.txt /public/a%3Db%2Bc";
        for path in paths.split(' ') {
            assert_eq!(skippable(path), Some(path));
            assert_eq!(skippable(&format!("{path}?a=1&b=/../x#y")), Some(path));
        }
    }

    /// Every string of up to six characters over the ones `plain` decides on agrees with the
    /// slow path.
    #[test]
    fn plain_agrees_with_normalize_exhaustively() {
        let alphabet = ['/', '.', 'a', '%', ';', '?', ' ', '\\'];
        let mut paths = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for p in &longer {
                let slow = normalize(p).is_some_and(|n| n == *p);
                assert!(!plain(p) || slow, "{p:?} is plain but not normal");
                let path = p.split_once('?').map_or(p.as_str(), |(path, _)| path);
                let want = normalize(path).filter(|n| n == path).map(|_| path);
                assert_eq!(skippable(p), want, "{p:?}");
            }
            paths = longer;
        }
    }

    /// Paths built from the pieces that matter here, and from a biased alphabet.
    fn paths() -> impl Strategy<Value = String> {
        let tokens = "/ . .. a %2e %2E %2f %5c %25 %20 %41 %c3%a9 %C3%A9 %c0%ae %EF%BC%8E ; \\ ? \
            # % %u002e \t \u{e9}";
        let token = prop::sample::select(tokens.split(' ').collect::<Vec<_>>());
        let built = prop::collection::vec(token, 0..16).prop_map(|t| format!("/{}", t.concat()));
        prop_oneof![built, "/[/.%2eEfF5cC;\\\\?#a]{0,32}"]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(any in any::<String>(), biased in "[/.%2eEfF5cC;\\\\?#a]{0,32}") {
            let _ = (normalize(&any), skippable(&any), normalize(&biased), skippable(&biased));
        }

        #[test]
        fn plain_paths_are_their_own_normal_form(
            p in prop_oneof![paths(), "/[a-z./~!$&'()*+,=:@^|<>{}\\[\\]`\"-]{0,24}"],
        ) {
            if plain(&p) {
                prop_assert_eq!(normalize(&p), Some(p.clone()));
            }
            let path = p.split_once('?').map_or(p.as_str(), |(path, _)| path);
            let slow = normalize(path).filter(|n| n == path).map(|_| path);
            prop_assert_eq!(skippable(&p), slow);
        }

        #[test]
        fn idempotent(p in paths()) {
            if let Some(n) = normalize(&p) {
                prop_assert_eq!(normalize(&n), Some(n.clone()));
            }
        }

        #[test]
        fn normal_form_is_plain(p in paths()) {
            if let Some(n) = normalize(&p) {
                for bad in ["//", "/./", "/../", "%2E", "%2F", "%5C", "%25"] {
                    prop_assert!(!n.to_ascii_uppercase().contains(bad), "{n:?} has {bad}");
                }
                prop_assert!(!n.ends_with("/.") && !n.ends_with("/.."), "{n:?}");
            }
        }
    }
}
