//! `wasm-oauth2-proxy convert` end to end: oauth2-proxy's documented keycloak-oidc setup
//! (docs/docs/configuration/providers/keycloak_oidc.md), deployed as the seeds deploy it
//! (a sidecar in front of the app, `--upstream`, `--http-address`, `--pass-access-token` for an
//! app that reads X-Forwarded-Access-Token: /work/shared/seeds/keycloak-oauth2-proxy-demo.txt),
//! converted with `--envoy` and pointed at the demo IdP (idp/server.js, whose role claims are
//! Keycloak's shape) in place of Keycloak: the Envoy config the tool wrote logs users in, and
//! the role rule the flags ask for is the one that holds.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::http::{raw_request, Browser};
use crate::support::stack::{App, Stack, CLIENT_ID};

#[test]
fn c01_keycloak_oidc_docs_setup_converted_logs_in_through_the_generated_envoy() {
    let mut st = Stack::builder().app(App::Recorder).start_no_envoy();
    let out = st.dir.path.join("converted");
    let wasm = std::fs::canonicalize(&st.env.wasm).unwrap_or(st.env.wasm.clone());
    // The documentation's flags with its placeholders filled in for the demo IdP; the realm
    // role `auditor` and the client role `viewer` are idp/server.js's (jane, alice).
    let flags = [
        "--provider=keycloak-oidc".to_string(),
        format!("--client-id={CLIENT_ID}"),
        format!("--client-secret={}", st.client_secret),
        format!("--redirect-url={}", st.redirect_url()),
        format!("--oidc-issuer-url={}", st.issuer()),
        "--email-domain=example.com".into(),
        "--allowed-role=auditor".into(),
        format!("--allowed-role={CLIENT_ID}:viewer"),
        "--allowed-group=/admins".into(),
        "--code-challenge-method=S256".into(),
        format!("--cookie-secret={}", st.cookie_secret),
        // The seeds' sidecar: the app behind it, where it listens, the token for the app.
        format!("--upstream=http://127.0.0.1:{}", st.app_port),
        format!("--http-address=127.0.0.1:{}", st.listen_port),
        "--pass-access-token".into(),
        // The test speaks plain HTTP.
        "--cookie-secure=false".into(),
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_wasm-oauth2-proxy"))
        .args(["convert", "--envoy", "--out"])
        .arg(&out)
        .arg("--wasm-path")
        .arg(&wasm)
        .args(["--envoy-admin-port", &st.admin_port.to_string()])
        .args(["--config", "-", "--"])
        .args(&flags)
        .output()
        .expect("run wasm-oauth2-proxy convert");
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    st.check(o.status.success(), || {
        format!(
            "convert failed:\n{report}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("config.json")).expect("config.json"),
    )
    .expect("config.json is JSON");
    st.check(config.get("client_secret").is_none(), || {
        "the client secret is inline in config.json".into()
    });
    st.plugin_config = config;
    std::fs::copy(out.join("envoy.yaml"), &st.envoy_yaml).expect("envoy.yaml");
    if let Err(e) = st.start_envoy() {
        st.fail(&format!(
            "the generated envoy.yaml did not start: {e}\n{report}"
        ));
    }

    // alice has the client role viewer: she gets in, and the app gets her access token.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/items/123", "alice");
    let rec = st.recorder.as_ref().expect("recorder");
    let token = rec
        .requests()
        .iter()
        .rev()
        .find_map(|r| r.header("x-forwarded-access-token").map(String::from));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        st.fail(&format!(
            "no X-Forwarded-Access-Token at the app:\n{}",
            rec.summary()
        ))
    };
    // It is alice's own token: the IdP's userinfo answers for her with it.
    let me = raw_request(
        "GET",
        &format!("{}/me", st.issuer()),
        &[("Authorization".to_string(), format!("Bearer {token}"))],
        None,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| st.fail(&format!("userinfo: {e}")));
    st.check(
        me.status == 200 && me.text().contains("alice@example.com"),
        || {
            format!(
                "userinfo with the passed token: {} {}",
                me.status,
                me.text()
            )
        },
    );

    // bob has no role and is not in /admins: refused, as keycloak-oidc's rule says.
    let mut b = Browser::new();
    let (r, _) = st.login(&mut b, &st.url("/"), "bob", "bob");
    st.check(r.status == 403, || format!("bob: {}", r.short()));
}
