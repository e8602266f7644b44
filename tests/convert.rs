//! `wasm-oauth2-proxy convert` and `check-config`, run as the installed binary would be: the
//! seeds' deployments convert without silent loss, oauth2-proxy's documented examples for each
//! supported provider convert as their documentation means them, and every generated resource
//! loads (the WasmPlugin against Istio's CRD, the configuration with the filter's own parser).
//! Expectations cite their source: the fixture's header, or the oauth2-proxy file named.

#[allow(dead_code)]
mod openapi;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_wasm-oauth2-proxy");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/convert")
        .join(name)
        .display()
        .to_string()
}

struct Run {
    code: i32,
    report: String,
    out: PathBuf,
}

impl Run {
    fn config(&self) -> Value {
        let text = std::fs::read_to_string(self.out.join("config.json")).expect("config.json");
        serde_json::from_str(&text).expect("config.json is JSON")
    }
    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.out.join(rel)).ok()
    }
    fn docs(&self, rel: &str) -> Vec<Value> {
        openapi::yaml_docs(&self.file(rel).unwrap_or_default(), rel)
    }
    /// The report line about `from` with verdict `verdict`.
    fn line(&self, verdict: &str, from: &str) -> Option<&str> {
        self.report.lines().find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(verdict) && l.contains(from)
        })
    }
    fn has(&self, verdict: &str, from: &str) -> bool {
        self.line(verdict, from).is_some()
    }
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wop-convert-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn convert(tag: &str, args: &[&str]) -> Run {
    let out = temp(tag);
    let o = Command::new(BIN)
        .arg("convert")
        .args(["--out", out.to_str().unwrap_or_default(), "--envoy"])
        .args(args)
        .env_remove("OAUTH2_PROXY_CLIENT_ID")
        .output()
        .expect("run wasm-oauth2-proxy");
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    eprintln!("{report}{}", String::from_utf8_lossy(&o.stderr));
    Run {
        code: o.status.code().unwrap_or(-1),
        report,
        out,
    }
}

/// A `.flags` fixture: one oauth2-proxy flag a line, `#` comments.
fn flags(name: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(name))
        .expect("fixture")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn convert_flags(tag: &str, name: &str) -> Run {
    let f = flags(name);
    let mut args = vec!["--config", "-", "--"];
    args.extend(f.iter().map(String::as_str));
    convert(tag, &args)
}

fn check(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN)
        .arg("check-config")
        .args(args)
        .env_remove("OAUTH2_CLIENT_SECRET")
        .env_remove("OAUTH2_COOKIE_SECRET")
        .output()
        .expect("run check-config");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
    )
}

/// Every generated resource holds: the WasmPlugin per Istio's CRD, the configuration per the
/// filter's own parser (`check-config`), and the two carry the same configuration.
fn resources_hold(run: &Run) {
    let crd = openapi::Crd::from_yaml(
        &std::fs::read_to_string(root().join("tests/fixtures/istio/wasmplugin-crd.yaml"))
            .expect("CRD"),
    );
    let wp = &run.docs("istio/wasmplugin.yaml")[0];
    let errs = crd.validate(wp);
    assert!(errs.is_empty(), "WasmPlugin per the CRD: {errs:?}");
    assert_eq!(wp["spec"]["pluginConfig"], run.config());
    assert_eq!(wp["spec"]["phase"], "AUTHN");
    assert_eq!(wp["spec"]["failStrategy"], "FAIL_CLOSE");
    let config = run.out.join("config.json");
    let (code, out) = check(&[config.to_str().unwrap_or_default()]);
    assert_eq!(code, 0, "check-config on the converted config: {out}");
    let (code, out) = check(&[run
        .out
        .join("istio/wasmplugin.yaml")
        .to_str()
        .unwrap_or_default()]);
    assert_eq!(code, 0, "check-config on the WasmPlugin: {out}");
}

/// Every option the fixture sets shows up in the report under the name it was written with.
fn nothing_silent(run: &Run, names: &[&str]) {
    for n in names {
        assert!(
            run.report
                .lines()
                .any(|l| l.split_whitespace().nth(1).is_some_and(|f| f == *n)
                    || l.contains(&format!(" {n} ("))),
            "{n} is not in the report"
        );
    }
}

#[test]
fn sidecar_pattern_seed_converts_without_silent_loss() {
    // Fixture header: /work/shared/seeds/oauth2-proxy-sidecar-pattern.txt.
    let run = convert("sidecar", &["--config", &fixture("sidecar-pattern.yaml")]);
    assert_eq!(run.code, 0, "{}", run.report);
    nothing_silent(
        &run,
        &[
            "OAUTH2_PROXY_REDIRECT_URL",
            "OAUTH2_PROXY_UPSTREAMS",
            "OAUTH2_PROXY_CLIENT_ID",
            "OAUTH2_PROXY_CLIENT_SECRET",
            "OAUTH2_PROXY_COOKIE_SECRET",
            "provider",
            "email_domains",
            "cookie_secure",
            "cookie_samesite",
            "set_xauthrequest",
            "custom_templates_dir",
            "http_address",
        ],
    );
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["provider"], "github");
    assert_eq!(
        c["redirect_url"],
        "https://app1.example.com/oauth2/callback"
    );
    assert_eq!(c["email_domains"], json!(["example.com"]));
    assert_eq!(c["set_xauthrequest"], true);
    assert_eq!(c["idp_cluster"], "outbound|443||github.com");
    assert_eq!(
        c["idp_clusters"],
        json!({"api.github.com": "outbound|443||api.github.com"})
    );
    assert!(c.get("client_secret").is_none() && c.get("cookie_secret").is_none());
    assert!(run.has("dropped", "OAUTH2_PROXY_UPSTREAMS"));
    assert!(run.has("unsupported", "custom_templates_dir"));
    // The seed keeps the secrets in Secret oauth2-proxy-secret: the sidecar reads them there.
    let patch = run.file("istio/deployment-patch.yaml").unwrap_or_default();
    assert!(
        patch.contains("oauth2-proxy-secret") && patch.contains("cookie-secret"),
        "{patch}"
    );
    assert!(run.file("istio/secret.yaml").is_none(), "no value to hold");
    let wp = &run.docs("istio/wasmplugin.yaml")[0];
    assert_eq!(
        wp["spec"]["selector"]["matchLabels"],
        json!({"app": "app1"})
    );
    let envoy = run.file("envoy.yaml").unwrap_or_default();
    assert!(envoy.contains("port_value: 8080") && envoy.contains("port_value: 4180"));
    // client_id is a placeholder until the Secret's value is filled in.
    assert!(run.has("note", "OAUTH2_PROXY_CLIENT_ID"));
}

#[test]
fn keycloak_demo_seed_converts_without_silent_loss() {
    // Fixture header: /work/shared/seeds/keycloak-oauth2-proxy-demo.txt.
    let run = convert(
        "keycloak-demo",
        &["--config", &fixture("keycloak-demo.yaml")],
    );
    assert_eq!(run.code, 0, "{}", run.report);
    let fixture_text = std::fs::read_to_string(fixture("keycloak-demo.yaml")).expect("fixture");
    let names: Vec<&str> = fixture_text
        .lines()
        .filter_map(|l| l.trim().split(':').next())
        .filter(|n| n.starts_with("OAUTH2_PROXY_"))
        .collect();
    assert_eq!(names.len(), 16);
    nothing_silent(&run, &names);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(
        c["pass_access_token"], true,
        "the seed's app reads X-Forwarded-Access-Token"
    );
    assert_eq!(c["skip_oidc_discovery"], true);
    assert_eq!(c["cookie_secure"], false);
    // keycloak-http is the in-cluster Service: Istio's cluster is its full name.
    assert_eq!(
        c["idp_clusters"],
        json!({"keycloak-http": "outbound|80||keycloak-http.oauth2-demo.svc.cluster.local"})
    );
    assert_eq!(c["idp_cluster"], "outbound|8080||keycloak.127.0.0.1.nip.io");
    assert!(
        run.file("istio/idp.yaml").is_none(),
        "no host outside the mesh is called"
    );
    let secret = &run.docs("istio/secret.yaml")[0];
    assert_eq!(secret["metadata"]["namespace"], "oauth2-demo");
    assert_eq!(
        secret["stringData"]["client-secret"],
        "fixture-client-secret"
    );
    let envoy = run.file("envoy.yaml").unwrap_or_default();
    assert!(envoy.contains("port_value: 8155") && envoy.contains("port_value: 8809"));
}

#[test]
fn keycloak_oidc_docs_example() {
    // docs/docs/configuration/providers/keycloak_oidc.md: realm and client roles through
    // --allowed-role (`<client id>:<client role name>`), groups through --allowed-group.
    let run = convert_flags("keycloak", "docs-keycloak-oidc.flags");
    assert_eq!(run.code, 0, "{}", run.report);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["provider"], "keycloak-oidc");
    assert_eq!(c["allowed_roles"], json!(["admin", "app:viewer"]));
    assert_eq!(c["allowed_groups"], json!(["/admins"]));
    assert_eq!(c["idp_cluster"], "outbound|443||keycloak.example.com");
    assert!(run.has("mapped", "--code-challenge-method"));
    let idp = run.docs("istio/idp.yaml");
    assert_eq!(idp[0]["kind"], "ServiceEntry");
    assert_eq!(
        idp[1]["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"],
        "keycloak.example.com"
    );
    let secret = &run.docs("istio/secret.yaml")[0];
    assert_eq!(secret["stringData"]["client-secret"], "app-secret");
}

#[test]
fn oidc_okta_docs_example() {
    // docs/docs/configuration/providers/openid_connect.md (Okta): its cookie_secret "ZZZZZ" is
    // a placeholder that oauth2-proxy refuses too (16, 24 or 32 bytes, pkg/validation/cookie.go),
    // so the conversion ends with the filter's own error on it.
    let run = convert("okta", &["--config", &fixture("docs-oidc-okta.cfg")]);
    assert_eq!(run.code, 1, "{}", run.report);
    assert!(run.has("REFUSED", "cookie_secret"), "{}", run.report);
    let c = run.config();
    assert_eq!(
        c["oidc_issuer_url"],
        "https://corp.okta.com/oauth2/abCd1234"
    );
    assert_eq!(c["skip_provider_button"], true);
    assert_eq!(c["pass_access_token"], true);
    assert!(run.has("dropped", "upstreams"));
}

#[test]
fn github_docs_example_with_enterprise_urls() {
    // docs/docs/configuration/providers/github.md: org and teams, GitHub Enterprise URLs.
    let run = convert_flags("github", "docs-github.flags");
    assert_eq!(run.code, 0, "{}", run.report);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["github_org"], "acme");
    assert_eq!(c["github_team"], "platform,security");
    assert_eq!(c["validate_url"], "https://github.example.com/api/v3");
    assert_eq!(c["idp_cluster"], "outbound|443||github.example.com");
    assert!(
        c.get("idp_clusters").is_none(),
        "the API is on the same host"
    );
}

#[test]
fn github_teams_without_an_org_are_groups() {
    // github.md: "leave out the flag --github-org and use --github-team alone (format
    // <org>:<slug>)"; the filter's GitHub groups are `org:team` (README, Providers).
    let run = convert(
        "github-teams",
        &[
            "--config",
            "-",
            "--",
            "--provider=github",
            "--client-id=x",
            "--client-secret=y",
            "--cookie-secret=0123456789abcdef0123456789abcdef",
            "--email-domain=*",
            "--github-team=octo:team1,acme:ops",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.report);
    assert_eq!(
        run.config()["allowed_groups"],
        json!(["octo:team1", "acme:ops"])
    );
}

#[test]
fn google_docs_example_and_its_groups() {
    // docs/docs/configuration/providers/google.md: google is the default provider.
    let run = convert_flags("google", "docs-google.flags");
    assert_eq!(run.code, 0, "{}", run.report);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["provider"], "google");
    assert_eq!(c["oidc_issuer_url"], "https://accounts.google.com");
    assert_eq!(c["cookie_refresh"], "1h");
    assert_eq!(
        c["idp_clusters"]["oauth2.googleapis.com"],
        "outbound|443||oauth2.googleapis.com"
    );
    // Its group restriction (--google-group with --google-admin-email) cannot be carried over.
    let mut f = flags("docs-google.flags");
    f.extend([
        "--google-group=admins@yourcompany.com".into(),
        "--google-admin-email=admin@yourcompany.com".into(),
    ]);
    let mut args = vec!["--config", "-", "--"];
    args.extend(f.iter().map(String::as_str));
    let run = convert("google-groups", &args);
    assert_eq!(run.code, 1, "{}", run.report);
    assert!(run.has("REFUSED", "--google-group"));
    assert!(run.has("dropped", "--google-admin-email"));
}

#[test]
fn gitlab_docs_example() {
    // docs/docs/configuration/providers/gitlab.md; gitlab.com is the default issuer.
    let run = convert_flags("gitlab", "docs-gitlab.flags");
    assert_eq!(run.code, 0, "{}", run.report);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["gitlab_group"], json!(["mygroup", "myothergroup"]));
    assert_eq!(c["oidc_issuer_url"], "https://gitlab.com");
}

#[test]
fn entra_id_multi_tenant_docs_example() {
    // docs/docs/configuration/providers/ms_entra_id.md, multi-tenant example: the issuer check
    // it turns off is the filter's tenant check (entra_id_allowed_tenants).
    let run = convert(
        "entra",
        &["--config", &fixture("docs-entra-multi-tenant.cfg")],
    );
    assert_eq!(run.code, 0, "{}", run.report);
    resources_hold(&run);
    let c = run.config();
    assert_eq!(c["provider"], "entra-id");
    assert_eq!(c["email_domains"], json!(["*"]));
    assert_eq!(
        c["entra_id_allowed_tenants"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(run.has("dropped", "insecure_oidc_skip_issuer_verification"));
}

#[test]
fn alpha_config_headers_and_provider() {
    // alpha_config.md: the provider and headers come from the alpha file, the rest from flags.
    let run = convert(
        "alpha",
        &[
            "--config",
            &fixture("alpha.yaml"),
            "--",
            "--cookie-secret=0123456789abcdef0123456789abcdef",
            "--email-domain=*",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.report);
    let c = run.config();
    assert_eq!(c["provider"], "keycloak-oidc");
    assert_eq!(c["allowed_roles"], json!(["admin"]));
    assert_eq!(c["pass_access_token"], true);
    assert_eq!(c["set_xauthrequest"], true);
    assert_eq!(c["pass_user_headers"], true);
    assert!(run.has("unsupported", "X-Proxy-Secret"));
}

#[test]
fn flags_lists_booleans_durations_and_precedence() {
    // pflag: a list flag repeats and takes commas; a bool flag alone is true; Go durations.
    // load.go: flags win over the environment, which wins over the config file.
    let cfg = temp("cfg").join("oauth2-proxy.cfg");
    std::fs::write(
        &cfg,
        "email_domains = [\"cfg.example\"]\ncookie_expire = \"1.5h\"\n",
    )
    .expect("cfg");
    let run = convert(
        "flags",
        &[
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--",
            "--provider=oidc",
            "--oidc-issuer-url=https://idp.example.com",
            "--client-id=a",
            "--client-secret=b",
            "--cookie-secret=0123456789abcdef0123456789abcdef",
            "--email-domain=a.example",
            "--email-domain",
            "b.example,c.example",
            "--skip-provider-button",
            "--cookie-secure=false",
            "--reverse-proxy",
            "--cookie-refresh=30m",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.report);
    let c = run.config();
    assert_eq!(
        c["email_domains"],
        json!(["a.example", "b.example", "c.example"])
    );
    assert_eq!(c["skip_provider_button"], true);
    assert_eq!(c["cookie_secure"], false);
    assert_eq!(c["cookie_expire"], "90m");
    assert_eq!(c["cookie_refresh"], "30m");
    assert!(
        run.has("note", "email_domains (oauth2-proxy.cfg)"),
        "the overridden value is reported"
    );
}

#[test]
fn unknown_options_and_security_refusals_are_reported() {
    let run = convert(
        "refusals",
        &[
            "--config",
            "-",
            "--",
            "--provider=oidc",
            "--oidc-issuer-url=https://idp.example.com",
            "--client-id=a",
            "--client-secret=b",
            "--cookie-secret=0123456789abcdef0123456789abcdef",
            "--email-domain=*",
            "--htpasswd-file=/etc/htpasswd",
            "--authenticated-emails-file=/nonexistent",
            "--no-such-flag=1",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.report);
    assert!(run.has("REFUSED", "--htpasswd-file"));
    assert!(run.has("REFUSED", "--authenticated-emails-file"));
    assert!(run.has("unsupported", "--no-such-flag"));
}

#[test]
fn release_pin_is_the_wasmplugin_pin() {
    // The CLI's WasmPlugin names the same image as wasmplugin/wasmplugin.yaml (both `just pin`).
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("src/bin/wasm-oauth2-proxy/release.json"))
            .expect("release.json"),
    )
    .expect("JSON");
    let wp = openapi::yaml_docs(
        &std::fs::read_to_string(root().join("wasmplugin/wasmplugin.yaml")).expect("wasmplugin"),
        "wasmplugin.yaml",
    );
    assert_eq!(pinned["sha256"], wp[0]["spec"]["sha256"]);
    let run = convert_flags("pin", "docs-keycloak-oidc.flags");
    assert_eq!(
        run.docs("istio/wasmplugin.yaml")[0]["spec"]["sha256"],
        pinned["sha256"]
    );
}

fn write_json(tag: &str, v: &Value) -> String {
    let p = temp(tag).join("config.json");
    std::fs::write(&p, v.to_string()).expect("write");
    p.display().to_string()
}

#[test]
fn check_config_valid_lists_clusters() {
    let p = write_json(
        "check-ok",
        &json!({
        "provider": "github", "idp_cluster": "outbound|443||github.com",
        "idp_clusters": {"api.github.com": "outbound|443||api.github.com"},
        "client_id": "x", "client_secret_env": "OAUTH2_CLIENT_SECRET",
        "cookie_secret_env": "OAUTH2_COOKIE_SECRET", "email_domains": ["*"]}),
    );
    let (code, out) = check(&[&p]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("github.com  outbound|443||github.com  (idp_cluster)"),
        "{out}"
    );
    assert!(
        out.contains("api.github.com  outbound|443||api.github.com  (idp_clusters)"),
        "{out}"
    );
    assert!(
        out.contains("env: OAUTH2_CLIENT_SECRET is not set here"),
        "{out}"
    );
    let (code, out) = check(&["--strict-env", &p]);
    assert_eq!(code, 1, "unset secrets are errors with --strict-env: {out}");
    assert!(out.contains("error: client_secret_env:"), "{out}");
}

#[test]
fn check_config_invalid_names_the_key_and_json_output() {
    let p = write_json(
        "check-bad",
        &json!({
        "oidc_issuer_url": "https://idp.example.com", "idp_cluster": "idp", "client_id": "x",
        "client_secret": "s", "cookie_secret": "short", "email_domains": ["*"]}),
    );
    let (code, out) = check(&[&p]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("error: cookie_secret: must be 16, 24 or 32 bytes"),
        "{out}"
    );
    let (code, out) = check(&["--json", &p]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["key"], "cookie_secret");
    assert_eq!(v["clusters"], json!([]));
    let ok = write_json(
        "check-json-ok",
        &json!({
        "oidc_issuer_url": "https://idp.example.com", "idp_cluster": "idp", "client_id": "x",
        "client_secret": "s", "cookie_secret": "0123456789abcdef", "email_domains": ["*"]}),
    );
    let (code, out) = check(&["--json", &ok]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v["clusters"],
        json!([{"host": "idp.example.com", "cluster": "idp"}])
    );
}

#[test]
fn check_config_usage_errors_exit_2() {
    assert_eq!(check(&["/nonexistent/config.json"]).0, 2);
    assert_eq!(check(&[]).0, 2);
    let p = temp("not-json").join("bad.json");
    std::fs::write(&p, "{ not json").expect("write");
    let (code, out) = check(&[p.to_str().unwrap_or_default()]);
    assert_eq!(
        code, 1,
        "a JSON file that does not parse is the filter's first error: {out}"
    );
    assert!(out.contains("error: (document)"), "{out}");
    let _ = Path::new(&p);
}
