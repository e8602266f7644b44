//! The identity headers the app trusts: the full set we own (stripped from every client
//! request, whatever its case, count or spelling), and the values we set from a session.

use crate::config::Config;
use crate::session::Session;

/// Every header this filter may set. Client copies of all of them are removed on every
/// request, even those the configuration does not set, so the app can never be fooled by
/// a header it might read.
pub const OWNED: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "authorization",
    // oauth2-proxy's older identity headers; apps written against it may still read them.
    "gap-auth",
    "gap-signature",
];

/// Whether a client-sent header must be removed: its name, read case-insensitively and
/// with any separator as `-`, is one we own. WSGI, Rack, PHP and nginx
/// (`underscores_in_headers`) present `X_Auth_Request_User` to the app as
/// `X-Auth-Request-User` (oauth2-proxy CVE-2025-64484), and CGI-style servers turn every
/// character that is not a letter or digit into `_`, so `x.forwarded.email` counts too.
pub fn is_owned(name: &str) -> bool {
    // Runs for every header of every request: compare in place, no allocation. Owned names
    // are lower-case letters and dashes only.
    OWNED.iter().any(|o| {
        o.len() == name.len()
            && o.bytes().zip(name.bytes()).all(|(o, n)| {
                if n.is_ascii_alphanumeric() {
                    n.to_ascii_lowercase() == o
                } else {
                    o == b'-'
                }
            })
    })
}

/// Header values are sent to the app verbatim; a claim carrying CR/LF or other controls
/// must not be able to forge extra headers.
fn clean(value: &str) -> String {
    // This runs on every authenticated request (groups alone can be kilobytes); rebuilding
    // the string char by char cost more than all the rest of the hot path. Controls are
    // C0, DEL and C1, and every C1 character is encoded with a 0xC2 lead byte, so a byte
    // scan that finds none of those proves the value clean and it can be copied whole.
    let suspect = |b: &u8| *b < 0x20 || *b == 0x7f || *b == 0xc2;
    if !value.as_bytes().iter().any(suspect) {
        return value.to_string();
    }
    value.chars().filter(|c| !c.is_control()).collect()
}

type Headers = Vec<(&'static str, String)>;

/// Empty values are left out rather than sent as empty headers.
fn push(out: &mut Headers, name: &'static str, value: &str) {
    if !value.is_empty() {
        out.push((name, clean(value)));
    }
}

/// One family of user headers: user, email, preferred username, groups (comma-joined).
fn user(out: &mut Headers, names: [&'static str; 4], s: &Session) {
    let groups: Vec<String> = s.groups.iter().map(|g| clean(g)).collect();
    let [user, email, preferred, groups_name] = names;
    push(out, user, &s.user);
    push(out, email, &s.email);
    push(out, preferred, &s.preferred_username);
    push(out, groups_name, &groups.join(","));
}

fn auth_request(out: &mut Headers, config: &Config, s: &Session) {
    user(
        out,
        [
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-preferred-username",
            "x-auth-request-groups",
        ],
        s,
    );
    if config.pass_access_token {
        push(out, "x-auth-request-access-token", &s.access_token);
    }
}

fn bearer(out: &mut Headers, s: &Session) {
    if !s.id_token.is_empty() {
        out.push(("authorization", format!("Bearer {}", clean(&s.id_token))));
    }
}

/// The headers for the app, as oauth2-proxy sets them for these options.
pub fn for_upstream(config: &Config, s: &Session) -> Headers {
    let mut out = Vec::new();
    if config.pass_user_headers {
        user(
            &mut out,
            [
                "x-forwarded-user",
                "x-forwarded-email",
                "x-forwarded-preferred-username",
                "x-forwarded-groups",
            ],
            s,
        );
    }
    if config.pass_access_token {
        push(&mut out, "x-forwarded-access-token", &s.access_token);
    }
    if config.set_xauthrequest {
        auth_request(&mut out, config, s);
    }
    if config.pass_authorization_header {
        bearer(&mut out, s);
    }
    out
}

/// The `/oauth2/auth` response headers for an external-auth caller (nginx `auth_request`),
/// as oauth2-proxy sets them: the X-Auth-Request set with `set_xauthrequest`, the
/// `Authorization` header with `set_authorization_header`.
pub fn for_auth_response(config: &Config, s: &Session) -> Headers {
    let mut out = Vec::new();
    if config.set_xauthrequest {
        auth_request(&mut out, config, s);
    }
    if config.set_authorization_header {
        bearer(&mut out, s);
    }
    out
}

/// A header map as the host hands it over (names as text, values as bytes), as text, and
/// whether that text is exactly what the host holds. Values may hold bytes that are not
/// UTF-8; those are replaced, and the map must then not be written back whole.
pub fn lossy(pairs: Vec<(String, Vec<u8>)>) -> (Vec<(String, String)>, bool) {
    let mut exact = true;
    let text = pairs
        .into_iter()
        .map(|(k, v)| {
            // Valid UTF-8 (nearly always) is taken as is, without another copy.
            let v = String::from_utf8(v).unwrap_or_else(|e| {
                exact = false;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            });
            (k, v)
        })
        .collect();
    (text, exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::config;

    fn session() -> Session {
        Session {
            user: "john".into(),
            email: "john@example.com".into(),
            preferred_username: "john".into(),
            email_verified: None,
            groups: vec!["dev".into(), "ops\r\nx-evil: 1".into()],
            roles: vec![],
            access_token: "AT".into(),
            id_token: "ID".into(),
            refresh_token: String::new(),
            created_at: 0,
            expires_at: 1,
            ..Default::default()
        }
    }

    #[test]
    fn everything_we_set_is_owned() {
        let mut c = config();
        c.set_xauthrequest = true;
        c.pass_access_token = true;
        c.pass_authorization_header = true;
        c.set_authorization_header = true;
        for (name, _) in for_upstream(&c, &session())
            .iter()
            .chain(for_auth_response(&c, &session()).iter())
        {
            assert!(is_owned(name), "{name}");
        }
        assert!(is_owned("X-AUTH-REQUEST-EMAIL"));
        assert!(!is_owned("x-request-id"));
    }

    #[test]
    fn separators_are_read_as_dashes() {
        for name in [
            "X_Forwarded_Email",
            "x.forwarded.email",
            "GAP~AUTH",
            "Authorization",
        ] {
            assert!(is_owned(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x_forwarded_emails",
            "proxy-authorization",
        ] {
            assert!(!is_owned(name), "{name}");
        }
    }

    #[test]
    fn auth_response_headers_follow_their_options() {
        let mut c = config();
        assert!(for_auth_response(&c, &session()).is_empty());
        c.set_xauthrequest = true;
        let h = for_auth_response(&c, &session());
        assert!(h.iter().all(|(n, _)| n.starts_with("x-auth-request-")));
        c.set_authorization_header = true;
        let h = for_auth_response(&c, &session());
        assert!(h.contains(&("authorization", "Bearer ID".into())));
    }

    #[test]
    fn options_select_headers() {
        let mut c = config();
        let h = for_upstream(&c, &session());
        let names: Vec<_> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "x-forwarded-user",
                "x-forwarded-email",
                "x-forwarded-preferred-username",
                "x-forwarded-groups"
            ]
        );
        c.pass_user_headers = false;
        c.set_xauthrequest = true;
        c.pass_authorization_header = true;
        let h = for_upstream(&c, &session());
        assert!(h.contains(&("x-auth-request-email", "john@example.com".into())));
        assert!(h.contains(&("authorization", "Bearer ID".into())));
        assert!(!h.iter().any(|(n, _)| n.starts_with("x-forwarded")));
    }

    #[test]
    fn lossy_text_says_whether_it_is_exact() {
        let ok = vec![("a".to_string(), b"caf\xc3\xa9".to_vec())];
        assert_eq!(lossy(ok), (vec![("a".into(), "caf\u{e9}".into())], true));
        let bad = vec![("a".to_string(), b"x\xffy".to_vec())];
        assert_eq!(lossy(bad), (vec![("a".into(), "x\u{fffd}y".into())], false));
    }

    #[test]
    fn control_characters_cannot_split_headers() {
        let h = for_upstream(&config(), &session());
        let groups = h.iter().find(|(n, _)| *n == "x-forwarded-groups").unwrap();
        assert_eq!(groups.1, "dev,opsx-evil: 1");
    }

    #[test]
    fn clean_agrees_with_dropping_every_control_character() {
        let slow = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
        for v in [
            "plain-group",
            "",
            "a\r\nx-evil: 1",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}next-line\u{9f}",
            "not c1: \u{a2}\u{a9} caf\u{e9} \u{1f600}",
            "\u{2028}line-separator-is-not-a-control",
        ] {
            assert_eq!(clean(v), slow(v), "{v:?}");
        }
    }
}
