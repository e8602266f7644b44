//! Every access, route and bearer option at once, end to end through Envoy, against the real
//! IdP (`idp/server.js`) and its users:
//!
//! | user       | email                     | groups     | roles         | verdict            |
//! |------------|---------------------------|------------|---------------|--------------------|
//! | john       | john@example.com          | developers |               | in: domain + group |
//! | jane       | jane@other.org            | staff      | realm auditor | in: email + role   |
//! | alice      | alice@example.com         | staff      | client viewer | in: domain + role  |
//! | bob        | bob@example.com           | staff      |               | out: group/role    |
//! | mallory    | mallory@evil.org          | developers |               | out: domain        |
//! | twoat      | evil@evil.org@example.com | developers |               | out: two `@`       |
//! | unverified | unverified@example.com    | developers |               | out: unverified    |
//!
//! Same environment as the e2e suite (WOP_ENVOY, WOP_WASM, WOP_ROOT):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e policy:: -- --test-threads 2
//! ```

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use url::Url;

use crate::support::checks::{
    assert_gate_401, assert_login_redirect, authz_endpoint, discovery, header_str,
    is_session_cookie_name, raw_count, send_target, API, CSRF, SESSION,
};
use crate::support::http::{format_hops, raw_request, Browser, Response, BROWSER_ACCEPT};
use crate::support::jwt;
use crate::support::stack::{idp_login, App, Stack, StackBuilder, CLIENT_ID};

/// Users the rules admit: (login, email, groups as the app receives them).
const ADMITTED: &[(&str, &str, &str)] = &[
    ("john", "john@example.com", "developers"),
    ("jane", "jane@other.org", "staff"),
    ("alice", "alice@example.com", "staff"),
];

/// Users the rules refuse: (login, email in their ID token).
const REFUSED: &[(&str, &str)] = &[
    ("bob", "bob@example.com"),
    ("mallory", "mallory@evil.org"),
    ("twoat", "evil@evil.org@example.com"),
    ("unverified", "unverified@example.com"),
];

/// The filter's page for a user the rules refuse (other 403s, such as a failed CSRF check,
/// say something else).
const REFUSAL: &str = "You are not allowed to access this application.";

const BROWSER: &[(&str, &str)] = &[("Accept", BROWSER_ACCEPT)];

/// Every access, route and bearer option of the filter, set at once.
fn with_every_option(b: StackBuilder) -> StackBuilder {
    b.app(App::Recorder)
        .plugin("email_domains", json!(["example.com"]))
        .plugin("authenticated_emails", json!(["jane@other.org"]))
        .plugin("allowed_groups", json!(["developers"]))
        .plugin(
            "allowed_roles",
            json!(["auditor", format!("{CLIENT_ID}:viewer")]),
        )
        .plugin("oidc_email_claim", json!("email"))
        .plugin("oidc_groups_claim", json!("groups"))
        .plugin("user_id_claim", json!("email"))
        .plugin("oidc_extra_audiences", json!(["other-aud"]))
        .plugin(
            "skip_auth_routes",
            json!(["GET=^/public/", "POST!=^/webhook$"]),
        )
        .plugin("skip_auth_preflight", json!(true))
        .plugin("api_routes", json!(["^/api/"]))
        .plugin("skip_auth_strip_headers", json!(true))
        .plugin("reverse_proxy", json!(false))
        .plugin("ping_path", json!("/healthz"))
        .plugin("ready_path", json!("/readyz"))
        .plugin("ping_user_agent", json!("kube-probe/1.30"))
        .plugin("skip_jwt_bearer_tokens", json!(true))
        .plugin("bearer_token_login_fallback", json!(true))
        .plugin("set_xauthrequest", json!(true))
        .plugin("set_authorization_header", json!(true))
}

fn policy_stack() -> Stack {
    with_every_option(Stack::builder()).start()
}

fn recorder(st: &Stack) -> &crate::support::upstream::Recorder {
    st.recorder
        .as_ref()
        .unwrap_or_else(|| st.fail("no recorder"))
}

/// A request through Envoy with the headers given (nothing added but Host and Connection).
fn send(st: &Stack, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    send_target(st, method, path, headers)
        .unwrap_or_else(|e| st.fail(&format!("{method} {path}: {e}")))
}

/// The claims of a `Bearer <jwt>` header value.
fn bearer_claims(st: &Stack, value: Option<&str>, ctx: &str) -> Value {
    value
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(jwt::payload)
        .unwrap_or_else(|| st.fail(&format!("{ctx}: not `Bearer <jwt>`: {value:?}")))
}

/// An ID token for `user` straight from the IdP (authorization code flow without the
/// filter), so a test can present it as a bearer token, whether or not the rules admit
/// the user.
fn id_token_from_idp(st: &Stack, user: &str) -> String {
    let d = discovery(st);
    let endpoint = |k: &str| {
        d[k].as_str()
            .unwrap_or_else(|| st.fail(&format!("discovery has no {k}")))
            .to_string()
    };
    let mut authorize = Url::parse(&endpoint("authorization_endpoint")).expect("authz url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &st.client_id)
        .append_pair("redirect_uri", &st.redirect_url())
        .append_pair("scope", "openid email profile")
        .append_pair("state", &crate::support::random_token(16))
        .append_pair("nonce", &crate::support::random_token(16));
    let mut b = Browser::new();
    b.pause_before = Some("/oauth2/callback".into());
    let (resp, hops) = idp_login(&mut b, authorize.as_str(), &st.idp_origin(), user, user)
        .unwrap_or_else(|e| st.fail(&e));
    let code = resp
        .location()
        .filter(|l| l.as_str().starts_with(&st.redirect_url()))
        .and_then(|l| {
            l.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| {
            st.fail(&format!(
                "{user}: the IdP did not send a code:\n{}",
                format_hops(&hops)
            ))
        });
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", st.client_id, st.client_secret));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &st.redirect_url())
        .finish();
    let r = raw_request(
        "POST",
        &endpoint("token_endpoint"),
        &[
            ("Authorization".into(), format!("Basic {basic}")),
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        Some(body.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| st.fail(&format!("{user}: token endpoint: {e}")));
    st.check(r.status == 200, || {
        format!("{user}: token endpoint: {}", r.short())
    });
    r.json()["id_token"]
        .as_str()
        .unwrap_or_else(|| st.fail(&format!("{user}: no id_token: {}", r.short())))
        .to_string()
}

/// The identity headers the app received for `email`: each exactly once, our cookies gone.
fn assert_identity_at_app(st: &Stack, h: &Value, login: &str, email: &str, groups: &str) {
    for (k, want) in [
        // user_id_claim is `email`: the user is the address (oauth2-proxy's default).
        ("x-forwarded-user", email),
        ("x-forwarded-email", email),
        ("x-forwarded-preferred-username", login),
        ("x-forwarded-groups", groups),
        ("x-auth-request-user", email),
        ("x-auth-request-email", email),
        ("x-auth-request-preferred-username", login),
        ("x-auth-request-groups", groups),
    ] {
        st.check(
            header_str(h, k).as_deref() == Some(want) && raw_count(h, k) == 1,
            || {
                format!(
                    "{login}: the app got {k} = {:?} ({} copies), want {want:?}",
                    header_str(h, k),
                    raw_count(h, k)
                )
            },
        );
    }
    let claims = bearer_claims(st, header_str(h, "authorization").as_deref(), login);
    st.check(
        claims["email"] == email
            && claims["aud"] == CLIENT_ID
            && raw_count(h, "authorization") == 1,
        || format!("{login}: the app's Authorization is not {email}'s ID token: {claims}"),
    );
    st.check(
        header_str(h, "cookie").is_none_or(|c| !c.contains(SESSION)),
        || format!("{login}: our cookies reached the app: {h}"),
    );
}

// ====================================================================== who gets in

/// Browser logins: john, jane and alice reach the app with their identity; bob, mallory,
/// twoat and unverified are refused by the callback itself with the 403 page and no session,
/// and nothing of theirs ever reaches the app.
#[test]
fn p01_logins_admit_exactly_the_allowed_users() {
    let st = policy_stack();
    let rec = recorder(&st);
    let authz = authz_endpoint(&st);

    for &(login, email, groups) in ADMITTED {
        let mut b = Browser::new();
        let (resp, _) = st.login_ok(&mut b, "/headers?who=1", login);
        st.check(resp.url == st.url("/headers?who=1"), || {
            format!(
                "{login}: login did not return to /headers?who=1: {}",
                resp.short()
            )
        });
        assert_identity_at_app(&st, &resp.json(), login, email, groups);
        // The session keeps working, also on an API route (401s are for requests without one).
        let r = b.get_with(&st.url("/api/me"), API);
        st.check(
            r.status == 200 && r.json()["headers"]["x-forwarded-email"] == email,
            || format!("{login}: GET /api/me with a session: {}", r.short()),
        );
    }

    for &(login, email) in REFUSED {
        let before = rec.count();
        let mut b = Browser::new();
        let (resp, hops) = st.login(&mut b, &st.url("/headers"), login, login);
        let at_callback = Url::parse(&resp.url).is_ok_and(|u| u.path() == "/oauth2/callback");
        st.check(
            resp.status == 403
                && at_callback
                && resp
                    .header("content-type")
                    .unwrap_or("")
                    .starts_with("text/html")
                && resp.text().contains(REFUSAL),
            || {
                format!(
                    "{login} ({email}) must get the 403 page from the callback:\n{}\nfinal: {}",
                    format_hops(&hops),
                    resp.short()
                )
            },
        );
        let any_session = hops
            .iter()
            .flat_map(|h| &h.set_cookies)
            .map(|c| crate::support::http::SetCookie::parse(c))
            .any(|c| is_session_cookie_name(&c.name) && !c.is_deletion());
        st.check(!any_session, || {
            format!("{login}: a session cookie was set:\n{}", format_hops(&hops))
        });
        st.check(
            !b.cookies(&st.origin())
                .iter()
                .any(|c| is_session_cookie_name(&c.name) || c.name == CSRF),
            || {
                format!(
                    "{login}: cookies left in the jar: {:?}",
                    b.cookies(&st.origin())
                )
            },
        );
        st.check(
            resp.set_cookie(CSRF).is_some_and(|c| c.is_deletion()),
            || {
                format!(
                    "{login}: the refusal must end the login attempt: {}",
                    resp.short()
                )
            },
        );
        // Nothing was stored: the next request is a stranger's.
        let r = b.get(&st.url("/headers"));
        assert_login_redirect(&st, &r, &authz, &format!("{login}'s next request"));
        let r = b.get_with(&st.url("/headers"), API);
        assert_gate_401(&st, &r, &format!("{login}'s next API request"));
        st.check(rec.count() == before, || {
            format!("{login} reached the app:\n{}", rec.summary())
        });
    }

    // Only the admitted users' requests ever reached the app.
    let allowed: Vec<&str> = ADMITTED.iter().map(|a| a.1).collect();
    for q in rec.requests() {
        st.check(
            q.header("x-forwarded-email")
                .is_some_and(|e| allowed.contains(&e)),
            || format!("the app got {} {} as {:?}", q.method, q.target, q.headers),
        );
    }
}

/// skip_jwt_bearer_tokens with the same rules: the IdP's own ID tokens of the refused users
/// get a 403 page (browser) or a bare 403 JSON (API client) and never reach the app; the
/// admitted users' tokens get in as them. bearer_token_login_fallback: a bad token still
/// lets a session cookie count, and a browser without either is sent to log in.
#[test]
fn p02_bearer_tokens_follow_the_same_rules() {
    let st = policy_stack();
    let rec = recorder(&st);
    let authz = authz_endpoint(&st);

    for &(login, email) in REFUSED {
        let token = id_token_from_idp(&st, login);
        let claims = jwt::payload(&token).unwrap_or_default();
        st.check(claims["email"] == email, || {
            format!("{login}: the IdP's ID token has another email: {claims}")
        });
        let auth = format!("Bearer {token}");
        let before = rec.count();
        for path in ["/headers", "/api/items", "/public/x"] {
            let r = send(
                &st,
                "GET",
                path,
                &[("Accept", "application/json"), ("Authorization", &auth)],
            );
            if path == "/public/x" {
                // A skipped route is skipped for everyone, but never with a refused identity.
                st.check(r.status == 200, || {
                    format!("{login} GET {path}: {}", r.short())
                });
                let seen = rec.requests().pop();
                st.check(
                    seen.as_ref().is_some_and(|q| {
                        q.header("x-forwarded-email").is_none()
                            && q.header("authorization").is_none()
                    }),
                    || format!("{login}: a refused identity reached a skipped route: {seen:?}"),
                );
                continue;
            }
            st.check(
                r.status == 403
                    && r.header("content-type") == Some("application/json")
                    && r.json() == json!({"error": "forbidden"}),
                || {
                    format!(
                        "{login} ({email}) bearer, API GET {path}: want a bare 403, got {}",
                        r.short()
                    )
                },
            );
            let r = send(
                &st,
                "GET",
                path,
                &[("Accept", BROWSER_ACCEPT), ("Authorization", &auth)],
            );
            st.check(
                r.status == 403
                    && r.header("content-type")
                        .unwrap_or("")
                        .starts_with("text/html")
                    && r.text().contains(REFUSAL),
                || {
                    format!(
                        "{login} ({email}) bearer, browser GET {path}: want the 403 page, got {}",
                        r.short()
                    )
                },
            );
        }
        // One request reached the app: the skipped route, without identity.
        st.check(rec.count() == before + 1, || {
            format!("{login}'s bearer token reached the app:\n{}", rec.summary())
        });
    }

    let mut john_token = String::new();
    for &(login, email, groups) in ADMITTED {
        let token = id_token_from_idp(&st, login);
        let claims = jwt::payload(&token).unwrap_or_default();
        // The IdP's role claims are what admits jane and alice.
        match login {
            "jane" => st.check(
                claims["realm_access"]["roles"] == json!(["auditor"]),
                || format!("jane's ID token lacks realm role auditor: {claims}"),
            ),
            "alice" => st.check(
                claims["resource_access"][CLIENT_ID]["roles"] == json!(["viewer"]),
                || format!("alice's ID token lacks client role viewer: {claims}"),
            ),
            _ => john_token = token.clone(),
        }
        let r = send(
            &st,
            "GET",
            "/api/items",
            &[
                ("Accept", "application/json"),
                ("Authorization", &format!("Bearer {token}")),
            ],
        );
        st.check(r.status == 200, || {
            format!("{login} bearer GET /api/items: {}", r.short())
        });
        let q = rec
            .requests()
            .pop()
            .unwrap_or_else(|| st.fail("nothing recorded"));
        for (k, want) in [
            ("x-forwarded-user", email),
            ("x-forwarded-email", email),
            ("x-forwarded-groups", groups),
            ("x-auth-request-email", email),
        ] {
            st.check(q.header(k) == Some(want), || {
                format!(
                    "{login} bearer: the app got {k} = {:?}, want {want}",
                    q.header(k)
                )
            });
        }
    }

    // bearer_token_login_fallback: a token that does not verify...
    let bad = [
        ("Accept", "application/json"),
        ("Authorization", "Bearer not.a.jwt"),
    ];
    let before = rec.count();
    let r = send(&st, "GET", "/api/items", &bad);
    st.check(
        r.status == 401
            && r.json()["error"] == "invalid_token"
            && r.header("www-authenticate")
                .unwrap_or("")
                .contains("invalid_token"),
        || format!("a bad bearer token without a session: {}", r.short()),
    );
    // ... and a tampered one (john's, with the last signature byte changed)
    let tampered = jwt::corrupt_signature(&john_token);
    let r = send(
        &st,
        "GET",
        "/api/items",
        &[
            ("Accept", "application/json"),
            ("Authorization", &format!("Bearer {tampered}")),
        ],
    );
    st.check(
        r.status == 401 && r.json()["error"] == "invalid_token",
        || format!("a tampered bearer token: {}", r.short()),
    );
    // Without any credential, a machine client learns that a bearer token would do.
    let r = send(&st, "GET", "/api/items", API);
    assert_gate_401(&st, &r, "API client without credentials");
    st.check(r.header("www-authenticate") == Some("Bearer"), || {
        format!("the 401 must offer Bearer: {}", r.short())
    });
    // A browser with a bad token and no session is sent to log in (the fallback).
    let r = send(
        &st,
        "GET",
        "/headers",
        &[
            ("Accept", BROWSER_ACCEPT),
            ("Authorization", "Bearer not.a.jwt"),
        ],
    );
    assert_login_redirect(&st, &r, &authz, "browser with a bad bearer token");
    st.check(rec.count() == before, || {
        format!("a bad bearer token reached the app:\n{}", rec.summary())
    });
    // With a session the bad token is ignored and the cookie counts.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "jane");
    let r = b.send("GET", &st.url("/api/items"), &bad, None);
    st.check(
        r.status == 200 && r.json()["headers"]["x-forwarded-email"] == "jane@other.org",
        || format!("a bad bearer token with jane's session: {}", r.short()),
    );
    st.check(
        r.json()["headers"]["authorization"]
            .as_str()
            .is_some_and(|a| a != "Bearer not.a.jwt"),
        || format!("the client's bad token reached the app: {}", r.short()),
    );
}

// =========================================================================== /oauth2/auth

/// `/oauth2/auth` for nginx `auth_request`: the configured rules plus the caller's
/// `allowed_groups` / `allowed_email_domains` / `allowed_emails`, and `Authorization:
/// Bearer <id_token>` in the answer because set_authorization_header is on. Never proxied.
#[test]
fn p03_auth_endpoint_honours_query_restrictions() {
    let st = policy_stack();
    let rec = recorder(&st);
    let mut john = Browser::new();
    st.login_ok(&mut john, "/", "john");
    let mut jane = Browser::new();
    st.login_ok(&mut jane, "/", "jane");
    let before = rec.count();

    let r = john.get_with(&st.url("/oauth2/auth"), API);
    st.check(r.status == 202, || {
        format!("/oauth2/auth as john: {}", r.short())
    });
    for (k, want) in [
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-groups", "developers"),
    ] {
        st.check(r.header(k) == Some(want), || {
            format!("/oauth2/auth {k}: {:?}, want {want}", r.header(k))
        });
    }
    let claims = bearer_claims(&st, r.header("authorization"), "/oauth2/auth");
    st.check(
        claims["email"] == "john@example.com"
            && claims["aud"] == CLIENT_ID
            && claims["iss"] == st.issuer()
            && r.headers_all("authorization").len() == 1,
        || format!("/oauth2/auth Authorization is not john's ID token: {claims}"),
    );

    for (query, want) in [
        ("allowed_groups=developers", 202),
        ("allowed_groups=staff", 403),
        ("allowed_groups=staff,developers", 202),
        ("allowed_groups=", 403),
        ("allowed_email_domains=example.com", 202),
        ("allowed_email_domains=other.org", 403),
        ("allowed_email_domains=other.org,example.com", 202),
        ("allowed_email_domains=*.example.com", 403),
        ("allowed_emails=john@example.com", 202),
        ("allowed_emails=jane@other.org", 403),
        ("allowed_emails=jane@other.org,JOHN@example.com", 202),
        (
            "allowed_groups=developers&allowed_emails=jane@other.org",
            403,
        ),
        (
            concat!(
                "allowed_groups=developers&allowed_email_domains=example.com",
                "&allowed_emails=john@example.com"
            ),
            202,
        ),
        (
            "allowed_groups=staff&allowed_email_domains=example.com",
            403,
        ),
    ] {
        let path = format!("/oauth2/auth?{query}");
        let r = john.get_with(&st.url(&path), API);
        st.check(r.status == want, || {
            format!("john {path}: want {want}, got {}", r.short())
        });
        if want == 403 {
            st.check(
                r.header("authorization").is_none() && r.header("x-auth-request-email").is_none(),
                || format!("a 403 from {path} carried identity: {}", r.short()),
            );
        }
    }

    // jane is admitted by her realm role; the caller's group list is about groups only.
    for (query, want) in [
        ("", 202),
        ("?allowed_emails=jane@other.org", 202),
        ("?allowed_groups=staff", 202),
        ("?allowed_groups=developers", 403),
        ("?allowed_email_domains=example.com", 403),
    ] {
        let path = format!("/oauth2/auth{query}");
        let r = jane.get_with(&st.url(&path), API);
        st.check(r.status == want, || {
            format!("jane {path}: want {want}, got {}", r.short())
        });
    }
    // The configured rules apply before any query: bob's (valid) token is refused.
    let bob = id_token_from_idp(&st, "bob");
    let r = send(
        &st,
        "GET",
        "/oauth2/auth",
        &[
            ("Accept", "application/json"),
            ("Authorization", &format!("Bearer {bob}")),
        ],
    );
    st.check(r.status == 403, || {
        format!("/oauth2/auth with bob's token: {}", r.short())
    });
    let r = send(
        &st,
        "GET",
        "/oauth2/auth?allowed_groups=staff",
        &[
            ("Accept", "application/json"),
            ("Authorization", &format!("Bearer {bob}")),
        ],
    );
    st.check(r.status == 403, || {
        format!(
            "/oauth2/auth?allowed_groups=staff with bob's token: {}",
            r.short()
        )
    });
    let r = Browser::new().get_with(&st.url("/oauth2/auth"), API);
    st.check(
        r.status == 401 && r.header("authorization").is_none(),
        || format!("/oauth2/auth without a session: {}", r.short()),
    );
    st.check(rec.count() == before, || {
        format!("/oauth2/auth reached the app:\n{}", rec.summary())
    });

    // The same configuration without set_authorization_header: no Authorization answer.
    let control = with_every_option(Stack::builder())
        .plugin("set_authorization_header", json!(false))
        .start();
    let mut b = Browser::new();
    control.login_ok(&mut b, "/", "john");
    let r = b.get_with(&control.url("/oauth2/auth"), API);
    control.check(
        r.status == 202
            && r.header("x-auth-request-email") == Some("john@example.com")
            && r.header("authorization").is_none(),
        || {
            format!(
                "/oauth2/auth without set_authorization_header: {}",
                r.short()
            )
        },
    );
}

// ================================================================ routes without a login

/// Health checks, API routes, skip routes, preflight and X-Auth-Request-Redirect.
#[test]
fn p04_routes_and_probes() {
    let st = policy_stack();
    let rec = recorder(&st);
    let authz = authz_endpoint(&st);

    // ping_path / ready_path / ping_user_agent: answered by the filter.
    for (path, hs) in [
        ("/healthz", BROWSER),
        ("/healthz", API),
        ("/readyz", BROWSER),
        ("/readyz?full=1", API),
        (
            "/some/private/page",
            &[("User-Agent", "kube-probe/1.30")][..],
        ),
        (
            "/api/items",
            &[
                ("User-Agent", "kube-probe/1.30"),
                ("Accept", "application/json"),
            ][..],
        ),
    ] {
        let r = send(&st, "GET", path, hs);
        st.check(r.status == 200 && r.text().trim() == "OK", || {
            format!(
                "GET {path} {hs:?}: want 200 OK from the filter, got {}",
                r.short()
            )
        });
    }
    st.check(rec.count() == 0, || {
        format!("a probe reached the app:\n{}", rec.summary())
    });
    // The defaults are no longer probes, and nor is a near-miss user agent.
    for path in ["/ping", "/ready"] {
        let r = send(&st, "GET", path, API);
        assert_gate_401(
            &st,
            &r,
            &format!("GET {path} (not the configured probe path)"),
        );
        let r = send(&st, "GET", path, BROWSER);
        assert_login_redirect(&st, &r, &authz, &format!("browser GET {path}"));
    }
    for ua in [
        "kube-probe/1.3",
        "kube-probe/1.300",
        "Kube-Probe/1.30",
        "x kube-probe/1.30",
    ] {
        let r = send(
            &st,
            "GET",
            "/private",
            &[("User-Agent", ua), ("Accept", "application/json")],
        );
        assert_gate_401(&st, &r, &format!("User-Agent {ua:?}"));
    }

    // api_routes: a 401, never a login redirect, even for a browser.
    for (method, path) in [
        ("GET", "/api/items"),
        ("GET", "/api/"),
        ("POST", "/api/items?x=1"),
        ("DELETE", "/api/items/7"),
    ] {
        let r = send(&st, method, path, BROWSER);
        assert_gate_401(&st, &r, &format!("browser {method} {path} on an API route"));
    }
    for path in ["/app/api/x", "/apix", "/private"] {
        let r = send(&st, "GET", path, BROWSER);
        assert_login_redirect(
            &st,
            &r,
            &authz,
            &format!("browser GET {path} (not an API route)"),
        );
    }
    st.check(rec.count() == 0, || {
        format!(
            "an unauthenticated request reached the app:\n{}",
            rec.summary()
        )
    });

    // skip_auth_routes: GET=^/public/ and POST!=^/webhook$, without a session.
    let forged = [
        ("Accept", "application/json"),
        ("X-Forwarded-Email", "admin@example.com"),
        ("X-Auth-Request-User", "admin"),
        ("Authorization", "Bearer forged.jwt.value"),
    ];
    for (method, path, passes) in [
        ("GET", "/public/x", true),
        ("GET", "/public/css/app.css?v=3", true),
        ("POST", "/public/x", false),
        ("PUT", "/public/x", false),
        ("GET", "/publicx", false),
        ("GET", "/x/public/y", false),
        ("GET", "/webhook", true),
        ("PUT", "/webhook", true),
        ("DELETE", "/webhook", true),
        ("POST", "/webhook", false),
        ("GET", "/webhook/x", false),
        ("GET", "/webhooks", false),
    ] {
        let before = rec.count();
        let r = send(&st, method, path, &forged);
        if passes {
            let seen = rec.requests().pop();
            st.check(
                r.status == 200
                    && rec.count() == before + 1
                    && seen
                        .as_ref()
                        .is_some_and(|q| q.method == method && q.target == path),
                || {
                    format!(
                        "{method} {path} must reach the app without a login: {}\n{}",
                        r.short(),
                        rec.summary()
                    )
                },
            );
            let q = seen.unwrap_or_else(|| st.fail("nothing recorded"));
            for h in ["x-forwarded-email", "x-auth-request-user", "authorization"] {
                st.check(q.header(h).is_none(), || {
                    format!(
                        "{method} {path}: the client's {h} reached the app: {:?}",
                        q.headers
                    )
                });
            }
        } else {
            // Not skipped: the forged bearer token is checked, and refused.
            st.check(
                r.status == 401
                    && r.header("location").is_none()
                    && r.json()["error"] == "invalid_token",
                || format!("{method} {path} (not a skip route): {}", r.short()),
            );
            st.check(rec.count() == before, || {
                format!("{method} {path} reached the app:\n{}", rec.summary())
            });
        }
    }

    // skip_auth_preflight: a CORS preflight reaches the app without a session.
    for path in ["/api/items", "/private/x"] {
        let before = rec.count();
        let r = send(
            &st,
            "OPTIONS",
            path,
            &[
                ("Origin", "https://spa.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
                ("X-Forwarded-User", "admin"),
            ],
        );
        let seen = rec.requests().pop();
        st.check(
            r.status == 200
                && rec.count() == before + 1
                && seen.as_ref().is_some_and(|q| {
                    q.method == "OPTIONS"
                        && q.target == path
                        && q.header("x-forwarded-user").is_none()
                }),
            || format!("preflight OPTIONS {path}: {}\n{}", r.short(), rec.summary()),
        );
    }

    // X-Auth-Request-Redirect on /oauth2/start: the return URL when it passes the redirect
    // check, ignored otherwise.
    for (header, lands) in [
        ("/after/login?x=1", "/after/login?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),
    ] {
        let mut b = Browser::new();
        let r = b.send(
            "GET",
            &st.url("/oauth2/start"),
            &[("X-Auth-Request-Redirect", header)],
            None,
        );
        assert_login_redirect(
            &st,
            &r,
            &authz,
            &format!("/oauth2/start with X-Auth-Request-Redirect {header}"),
        );
        let to_idp = r.location().unwrap_or_else(|| st.fail("no Location"));
        let (resp, hops) = idp_login(&mut b, to_idp.as_str(), &st.idp_origin(), "john", "john")
            .unwrap_or_else(|e| st.fail(&e));
        st.check(resp.status == 200 && resp.url == st.url(lands), || {
            format!(
                "X-Auth-Request-Redirect {header:?}: want to land on {lands}:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        });
        let last = rec.requests().pop();
        st.check(last.as_ref().is_some_and(|q| q.target == lands), || {
            format!("X-Auth-Request-Redirect {header:?}: the app got {last:?}")
        });
    }
}
