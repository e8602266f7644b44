//! A session's life after login, end to end through Envoy (`--concurrency 2`, or 4 with
//! `just e2e-workers`) against the
//! real IdP (`idp/server.js`), which counts what it was asked (`/test/counters`):
//!
//! - `l1`: refresh before expiry. Over many access-token lifetimes the app always gets a
//!   token that is still valid, and the browser's cookie follows each refresh.
//! - `l2`: a refused refresh (the grant revoked by another browser's sign-out) ends the
//!   session: browsers are sent to log in, API clients get a 401 that expires the cookie.
//!   `l2b`: after an RP-initiated logout a copied cookie stops within `cookie_refresh`.
//! - `l3`: 50 parallel requests on one expired session, over every Envoy worker, make one
//!   refresh; a second burst mixing the original and the refreshed cookie logs nobody out.
//! - `l4`: sign-out with RP-initiated logout ends the IdP session too; `l4b`: without it
//!   (`oidc_rp_initiated_logout: false`) the IdP session survives.
//! - `l5`: two tabs logging in at once, with `cookie_csrf_per_request` and without it.
//! - `l6`: `cookie_secret_previous` keeps sessions and logins in flight across a secret
//!   roll, re-sealing sessions with the new secret.
//! - `l7`: `upstream_token_exchange`: the app gets an RS256 JWT minted for its audience,
//!   exchanged once per worker, never the user's own token; `l7b`: not on a public
//!   (`skip_auth_routes`) route either.
//!
//! Access tokens live [`SHORT_TTL`] seconds where a test needs them to expire, and the IdP
//! rotates refresh tokens: it treats a second use of one as theft and revokes the whole
//! grant, so one refresh too many logs everybody out. oidc-provider's access tokens are
//! opaque; the IdP's userinfo endpoint says whether one is real and unrevoked, but it still
//! accepts one up to 15 s after expiry (its clock tolerance), so freshness is checked by
//! age.
//!
//! Same environment as the e2e suite (WOP_ENVOY, WOP_WASM, WOP_ROOT):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e lifecycle:: -- --test-threads 2
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use url::Url;

use crate::support::checks::{
    assert_gate_401, assert_login_redirect, authz_endpoint, header_str, is_session_cookie_name,
    raw_headers, session_cookies_set, CSRF, SESSION,
};
use crate::support::html;
use crate::support::http::{
    burst, format_hops, get_on_one_connection, origin_of, raw_request, Browser, Hop, Response,
    SetCookie,
};
use crate::support::idp::{
    counters, jwks, reset_counters, userinfo, userinfo_endpoint, verify_rs256, Counters,
};
use crate::support::stack::{Stack, StackBuilder, CLIENT_ID};

/// Lifetime of the IdP's access tokens where a test waits for them to expire. The filter
/// refreshes a quarter of it (1 s) before the end.
const SHORT_TTL: u64 = 4;

const TIMEOUT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------- helpers

/// Access tokens that expire in [`SHORT_TTL`] seconds, rotating refresh tokens, and the
/// access token passed to the app.
fn short_lived() -> StackBuilder {
    Stack::builder()
        .idp_env("IDP_ACCESS_TOKEN_TTL", &SHORT_TTL.to_string())
        .idp_env("IDP_ROTATE_REFRESH", "1")
        .plugin("pass_access_token", json!(true))
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// The `Cookie` header value of the session cookies `b` holds for Envoy.
fn session_cookie(st: &Stack, b: &Browser) -> String {
    let mut cs: Vec<String> = b
        .cookies(&st.origin())
        .into_iter()
        .filter(|c| is_session_cookie_name(&c.name))
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    cs.sort();
    st.check(!cs.is_empty(), || {
        format!(
            "no session cookie in the jar: {:?}",
            b.cookies(&st.origin())
        )
    });
    cs.join("; ")
}

/// The session a response stores (`name=value; …` of its session Set-Cookies), if any.
fn renewed_session(r: &Response) -> Option<String> {
    let mut cs: Vec<String> = session_cookies_set(r)
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    cs.sort();
    (!cs.is_empty()).then(|| cs.join("; "))
}

fn deletes_session(r: &Response) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| is_session_cookie_name(&c.name) && c.is_deletion())
}

/// A browser holding only the Envoy cookies of `b` (a copied session, without the IdP's).
fn copy_session(st: &Stack, b: &Browser) -> Browser {
    let mut copy = Browser::new();
    copy.jar = b
        .jar
        .iter()
        .filter(|c| c.origin == st.origin())
        .cloned()
        .collect();
    copy
}

/// `GET path` as an API client (no `text/html`) with `cookie` as the whole Cookie header.
fn api_get(st: &Stack, path: &str, cookie: &str) -> Response {
    let hs = api_headers(cookie);
    raw_request("GET", &st.url(path), &hs, None, TIMEOUT)
        .unwrap_or_else(|e| st.fail(&format!("GET {path}: {e}")))
}

fn api_headers(cookie: &str) -> Vec<(String, String)> {
    vec![
        ("Accept".into(), "application/json".into()),
        ("Cookie".into(), cookie.into()),
    ]
}

/// The headers the app echoed (`/headers`), after checking it answered.
fn app_saw(st: &Stack, r: &Response, ctx: &str) -> Value {
    let json = (r.status == 200)
        .then(|| serde_json::from_slice::<Value>(&r.body).ok())
        .flatten()
        .filter(|v| v.get("_raw").is_some());
    json.unwrap_or_else(|| {
        st.fail(&format!(
            "{ctx}: expected the app's echo, got {}",
            r.short()
        ))
    })
}

/// The access token the app received in `X-Forwarded-Access-Token`.
fn access_token(st: &Stack, h: &Value, ctx: &str) -> String {
    header_str(h, "x-forwarded-access-token")
        .filter(|t| t.len() >= 16)
        .unwrap_or_else(|| st.fail(&format!("{ctx}: no access token reached the app: {h}")))
}

/// The IdP holds `token` as a real, unrevoked access token of john (give or take its clock
/// tolerance: see the module documentation).
fn assert_token_good(st: &Stack, me: &str, token: &str, ctx: &str) {
    let r = userinfo(st, me, token);
    st.check(r.status == 200, || {
        format!(
            "{ctx}: the IdP refuses the access token the app got ({}…): {}",
            &token[..token.len().min(12)],
            r.short()
        )
    });
    st.check(r.json()["sub"] == "john", || {
        format!("{ctx}: userinfo is not john's: {}", r.short())
    });
}

/// How many times the filter logged `event` (its JSON log lines) so far.
fn logged(st: &Stack, event: &str) -> usize {
    st.envoy_log()
        .matches(&format!("\"event\":\"{event}\""))
        .count()
}

/// The filter's log lines naming `event`.
fn log_lines(st: &Stack, event: &str) -> String {
    st.envoy_log()
        .lines()
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// On the IdP's sign-out page: submit its form (`op.logoutForm`: the hidden `xsrf` and the
/// button's `logout=yes`) and follow where it leads.
fn confirm_idp_logout(st: &Stack, b: &mut Browser, page: &Response) -> (Response, Vec<Hop>) {
    let forms = html::forms(&page.text());
    let form = forms
        .iter()
        .find(|f| f.action.contains("/session/end/confirm"))
        .unwrap_or_else(|| {
            st.fail(&format!(
                "no sign-out form (/session/end/confirm) on the IdP page: {}",
                page.short()
            ))
        });
    let fields = form.fields();
    st.check(
        fields.iter().any(|(k, v)| k == "xsrf" && !v.is_empty())
            && fields.iter().any(|(k, v)| k == "logout" && v == "yes"),
        || format!("the IdP's sign-out form lacks xsrf or logout=yes: {fields:?}"),
    );
    let action = Url::parse(&page.url)
        .and_then(|u| u.join(&form.action))
        .unwrap_or_else(|e| st.fail(&format!("sign-out form action {}: {e}", form.action)));
    b.submit_form(action.as_str(), &fields)
}

/// Whether `r` is a page of the IdP with a password field (its login form).
fn is_idp_login_form(st: &Stack, r: &Response) -> bool {
    let at_idp = Url::parse(&r.url).is_ok_and(|u| origin_of(&u) == st.idp_origin());
    at_idp && r.status == 200 && html::forms(&r.text()).iter().any(|f| f.has_password())
}

fn url_without_query(u: &str) -> String {
    Url::parse(u)
        .map(|mut u| {
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_else(|_| u.to_string())
}

// ---------------------------------------------------------------- 1. refresh

/// Over many access-token lifetimes, with one request a second, the app always receives an
/// access token that is still valid: never one older than its lifetime minus half a second
/// (timed from the request that brought it), and one the IdP accepts (userinfo; note that
/// oidc-provider still accepts a token up to 15 s after it expired, its clock tolerance, so
/// the age is the sharp check). Each refresh gives the browser a new cookie, and the IdP
/// never refuses one.
#[test]
fn l1_session_outlives_access_tokens() {
    let st = short_lived().start();
    let me = userinfo_endpoint(&st);
    let mut b = Browser::new();
    // Log in, timing the callback: its token exchange is the first token's issue.
    b.pause_before = Some("/oauth2/callback".into());
    let (r, hops) = st.login(&mut b, &st.url("/headers?i=0"), "john", "john");
    b.pause_before = None;
    let callback = r
        .location()
        .filter(|u| r.is_redirect() && u.path() == "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("login:\n{}\n{}", format_hops(&hops), r.short())));
    reset_counters(&st);
    let refreshed_before = logged(&st, "session_refreshed");
    let mut sent = Instant::now();
    let (mut r, _) = b.follow_get(callback.as_str());

    let start = Instant::now();
    let mut cookies = vec![session_cookie(&st, &b)];
    // Each access token the app got, and when the request that brought it was sent (its
    // issue cannot be earlier).
    let mut tokens: Vec<(String, Instant)> = Vec::new();
    let mut i = 0;
    loop {
        let ctx = format!(
            "request {i} at {:.1}s ({SHORT_TTL} s access tokens)",
            sent.duration_since(start.min(sent)).as_secs_f64()
        );
        let h = app_saw(&st, &r, &ctx);
        let token = access_token(&st, &h, &ctx);
        if tokens.last().map(|(t, _)| t) != Some(&token) {
            tokens.push((token.clone(), sent));
        }
        let age = tokens.last().map_or(Duration::ZERO, |(_, at)| at.elapsed());
        st.check(age < Duration::from_millis(SHORT_TTL * 1000 - 500), || {
            format!(
                "{ctx}: the app got an access token issued {age:?} ago (lifetime {SHORT_TTL} \
                 s): expired or about to; the filter should have refreshed it; counters: {:?}",
                counters(&st)
            )
        });
        assert_token_good(&st, &me, &token, &ctx);
        let cookie = session_cookie(&st, &b);
        if cookies.last() != Some(&cookie) {
            st.check(renewed_session(&r).as_ref() == Some(&cookie), || {
                format!(
                    "{ctx}: the jar's session changed without a Set-Cookie: {}",
                    r.short()
                )
            });
            cookies.push(cookie);
        }
        i += 1;
        if start.elapsed() >= Duration::from_secs(18) {
            break;
        }
        sleep_until(start + Duration::from_secs(i));
        sent = Instant::now();
        r = b.get(&st.url(&format!("/headers?i={i}")));
    }

    let c = counters(&st);
    st.check(
        c.refresh >= 4 && c.refresh_failed == 0 && c.code == 1,
        || {
            format!(
                "over 18 s of {SHORT_TTL} s access tokens the IdP should see several refreshes, \
             none refused and no login but the first; counters: {c:?}"
            )
        },
    );
    // Each refresh brought the app a new token and the browser a new cookie.
    let n = usize::try_from(c.refresh).unwrap_or(usize::MAX);
    st.check(tokens.len() == n + 1, || {
        format!(
            "the app saw {} distinct access tokens, want the login's plus one per refresh ({})",
            tokens.len(),
            n + 1
        )
    });
    st.check(cookies.len() == n + 1, || {
        format!(
            "the browser held {} distinct session cookies, want the login's plus one per \
             refresh ({})",
            cookies.len(),
            n + 1
        )
    });
    let logged_refreshes = logged(&st, "session_refreshed") - refreshed_before;
    st.check(logged_refreshes == n, || {
        format!("the filter logged {logged_refreshes} session_refreshed, the IdP counted {n}")
    });
}

// ------------------------------------------------------------- 2. refresh refused

/// Log in with browser A, copy its cookie to B, sign out with A (the filter revokes the
/// refresh token at the IdP): once the access token runs out, B's refresh is refused, and
/// B's session ends: an API client gets a 401 that expires the cookie, a browser is sent to
/// log in.
#[test]
fn l2_refused_refresh_ends_the_session() {
    let st = short_lived().start();
    let authz = authz_endpoint(&st);
    let mut a = Browser::new();
    st.login_ok(&mut a, "/", "john");
    let logged_in = Instant::now();
    let copy = copy_session(&st, &a);
    let cookie = session_cookie(&st, &copy);

    // Control: the copy works as well as the original.
    let r = api_get(&st, "/headers", &cookie);
    app_saw(&st, &r, "copied cookie before sign-out");

    reset_counters(&st);
    let r = a.get(&st.url("/oauth2/sign_out"));
    st.check(r.status == 302 && deletes_session(&r), || {
        format!("A's sign-out: {}", r.short())
    });
    let c = counters(&st);
    st.check(c.revocation >= 1, || {
        format!("sign-out must revoke the refresh token at the IdP; counters: {c:?}")
    });

    // The access token expires SHORT_TTL s after login; the filter refreshes 1 s earlier.
    sleep_until(logged_in + Duration::from_millis(SHORT_TTL * 1000 + 300));
    let r = api_get(&st, "/headers", &cookie);
    assert_gate_401(
        &st,
        &r,
        "API request with the copied cookie after its refresh is refused",
    );
    st.check(deletes_session(&r), || {
        format!("the 401 must expire the session cookie: {}", r.short())
    });
    let mut browser = copy.clone();
    let r = browser.get(&st.url("/headers"));
    assert_login_redirect(
        &st,
        &r,
        &authz,
        "browser with the copied cookie after refusal",
    );

    let c = counters(&st);
    st.check(c.refresh == 0 && c.refresh_failed == 1, || {
        format!(
            "one refused refresh (shared by both requests) and no successful one; \
             counters: {c:?}"
        )
    });
    let ended = log_lines(&st, "session_ended");
    st.check(ended.contains("refresh_refused"), || {
        format!("the filter should log session_ended with reason refresh_refused; got:\n{ended}")
    });
}

/// With long-lived access tokens, `cookie_refresh` bounds how long a copied cookie outlives
/// an RP-initiated logout: it works before, and is refused within `cookie_refresh` (plus a
/// little) after.
#[test]
fn l2b_copied_cookie_dies_within_cookie_refresh() {
    const EVERY: u64 = 3;
    let st = Stack::builder()
        .idp_env("IDP_ACCESS_TOKEN_TTL", "60")
        .idp_env("IDP_ROTATE_REFRESH", "1")
        .plugin("pass_access_token", json!(true))
        .plugin("cookie_refresh", json!(format!("{EVERY}s")))
        .start();
    let mut a = Browser::new();
    st.login_ok(&mut a, "/", "john");
    let cookie = session_cookie(&st, &copy_session(&st, &a));
    let r = api_get(&st, "/headers", &cookie);
    app_saw(&st, &r, "copied cookie before sign-out");

    // RP-initiated logout, all the way through the IdP's confirmation.
    reset_counters(&st);
    let (page, hops) = a.follow_get(&st.url("/oauth2/sign_out"));
    st.check(
        url_without_query(&page.url).ends_with("/session/end"),
        || {
            format!(
                "sign-out should lead to the IdP's sign-out page:\n{}\n{}",
                format_hops(&hops),
                page.short()
            )
        },
    );
    let (done, hops) = confirm_idp_logout(&st, &mut a, &page);
    st.check(done.status == 200, || {
        format!("IdP sign-out:\n{}\n{}", format_hops(&hops), done.short())
    });
    let signed_out = Instant::now();
    let c = counters(&st);
    st.check(c.end_session == 1 && c.revocation >= 1, || {
        format!("counters after the RP-initiated logout: {c:?}")
    });

    // Poll with the copy until it is refused.
    let deadline = signed_out + Duration::from_millis(EVERY * 1000 + 2000);
    let refused = loop {
        let r = api_get(&st, "/headers", &cookie);
        if r.status != 200 {
            break r;
        }
        st.check(Instant::now() < deadline, || {
            format!(
                "the copied cookie still works {:.1}s after sign-out (cookie_refresh {EVERY}s); \
                 counters: {:?}",
                signed_out.elapsed().as_secs_f64(),
                counters(&st)
            )
        });
        std::thread::sleep(Duration::from_millis(250));
    };
    let after = signed_out.elapsed();
    assert_gate_401(&st, &refused, "the copied cookie after cookie_refresh");
    st.check(deletes_session(&refused), || {
        format!(
            "the 401 must expire the session cookie: {}",
            refused.short()
        )
    });
    let c = counters(&st);
    st.check(c.refresh_failed >= 1 && c.refresh == 0, || {
        format!("refused after {after:?}, but counters: {c:?}")
    });
}

// ------------------------------------------------------------ 3. one refresh for all

/// Fires `cookies.len()` requests at once, request i with `cookies[i]`; all must reach the
/// app. Returns the responses and the IdP counters after.
fn parallel_burst(st: &Stack, cookies: &[&str], ctx: &str) -> (Vec<Response>, Counters) {
    let requests: Vec<(String, Vec<(String, String)>)> = cookies
        .iter()
        .enumerate()
        .map(|(i, c)| (st.url(&format!("/headers?n={i}")), api_headers(c)))
        .collect();
    let workers_before = st.worker_connections();
    let started = Instant::now();
    let results = burst(&requests, Duration::from_secs(30));
    let took = started.elapsed();
    // Every Envoy worker took some of the burst's connections.
    let workers_after = st.worker_connections();
    let per_worker: Vec<u64> = workers_after
        .iter()
        .zip(workers_before.iter().chain(std::iter::repeat(&0)))
        .map(|(after, before)| after - before)
        .collect();
    st.check(
        per_worker.len() == st.concurrency && per_worker.iter().all(|n| *n > 0),
        || format!("{ctx}: connections per Envoy worker: {per_worker:?} (want all > 0)"),
    );
    let responses: Vec<Response> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| st.fail(&format!("{ctx}: request {i}: {e}"))))
        .collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    let c = counters(st);
    for (i, r) in responses.iter().enumerate() {
        let h = serde_json::from_slice::<Value>(&r.body).ok();
        let ok = r.status == 200
            && h.as_ref()
                .and_then(|h| header_str(h, "x-forwarded-email"))
                .as_deref()
                == Some("john@example.com");
        st.check(ok, || {
            format!(
                "{ctx}: request {i} (of {}, {took:?}) did not reach the app as john: {}\n\
                 statuses: {statuses:?}\ncounters: {c:?}\nrefresh log:\n{}",
                responses.len(),
                r.short(),
                log_lines(st, "refresh_failed") + &log_lines(st, "session_ended")
            )
        });
        st.check(!deletes_session(r), || {
            format!("{ctx}: request {i} expired the session: {}", r.short())
        });
    }
    (responses, c)
}

/// 50 API requests at once on one session whose access token expired make one refresh at
/// the IdP, over every Envoy worker; all reach the app with the same, valid new token, and
/// every new cookie set is the same. After the next expiry, a burst mixing the original
/// cookie (whose refresh token was rotated away) and the new one again makes one refresh
/// and logs nobody out.
#[test]
fn l3_parallel_requests_refresh_once() {
    const N: usize = 50;
    let st = short_lived().start();
    let me = userinfo_endpoint(&st);
    let mut b = Browser::new();
    let (r, _) = st.login_ok(&mut b, "/headers", "john");
    let logged_in = Instant::now();
    let original = session_cookie(&st, &b);
    let first_token = access_token(&st, &app_saw(&st, &r, "login"), "login");

    sleep_until(logged_in + Duration::from_millis(SHORT_TTL * 1000 + 300));
    reset_counters(&st);
    let logged_before = logged(&st, "session_refreshed");
    let burst1 = Instant::now();
    let (responses, c) = parallel_burst(&st, &vec![original.as_str(); N], "first burst");
    st.check(c.refresh == 1 && c.refresh_failed == 0, || {
        format!("{N} parallel requests on one expired session: want exactly 1 refresh; {c:?}")
    });
    let logged_refreshes = logged(&st, "session_refreshed") - logged_before;
    st.check(logged_refreshes == 1, || {
        format!("the filter logged {logged_refreshes} session_refreshed for one burst")
    });
    let tokens: BTreeSet<String> = responses
        .iter()
        .map(|r| access_token(&st, &r.json(), "first burst"))
        .collect();
    st.check(tokens.len() == 1 && !tokens.contains(&first_token), || {
        format!(
            "one refresh, so one new access token for all; the app got {} different ones{}",
            tokens.len(),
            if tokens.contains(&first_token) {
                ", among them the expired one"
            } else {
                ""
            }
        )
    });
    let second_token = tokens.iter().next().cloned().unwrap_or_default();
    for t in &tokens {
        assert_token_good(&st, &me, t, "first burst");
    }
    let renewed: BTreeSet<String> = responses.iter().filter_map(renewed_session).collect();
    st.check(renewed.len() == 1, || {
        format!(
            "every new session cookie set in the burst must be the same one refresh's; \
             got {} distinct ({} of {N} responses set one)",
            renewed.len(),
            responses
                .iter()
                .filter(|r| renewed_session(r).is_some())
                .count()
        )
    });
    let new = renewed.into_iter().next().unwrap_or_default();
    st.check(new != original, || {
        "the refresh did not change the cookie".into()
    });

    // The next expiry: old and new cookies mixed.
    sleep_until(burst1 + Duration::from_millis(SHORT_TTL * 1000 + 300));
    reset_counters(&st);
    let mixed: Vec<&str> = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                original.as_str()
            } else {
                new.as_str()
            }
        })
        .collect();
    let (responses, c) = parallel_burst(&st, &mixed, "second burst (old and new cookies)");
    st.check(c.refresh == 1 && c.refresh_failed == 0, || {
        format!("second burst, old and new cookies mixed: want exactly 1 refresh; {c:?}")
    });
    let tokens: BTreeSet<String> = responses
        .iter()
        .map(|r| access_token(&st, &r.json(), "second burst"))
        .collect();
    st.check(
        tokens.len() == 1 && !tokens.contains(&first_token) && !tokens.contains(&second_token),
        || {
            format!(
                "second burst: the app should get one new access token, got {} different \
                 ones (the login's among them: {}, the first burst's: {})",
                tokens.len(),
                tokens.contains(&first_token),
                tokens.contains(&second_token)
            )
        },
    );
    for t in &tokens {
        assert_token_good(&st, &me, t, "second burst");
    }
    let renewed: BTreeSet<String> = responses.iter().filter_map(renewed_session).collect();
    st.check(renewed.len() == 1, || {
        format!(
            "second burst: {} distinct new session cookies ({} of {N} responses set one)",
            renewed.len(),
            responses
                .iter()
                .filter(|r| renewed_session(r).is_some())
                .count()
        )
    });
    // The newest cookie goes on without another refresh.
    let newest = renewed.into_iter().next().unwrap_or_default();
    reset_counters(&st);
    let r = api_get(&st, "/headers", &newest);
    app_saw(&st, &r, "the newest cookie after both bursts");
    let c = counters(&st);
    st.check(c.refresh == 0 && c.refresh_failed == 0, || {
        format!("the newest cookie should need no refresh yet; {c:?}")
    });
}

// ------------------------------------------------------------------- 4. sign-out

/// A stack whose app answers `/signed-out` (the registered post-logout URI) without a
/// session.
fn sign_out_stack(rp_initiated_logout: bool) -> Stack {
    Stack::builder()
        .plugin("oidc_rp_initiated_logout", json!(rp_initiated_logout))
        .plugin("skip_auth_routes", json!(["GET=^/signed-out$"]))
        .start()
}

/// The sign-out hop: a 302 that expires the session, its Location parsed.
fn sign_out_hop(st: &Stack, hops: &[Hop]) -> Url {
    let hop = hops
        .iter()
        .find(|h| h.url.contains("/oauth2/sign_out"))
        .unwrap_or_else(|| st.fail(&format!("no sign-out hop:\n{}", format_hops(hops))));
    let expired = hop
        .set_cookies
        .iter()
        .map(|s| SetCookie::parse(s))
        .any(|c| c.name == SESSION && c.is_deletion());
    st.check(hop.status == 302 && expired, || {
        format!("sign-out must expire {SESSION} and redirect: {hop}")
    });
    Url::parse(&hop.url)
        .and_then(|u| u.join(hop.location.as_deref().unwrap_or("")))
        .unwrap_or_else(|e| st.fail(&format!("sign-out Location: {e}: {hop}")))
}

/// `/oauth2/sign_out?rd=/signed-out` sends the browser to the IdP's end_session_endpoint
/// (id_token_hint, client_id, the absolute post_logout_redirect_uri); confirming there ends
/// the IdP session and lands on `/signed-out`, and the next visit shows the IdP's login
/// form instead of logging in silently.
#[test]
fn l4_sign_out_ends_the_idp_session() {
    let st = sign_out_stack(true);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    reset_counters(&st);

    let (page, hops) = b.follow_get(&st.url("/oauth2/sign_out?rd=%2Fsigned-out"));
    let to = sign_out_hop(&st, &hops);
    let end_session = crate::support::checks::discovery(&st)["end_session_endpoint"]
        .as_str()
        .unwrap_or_else(|| st.fail("discovery has no end_session_endpoint"))
        .to_string();
    st.check(url_without_query(to.as_str()) == end_session, || {
        format!("sign-out must redirect to the end_session_endpoint {end_session}, went to {to}")
    });
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    let hint = q
        .get("id_token_hint")
        .and_then(|t| crate::support::jwt::payload(t));
    st.check(
        q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && q.get("post_logout_redirect_uri") == Some(&st.url("/signed-out"))
            && hint.as_ref().is_some_and(|p| p["sub"] == "john"),
        || format!("end_session request parameters: {q:?}"),
    );
    st.check(
        !b.cookies(&st.origin())
            .iter()
            .any(|c| is_session_cookie_name(&c.name)),
        || "session cookie still in the jar after sign-out".into(),
    );
    let c = counters(&st);
    st.check(c.revocation >= 1, || {
        format!("sign-out must revoke the refresh token; counters: {c:?}")
    });

    let (done, hops) = confirm_idp_logout(&st, &mut b, &page);
    st.check(
        done.status == 200 && url_without_query(&done.url) == st.url("/signed-out"),
        || {
            format!(
                "confirming at the IdP should land on {}:\n{}\n{}",
                st.url("/signed-out"),
                format_hops(&hops),
                done.short()
            )
        },
    );
    let c = counters(&st);
    st.check(c.end_session == 1, || {
        format!("the IdP should count one logout; counters: {c:?}")
    });

    // The IdP session is gone: logging in again means the login form.
    let (r, hops) = b.follow_get(&st.url("/"));
    st.check(is_idp_login_form(&st, &r), || {
        format!(
            "after RP-initiated logout, visiting / should show the IdP's login form:\n{}\n{}",
            format_hops(&hops),
            r.short()
        )
    });
    let c = counters(&st);
    st.check(c.code == 0, || format!("no silent login; counters: {c:?}"));
}

/// With `oidc_rp_initiated_logout: false`, sign-out still revokes the refresh token and
/// lands on `rd` directly, but the IdP session lives on: the next visit logs in silently.
#[test]
fn l4b_sign_out_without_rp_logout() {
    let st = sign_out_stack(false);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    reset_counters(&st);

    let (done, hops) = b.follow_get(&st.url("/oauth2/sign_out?rd=%2Fsigned-out"));
    let to = sign_out_hop(&st, &hops);
    st.check(to.as_str() == st.url("/signed-out"), || {
        format!("sign-out should go straight to /signed-out, went to {to}")
    });
    st.check(
        done.status == 200 && done.url == st.url("/signed-out"),
        || format!("sign-out:\n{}\n{}", format_hops(&hops), done.short()),
    );
    let c = counters(&st);
    st.check(c.revocation >= 1 && c.end_session == 0, || {
        format!("revocation yes, IdP logout no; counters: {c:?}")
    });

    let (r, hops) = b.follow_get(&st.url("/"));
    st.check(
        r.status == 200
            && r.url == st.url("/")
            && !hops.iter().any(|h| h.url.contains("/interaction/")),
        || {
            format!(
                "without RP-initiated logout the IdP session survives and / logs in silently:\n{}\n{}",
                format_hops(&hops),
                r.short()
            )
        },
    );
    let c = counters(&st);
    st.check(c.code == 1, || format!("one silent login; counters: {c:?}"));
}

/// Defect: a sign-out whose server-side call could not be dispatched (here
/// `backend_logout_url` on a host whose cluster this Envoy does not have) answered 502
/// without a `Set-Cookie`, so the browser stayed signed in. Clearing the browser's cookies
/// never depends on the IdP: the sign-out still expires the session and redirects.
#[test]
fn l4c_sign_out_clears_cookies_when_the_idp_cannot_be_called() {
    let st = Stack::builder()
        .plugin("oidc_rp_initiated_logout", json!(false))
        .plugin("skip_auth_routes", json!(["GET=^/signed-out$"]))
        .plugin(
            "backend_logout_url",
            json!("https://logout.invalid/logout?id_token_hint={id_token}"),
        )
        .plugin("idp_clusters", json!({"logout.invalid": "no_such_cluster"}))
        .start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    reset_counters(&st);
    let (done, hops) = b.follow_get(&st.url("/oauth2/sign_out?rd=%2Fsigned-out"));
    let to = sign_out_hop(&st, &hops);
    st.check(
        to.as_str() == st.url("/signed-out") && done.status == 200,
        || format!("sign-out:\n{}\n{}", format_hops(&hops), done.short()),
    );
    st.check(
        !b.cookies(&st.origin())
            .iter()
            .any(|c| is_session_cookie_name(&c.name)),
        || "session cookie still in the jar after sign-out".into(),
    );
    // The call that could be made was made (revocation, on the IdP's own cluster).
    let c = counters(&st);
    st.check(c.revocation >= 1, || format!("revocation expected; {c:?}"));
    st.check(logged(&st, "callout_dispatch_failed") >= 1, || {
        format!("the refused dispatch is logged:\n{}", st.envoy_log())
    });
}

// ---------------------------------------------------------------- 5. two tabs

/// Two tabs of one browser start a login each (two authorize redirects), the IdP login is
/// done for both, and the callbacks come back in reverse order. Returns the login
/// redirects (first, second) and the callbacks' final responses (first, second).
fn two_tabs(st: &Stack, b: &mut Browser) -> [Response; 4] {
    let authz = authz_endpoint(st);
    let start1 = b.get(&st.url("/tab/one"));
    assert_login_redirect(st, &start1, &authz, "tab one");
    let start2 = b.get(&st.url("/tab/two"));
    assert_login_redirect(st, &start2, &authz, "tab two");

    b.pause_before = Some("/oauth2/callback".into());
    let mut callbacks = Vec::new();
    for (tab, start) in [("one", &start1), ("two", &start2)] {
        let authorize = start.location().map(|u| u.to_string()).unwrap_or_default();
        let (r, hops) = st.login(b, &authorize, "john", "john");
        let cb = r
            .location()
            .filter(|u| r.is_redirect() && u.path() == "/oauth2/callback")
            .unwrap_or_else(|| {
                st.fail(&format!(
                    "tab {tab}: the IdP should send the browser to the callback:\n{}\n{}",
                    format_hops(&hops),
                    r.short()
                ))
            });
        callbacks.push(cb.to_string());
    }
    b.pause_before = None;
    let (second, _) = b.follow_get(&callbacks[1]);
    let (first, _) = b.follow_get(&callbacks[0]);
    [start1, start2, first, second]
}

/// With `cookie_csrf_per_request`, each login attempt has its own CSRF cookie, so both
/// tabs finish logged in whatever the order; with one shared CSRF cookie (the default) the
/// second start overwrites the first's, and the first-started login fails.
#[test]
fn l5_two_tabs_log_in_at_once() {
    let st = Stack::builder()
        .plugin("cookie_csrf_per_request", json!(true))
        .start();
    let mut b = Browser::new();
    let [start1, start2, first, second] = two_tabs(&st, &mut b);
    let csrf_names = |r: &Response| -> Vec<String> {
        r.set_cookies()
            .into_iter()
            .filter(|c| c.name.starts_with(&format!("{CSRF}_")) && !c.is_deletion())
            .map(|c| c.name)
            .collect()
    };
    let (n1, n2) = (csrf_names(&start1), csrf_names(&start2));
    st.check(n1.len() == 1 && n2.len() == 1 && n1 != n2, || {
        format!("each login start needs its own CSRF cookie: {n1:?} / {n2:?}")
    });
    st.check(
        second.status == 200 && second.url == st.url("/tab/two"),
        || format!("tab two (finished first): {}", second.short()),
    );
    st.check(
        first.status == 200 && first.url == st.url("/tab/one"),
        || format!("tab one (started first, finished last): {}", first.short()),
    );
    let r = b.get(&st.url("/headers"));
    let h = app_saw(&st, &r, "after both tabs logged in");
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("identity after both logins: {h}"),
    );
    let left: Vec<String> = b
        .cookies(&st.origin())
        .iter()
        .filter(|c| c.name.starts_with(CSRF))
        .map(|c| c.name.clone())
        .collect();
    st.check(left.is_empty(), || {
        format!("finished logins leave no CSRF cookie behind: {left:?}")
    });

    // The default: one CSRF cookie for every attempt.
    let st = Stack::builder().start();
    let mut b = Browser::new();
    let [start1, start2, first, second] = two_tabs(&st, &mut b);
    st.check(
        start1.set_cookie(CSRF).is_some() && start2.set_cookie(CSRF).is_some(),
        || "without cookie_csrf_per_request both starts set the one shared CSRF cookie".into(),
    );
    st.check(
        second.status == 200 && second.url == st.url("/tab/two"),
        || format!("default, tab two (started last): {}", second.short()),
    );
    st.check(
        first.status == 403 && first.text().contains("login attempt expired"),
        || {
            format!(
                "default, tab one: the first-started login has lost its CSRF cookie and \
                 should fail: {}",
                first.short()
            )
        },
    );
}

// ------------------------------------------------------------ 6. secret rotation

/// Sessions sealed with a previous `cookie_secret` (in `cookie_secret_previous`) still open
/// and are re-sealed with the current secret on the response; a login started before the
/// roll finishes after it; once the old secret is retired, only re-sealed cookies work.
#[test]
fn l6_rolled_cookie_secret() {
    let mut st = Stack::builder().start();
    let authz = authz_endpoint(&st);
    let old_secret = st.cookie_secret.clone();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let old = session_cookie(&st, &b);
    // A login in flight over the roll (its CSRF cookie sealed with the old secret).
    let mut pending = Browser::new();
    let r = pending.get(&st.url("/in-flight"));
    assert_login_redirect(&st, &r, &authz, "login started before the roll");

    // Roll: a new secret, the old one kept as previous.
    st.cookie_secret = crate::support::random_cookie_secret();
    st.plugin_config["cookie_secret_previous"] = json!([old_secret]);
    st.restart_envoy();

    let r = api_get(&st, "/headers", &old);
    let h = app_saw(&st, &r, "old cookie after the roll");
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("old cookie after the roll: identity {h}"),
    );
    let new = renewed_session(&r).unwrap_or_else(|| {
        st.fail(&format!(
            "a session sealed with the previous secret must be re-sealed on the response: {}",
            r.short()
        ))
    });
    st.check(new != old, || "the re-sealed cookie is the old one".into());
    let r = api_get(&st, "/headers", &new);
    app_saw(&st, &r, "re-sealed cookie");
    st.check(renewed_session(&r).is_none(), || {
        format!(
            "a cookie sealed with the current secret needs no re-seal: {}",
            r.short()
        )
    });
    let (r, hops) = st.login(&mut pending, &st.url("/in-flight"), "john", "john");
    st.check(r.status == 200 && r.url == st.url("/in-flight"), || {
        format!(
            "a login started before the roll should finish after it:\n{}\n{}",
            format_hops(&hops),
            r.short()
        )
    });

    // Retire the old secret.
    st.plugin_config
        .as_object_mut()
        .map(|o| o.remove("cookie_secret_previous"));
    st.restart_envoy();
    let r = api_get(&st, "/headers", &new);
    let h = app_saw(&st, &r, "re-sealed cookie with the old secret retired");
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("re-sealed cookie, old secret retired: identity {h}"),
    );
    let r = api_get(&st, "/headers", &old);
    assert_gate_401(&st, &r, "the old cookie once its secret is retired");
}

// ------------------------------------------------------------ 7. token exchange

/// Every header value the app received that the IdP accepts as an access token (userinfo
/// 200): the user's own tokens. Exchanged JWTs are not the IdP's opaque tokens.
fn user_tokens_in(st: &Stack, me: &str, h: &Value) -> Vec<String> {
    raw_headers(h)
        .into_iter()
        .flat_map(|(name, value)| {
            let v = value.strip_prefix("Bearer ").unwrap_or(&value).to_string();
            [(name.clone(), value), (name, v)]
        })
        .filter(|(_, v)| v.len() >= 16 && !v.contains(' '))
        .filter(|(_, v)| userinfo(st, me, v).status == 200)
        .map(|(n, _)| n)
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// Log in without the login's own last request (which would already exchange a token).
fn login_without_landing(st: &Stack, b: &mut Browser) {
    b.pause_before = Some("/landing".into());
    let (r, hops) = st.login(b, &st.url("/landing"), "john", "john");
    b.pause_before = None;
    st.check(
        r.is_redirect()
            && r.location()
                .is_some_and(|u| u.as_str() == st.url("/landing")),
        || format!("login:\n{}\n{}", format_hops(&hops), r.short()),
    );
    session_cookie(st, b);
}

/// With `upstream_token_exchange`, the app gets `Authorization: Bearer <JWT>` minted by the
/// IdP for `demo-upstream` (RS256, verified against /jwks), also in the access-token
/// headers, and never the user's own access token; one exchange serves a worker's next
/// requests.
#[test]
fn l7_upstream_token_exchange() {
    let st = Stack::builder()
        .plugin(
            "upstream_token_exchange",
            json!({"audience": "demo-upstream"}),
        )
        .plugin("pass_access_token", json!(true))
        .plugin("pass_authorization_header", json!(true))
        .start();
    let me = userinfo_endpoint(&st);
    let keys = jwks(&st);
    let mut b = Browser::new();
    login_without_landing(&st, &mut b);
    reset_counters(&st);

    // Two requests on one connection reach one worker: one exchange.
    let cookie = session_cookie(&st, &b);
    let urls = vec![st.url("/headers?n=1"), st.url("/headers?n=2")];
    let responses = get_on_one_connection(&urls, &api_headers(&cookie), TIMEOUT)
        .unwrap_or_else(|e| st.fail(&format!("two requests on one connection: {e}")));
    let mut exchanged = BTreeSet::new();
    for (i, r) in responses.iter().enumerate() {
        let ctx = format!("request {} on one connection", i + 1);
        let h = app_saw(&st, r, &ctx);
        let authorization = header_str(&h, "authorization").unwrap_or_default();
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| st.fail(&format!("{ctx}: Authorization is {authorization:?}")));
        let claims = verify_rs256(token, &keys)
            .unwrap_or_else(|e| st.fail(&format!("{ctx}: the app's bearer token: {e}")));
        let now = crate::support::now();
        let exp = claims["exp"].as_u64().unwrap_or(0);
        st.check(
            claims["aud"] == "demo-upstream"
                && claims["iss"] == json!(st.issuer())
                && claims["sub"] == "john"
                && claims["client_id"] == CLIENT_ID
                && exp > now,
            || format!("{ctx}: exchanged token claims: {claims}"),
        );
        st.check(
            crate::support::jwt::header(token).is_some_and(|h| h["typ"] == "at+jwt"),
            || {
                format!(
                    "{ctx}: exchanged token header: {:?}",
                    crate::support::jwt::header(token)
                )
            },
        );
        for name in ["x-forwarded-access-token", "x-auth-request-access-token"] {
            st.check(header_str(&h, name).as_deref() == Some(token), || {
                format!("{ctx}: {name} should carry the exchanged token: {h}")
            });
        }
        let leaked = user_tokens_in(&st, &me, &h);
        st.check(leaked.is_empty(), || {
            format!("{ctx}: the user's own access token reached the app in {leaked:?}")
        });
        exchanged.insert(token.to_string());
    }
    let c = counters(&st);
    st.check(c.exchange == 1 && exchanged.len() == 1, || {
        format!(
            "two requests on one worker: want one exchange and one token, got {} token(s); \
             counters: {c:?}",
            exchanged.len()
        )
    });

    // More requests, each on its own connection: at most one exchange per worker.
    for i in 0..6 {
        let r = api_get(&st, &format!("/headers?more={i}"), &cookie);
        app_saw(&st, &r, "further request");
    }
    let c = counters(&st);
    st.check(c.exchange <= st.concurrency as u64, || {
        format!(
            "exchanged tokens are cached per worker ({} workers); counters: {c:?}",
            st.concurrency
        )
    });
}

/// A public route (`skip_auth_routes`) with a session gets its identity, but with
/// `upstream_token_exchange` not the user's own access token either.
#[test]
fn l7b_token_exchange_on_public_routes() {
    let st = Stack::builder()
        .plugin(
            "upstream_token_exchange",
            json!({"audience": "demo-upstream"}),
        )
        .plugin("pass_access_token", json!(true))
        .plugin("skip_auth_routes", json!(["GET=^/public/"]))
        .start();
    let me = userinfo_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/headers", "john");
    let cookie = session_cookie(&st, &b);
    // Control: on a gated route the app does not get it.
    let r = api_get(&st, "/headers", &cookie);
    let h = app_saw(&st, &r, "gated route");
    let leaked = user_tokens_in(&st, &me, &h);
    st.check(leaked.is_empty(), || {
        format!("gated route: the user's own access token reached the app in {leaked:?}")
    });

    let r = api_get(&st, "/public/headers", &cookie);
    st.check(r.status == 200, || format!("public route: {}", r.short()));
    let body = r.json();
    let h = body.get("headers").cloned().unwrap_or(Value::Null);
    let as_raw = json!({
        "_raw": h.as_object().map(|o| {
            o.iter()
                .map(|(k, v)| json!([k, v.as_str().unwrap_or_default()]))
                .collect::<Vec<_>>()
        })
    });
    let leaked = user_tokens_in(&st, &me, &as_raw);
    st.check(leaked.is_empty(), || {
        format!(
            "public route with a session and upstream_token_exchange: the user's own access \
             token reached the app in {leaked:?}; headers: {h}"
        )
    });
}
