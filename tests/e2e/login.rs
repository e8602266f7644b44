//! The browser login against a real Envoy running the optimized filter, the demo app and a
//! real OpenID Provider (panva/oidc-provider, `idp/server.js`): the authorization request
//! (PKCE, state, nonce), the callback landing on the original URL with the identity, forged,
//! replayed and cross-browser callbacks refused (two interleaved logins keep their own
//! state, nonce and PKCE verifier against the strict `tests/support/bad_op.rs` OP),
//! `email_domains` and unverified emails, the token endpoint's client authentication
//! (`client_secret_post`, `private_key_jwt`) and ES256-signed ID tokens.
//!
//! Same environment as the rest of the end-to-end suite (all three variables are required; a
//! missing one FAILS the tests), e.g.:
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e login:: -- --test-threads 2
//! ```
//!
//! or `just e2e`, which runs every end-to-end file.

use serde_json::{json, Value};
use url::Url;

use crate::support::bad_op::{bad_op_stack, BadOp, Scenario};
// The hop-chain variant, under the name these tests have always called it by.
use crate::support::checks::session_cookies_set_in_hops as session_cookies_set;
use crate::support::checks::{
    assert_login_redirect, authz_endpoint, find_hop, header_str, raw_count, session_cookies_in_jar,
    CSRF, SESSION,
};
use crate::support::http::{format_hops, Browser, Hop, Response, SetCookie};
use crate::support::jwt;
use crate::support::stack::{App, Stack};

fn hop_of(r: &Response) -> Hop {
    Hop {
        method: "GET".into(),
        url: r.url.clone(),
        status: r.status,
        location: r.header("location").map(|s| s.to_string()),
        set_cookies: r
            .headers_all("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// A1: full browser login as john; identity headers; session cookie hidden from the app.
#[test]
fn a01_login_flow_passes_identity_headers() {
    let st = Stack::builder().start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();

    // 1. Unauthenticated browser request -> 302 to the OP with a complete, PKCE'd request.
    let r = b.get(&st.url("/headers?probe=1"));
    assert_login_redirect(&st, &r, &authz, "GET /headers?probe=1 without session");
    let loc = r.location().expect("location");
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    for (k, want) in [
        ("response_type", Some("code")),
        ("client_id", Some(st.client_id.as_str())),
        ("code_challenge_method", Some("S256")),
        ("redirect_uri", Some(st.redirect_url().as_str())),
        ("state", None),
        ("nonce", None),
        ("code_challenge", None),
        ("scope", None),
    ] {
        let got = q.get(k);
        st.check(
            got.is_some()
                && want
                    .map(|w| got.map(|g| g == w).unwrap_or(false))
                    .unwrap_or(true),
            || format!("authorization request: `{k}` is {got:?}, want {want:?} in {loc}"),
        );
    }
    st.check(q["scope"].split(' ').any(|s| s == "openid"), || {
        format!("scope lacks openid: {loc}")
    });
    st.check(q["code_challenge"].len() >= 43, || {
        format!("code_challenge too short: {loc}")
    });
    st.check(q["state"].len() >= 16 && q["nonce"].len() >= 16, || {
        format!("state/nonce too short: {loc}")
    });
    let csrf = r.set_cookie(CSRF);
    st.check(
        csrf.as_ref()
            .map(|c| c.http_only && !c.value.is_empty() && !c.is_deletion())
            .unwrap_or(false),
        || {
            format!(
                "the login redirect must set an HttpOnly {CSRF} cookie: {}",
                r.short()
            )
        },
    );
    st.check(session_cookies_set(&[hop_of(&r)]).is_empty(), || {
        "no session cookie before login".into()
    });

    // 2. Log in at the IdP; land on the original URL.
    let (resp, hops) = st.login(&mut b, &st.url("/headers?probe=1"), "john", "john");
    st.check(
        resp.status == 200 && resp.url == st.url("/headers?probe=1"),
        || {
            format!(
                "login did not return to /headers?probe=1:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    let cb = find_hop(&hops, "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("no callback hop:\n{}", format_hops(&hops))));
    st.check(cb.status == 302, || format!("callback status: {cb}"));
    let cb_loc = Url::parse(&cb.url)
        .unwrap()
        .join(cb.location.as_deref().unwrap_or(""))
        .unwrap();
    st.check(cb_loc.as_str() == st.url("/headers?probe=1"), || {
        format!("callback must redirect to the original URL: {cb}")
    });
    let sess = session_cookies_set(std::slice::from_ref(cb));
    st.check(sess.len() == 1 && sess[0].name == SESSION, || {
        format!("callback must set exactly `{SESSION}`: {cb}")
    });
    st.check(sess[0].http_only, || {
        format!("session cookie must be HttpOnly: {}", sess[0].raw)
    });
    st.check(sess[0].path.as_deref() == Some("/"), || {
        format!("session cookie must have Path=/: {}", sess[0].raw)
    });
    let csrf_cleared = cb
        .set_cookies
        .iter()
        .map(|s| SetCookie::parse(s))
        .any(|c| c.name == CSRF && c.is_deletion());
    st.check(csrf_cleared, || format!("callback must clear {CSRF}: {cb}"));
    st.check(b.cookie(&st.origin(), CSRF).is_none(), || {
        "CSRF cookie still in jar after login".into()
    });

    // 3. The app sees the identity.
    let h = resp.json();
    let expect = [
        ("x-forwarded-user", "john@example.com"),
        ("x-forwarded-email", "john@example.com"),
        ("x-forwarded-preferred-username", "john"),
        ("x-forwarded-groups", "developers"),
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-preferred-username", "john"),
        ("x-auth-request-groups", "developers"),
    ];
    for (k, v) in expect {
        st.check(
            header_str(&h, k).as_deref() == Some(v) && raw_count(&h, k) == 1,
            || {
                format!(
                    "app saw {k} = {:?} ({} times), want {v:?}; headers: {h}",
                    header_str(&h, k),
                    raw_count(&h, k)
                )
            },
        );
    }
    let at = header_str(&h, "x-forwarded-access-token").unwrap_or_default();
    st.check(at.len() >= 16, || {
        format!("x-forwarded-access-token missing/short: {at:?}")
    });
    let authz_h = header_str(&h, "authorization").unwrap_or_default();
    let idt = authz_h.strip_prefix("Bearer ").unwrap_or_else(|| {
        st.fail(&format!(
            "Authorization is {authz_h:?}, want Bearer <id_token>"
        ))
    });
    let p = jwt::payload(idt)
        .unwrap_or_else(|| st.fail(&format!("Authorization bearer is not a JWT: {idt:?}")));
    st.check(
        p["email"] == "john@example.com" && p["sub"] == "john" && p["iss"] == json!(st.issuer()),
        || format!("id_token payload: {p}"),
    );
    st.check(
        p["aud"] == json!(st.client_id)
            || p["aud"]
                .as_array()
                .map(|a| a.contains(&json!(st.client_id)))
                .unwrap_or(false),
        || format!("id_token aud: {p}"),
    );
    // The session cookie never reaches the app.
    let ck = header_str(&h, "cookie").unwrap_or_default();
    st.check(!ck.contains(SESSION), || {
        format!("the app received our cookie: {ck:?}")
    });

    // 4. Another cookie passes through, ours is stripped.
    b.set(&st.origin(), "other", "1");
    let r = b.get(&st.url("/headers"));
    st.check(r.status == 200, || {
        format!("authenticated GET /headers: {}", r.short())
    });
    let h = r.json();
    st.check(
        header_str(&h, "cookie").as_deref() == Some("other=1"),
        || {
            format!(
                "the app must see exactly `other=1` as Cookie, saw {:?}",
                header_str(&h, "cookie")
            )
        },
    );
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );

    // 5. The demo app's HTML greets the user.
    let r = b.get(&st.url("/"));
    st.check(
        r.status == 200 && r.text().contains("Hello, john@example.com"),
        || format!("GET /: {}", r.short()),
    );
}

/// A12: the callback itself rejects forged or replayed requests.
#[test]
fn a12_callback_rejects_forged_requests() {
    let st = Stack::builder().app(App::Recorder).start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    // Callback without any login in progress.
    let r = b.get(&st.url("/oauth2/callback?code=abc&state=def"));
    st.check(
        (400..500).contains(&r.status) && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("callback without CSRF cookie: {}", r.short()),
    );
    // Start a login, then come back with the real code but another state.
    let r = b.get(&st.url("/"));
    assert_login_redirect(&st, &r, &authz, "GET /");
    // A clone of the browser (same CSRF cookie) completes the login and uses the code.
    let mut bb = b.clone();
    let (_, hops) = st.login(&mut bb, r.location().unwrap().as_str(), "john", "john");
    // That login reached the app once; nothing below may.
    let app_requests = st.recorder.as_ref().unwrap().count();
    let cb = find_hop(&hops, "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("no callback:\n{}", format_hops(&hops))));
    let cb_url = Url::parse(&cb.url).unwrap();
    // `b` still holds the CSRF cookie but the clone already used the code: replay it.
    let r = b.get(cb_url.as_str());
    st.check(
        r.status >= 400 && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("replayed authorization code must fail: {}", r.short()),
    );
    // Error page must be HTML.
    st.check(
        r.header("content-type").unwrap_or("").contains("text/html"),
        || format!("callback error page is not HTML: {}", r.short()),
    );
    // An error from the OP (user denied) is shown, no session.
    let mut d = Browser::new();
    let r = d.get(&st.url("/"));
    let state = r
        .location()
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let enc: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    let r = d.get(&st.url(&format!("/oauth2/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={enc}")));
    st.check(
        r.status >= 400 && r.status < 500 && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("callback with error=access_denied: {}", r.short()),
    );
    st.check(!r.text().contains("<script>alert(1)</script>"), || {
        format!("error_description reflected unescaped: {}", r.short())
    });
    st.check(
        st.recorder.as_ref().unwrap().count() == app_requests,
        || "no forged callback may have reached the app".into(),
    );
}

/// B3: interleaved logins in two browsers each use their own state, nonce and PKCE verifier
/// (the OP checks the verifier and the filter the nonce), and a callback carrying another
/// browser's state is refused.
#[test]
fn b03_concurrent_logins_keep_their_own_pkce_and_nonce() {
    let op = BadOp::start(crate::support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    // Two browsers start logins; they complete in reverse order.
    let mut b1 = Browser::new();
    let mut b2 = Browser::new();
    let r1 = b1.get(&st.url("/one"));
    let r2 = b2.get(&st.url("/two"));
    let a1 = b1.get(r1.location().unwrap().as_str());
    let a2 = b2.get(r2.location().unwrap().as_str());
    let (f2, h2) = b2.follow_get(a2.location().unwrap().as_str());
    let (f1, h1) = b1.follow_get(a1.location().unwrap().as_str());
    st.check(f2.status == 200 && f2.url == st.url("/two"), || {
        format!("browser 2:\n{}\n{}", format_hops(&h2), f2.short())
    });
    st.check(f1.status == 200 && f1.url == st.url("/one"), || {
        format!("browser 1:\n{}\n{}", format_hops(&h1), f1.short())
    });
    let v = op.violations();
    st.check(v.is_empty(), || format!("protocol violations: {v:?}"));
    // Browser 1's callback URL replayed in browser 2 (CSRF cookie of another login) fails.
    let mut b3 = Browser::new();
    let r3 = b3.get(&st.url("/three"));
    let a3 = b3.get(r3.location().unwrap().as_str());
    let cb3 = a3.location().unwrap();
    let mut b4 = Browser::new();
    let _ = b4.get(&st.url("/four")); // b4 has its own CSRF cookie
    let r = b4.get(cb3.as_str());
    st.check(
        (400..500).contains(&r.status) && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || {
            format!(
                "a callback carrying another browser's state must be refused: {}",
                r.short()
            )
        },
    );
}

/// A9: email_domains restricts who gets in.
#[test]
fn a09_email_domains() {
    let st = Stack::builder()
        .plugin("email_domains", json!(["example.com"]))
        .start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    st.check(
        header_str(&resp.json(), "x-forwarded-email").as_deref() == Some("john@example.com"),
        || resp.short(),
    );

    let mut jb = Browser::new();
    let (resp, hops) = st.login(&mut jb, &st.url("/headers"), "jane", "jane");
    st.check(
        resp.status == 403 && resp.url.contains("/oauth2/callback"),
        || {
            format!(
                "jane@other.org must get 403 at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    st.check(
        resp.header("content-type")
            .unwrap_or("")
            .contains("text/html"),
        || format!("error page must be HTML: {}", resp.short()),
    );
    st.check(
        session_cookies_set(&hops).is_empty()
            && session_cookies_in_jar(&jb, &st.origin()).is_empty(),
        || format!("jane got a session:\n{}", format_hops(&hops)),
    );
    let r = jb.get(&st.url("/headers"));
    assert_login_redirect(&st, &r, &authz, "jane's next request");

    // Unverified email is refused too (insecure_oidc_allow_unverified_email defaults to false).
    let mut ub = Browser::new();
    let (resp, hops) = st.login(&mut ub, &st.url("/"), "unverified", "unverified");
    st.check(
        resp.status >= 400 && resp.status < 600 && session_cookies_set(&hops).is_empty(),
        || {
            format!(
                "unverified@example.com must be refused:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
}

/// A8: the client_secret_post client.
#[test]
fn a08_client_secret_post() {
    let mut st = Stack::builder()
        .plugin(
            "client_id",
            json!(format!("{}-post", crate::support::stack::CLIENT_ID)),
        )
        .plugin("token_endpoint_auth_method", json!("client_secret_post"))
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );
    let idt = header_str(&h, "authorization").unwrap_or_default();
    let p = jwt::payload(idt.trim_start_matches("Bearer ")).unwrap_or(Value::Null);
    st.check(
        p["aud"] == json!(format!("{}-post", crate::support::stack::CLIENT_ID)),
        || format!("id_token aud: {p}"),
    );

    // Control: the same client with client_secret_basic is refused by the IdP -> error page.
    st.plugin_config["token_endpoint_auth_method"] = json!("client_secret_basic");
    st.restart_envoy();
    let mut b = Browser::new();
    let (resp, hops) = st.login(&mut b, &st.url("/"), "john", "john");
    st.check(
        resp.status >= 400 && resp.url.contains("/oauth2/callback"),
        || {
            format!(
                "-post client using client_secret_basic must fail at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    st.check(
        session_cookies_set(&hops).is_empty()
            && session_cookies_in_jar(&b, &st.origin()).is_empty(),
        || {
            format!(
                "failed token exchange set a session:\n{}",
                format_hops(&hops)
            )
        },
    );
}

/// A key pair for `private_key_jwt`: the private key as PKCS#8 PEM and the public one as
/// the IdP's client JWK Set.
fn client_key_pair(kid: &str) -> (String, String) {
    use base64::Engine;
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be()),
    }]});
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string();
    (pem, jwks.to_string())
}

/// A18: the private_key_jwt client: no secret, a signed client assertion the real IdP checks.
#[test]
fn a18_private_key_jwt() {
    let (pem, jwks) = client_key_pair("client-1");
    let mut st = Stack::builder()
        .idp_env("IDP_CLIENT_JWKS", &jwks)
        .plugin(
            "client_id",
            json!(format!("{}-jwt", crate::support::stack::CLIENT_ID)),
        )
        .plugin("client_secret_env", Value::Null)
        .plugin("client_secret", Value::Null)
        .plugin("token_endpoint_auth_method", json!("private_key_jwt"))
        .plugin("client_private_key", json!(pem))
        .plugin("client_private_key_id", json!("client-1"))
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );

    // Control: a key the IdP does not know gets no session.
    let (other, _) = client_key_pair("client-1");
    st.plugin_config["client_private_key"] = json!(other);
    st.restart_envoy();
    let mut b = Browser::new();
    let (resp, hops) = st.login(&mut b, &st.url("/"), "john", "john");
    st.check(
        resp.status >= 400
            && resp.url.contains("/oauth2/callback")
            && session_cookies_set(&hops).is_empty(),
        || {
            format!(
                "an unknown client key must fail at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
}

/// A14: ES256-signed ID tokens from the real IdP are accepted.
#[test]
fn a14_es256_id_tokens() {
    let st = Stack::builder()
        .idp_env("IDP_ID_TOKEN_ALG", "ES256")
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    let idt = header_str(&h, "authorization").unwrap_or_default();
    let hdr = jwt::header(idt.trim_start_matches("Bearer ")).unwrap_or(Value::Null);
    st.check(hdr["alg"] == "ES256", || format!("id_token header: {hdr}"));
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );
}
