//! Authorization parity, natively: one identity (its facts) and one rule set (oauth2-proxy's
//! options), driven through the gate on every credential path — login (with the provider's
//! API answered from the facts, as the provider's documentation says it answers), refresh,
//! bearer token, `/oauth2/auth`, WebSocket upgrade and gRPC — and [`reference`], the rules as
//! oauth2-proxy's documentation and source state them, written here apart from the filter's
//! code (see the README's parity table for each rule's source).
//!
//! Used by `tests/parity.rs` (a table of rows, each citing its source) and by the property
//! target in `tests/properties.rs` (random facts × random rules).

use serde_json::{json, Map, Value};

use super::jwt::{self, Key};
use wasm_oauth2_proxy::cache::Cache;
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::gate::{self, Context, Decision, Env, Pending, Request, Step};
use wasm_oauth2_proxy::issuer::{Issuers, Metadata};
use wasm_oauth2_proxy::metrics::Metrics;
use wasm_oauth2_proxy::oidc::Discovery;
use wasm_oauth2_proxy::refresh::{self, Plan};
use wasm_oauth2_proxy::session::{self, Session};

pub const NOW: u64 = 1_700_000_000;
pub const CLIENT: &str = "gate-client";
const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef";
const GITHUB_API: &str = "https://api.github.com";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idp {
    Oidc,
    Keycloak,
    Google,
    GitLab,
    Entra,
    GitHub,
}

impl Idp {
    pub const ALL: [Idp; 6] = [
        Idp::Oidc,
        Idp::Keycloak,
        Idp::Google,
        Idp::GitLab,
        Idp::Entra,
        Idp::GitHub,
    ];

    fn name(self) -> &'static str {
        match self {
            Idp::Oidc => "oidc",
            Idp::Keycloak => "keycloak-oidc",
            Idp::Google => "google",
            Idp::GitLab => "gitlab",
            Idp::Entra => "ms-entra-id",
            Idp::GitHub => "github",
        }
    }

    fn issuer(self) -> &'static str {
        match self {
            Idp::Oidc | Idp::Keycloak => "https://idp.example.com",
            Idp::Google => "https://accounts.google.com",
            Idp::GitLab => "https://gitlab.example.com",
            Idp::Entra => "https://login.microsoftonline.com/common/v2.0",
            Idp::GitHub => "https://github.com",
        }
    }
}

/// The user's view of `github_repo` (`GET /repos/{repo}`'s `private` and `permissions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repo {
    pub private: bool,
    pub push: bool,
    pub pull: bool,
}

/// What is true of one user, at the IdP and in the provider's API.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
    pub realm_roles: Vec<String>,
    /// Roles of the client `CLIENT` (Keycloak's `resource_access`).
    pub client_roles: Vec<String>,
    /// Google's `hd`.
    pub hd: Option<String>,
    /// Entra's `tid` (the ID token's issuer is this tenant's).
    pub tid: Option<String>,
    pub xms_edov: Option<bool>,
    /// GitHub: login, organisations, teams (`org`, `slug`), the repository as the user
    /// sees it (`None`: invisible, a 404), and whether the user is a collaborator.
    pub login: String,
    pub orgs: Vec<String>,
    pub teams: Vec<(String, String)>,
    pub repo: Option<Repo>,
    pub collaborator: bool,
    /// GitLab: `(path, access level, archived)` of the projects the user can see.
    pub projects: Vec<(String, u8, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Login,
    Refresh,
    Bearer,
    Auth,
    WebSocket,
    Grpc,
}

impl Path {
    pub const ALL: [Path; 6] = [
        Path::Login,
        Path::Refresh,
        Path::Bearer,
        Path::Auth,
        Path::WebSocket,
        Path::Grpc,
    ];
}

/// Admitted, or refused with the rule's reason (the filter's log reason).
pub type Verdict = Result<(), String>;

fn key() -> Key {
    Key::load("k1", jwt::K1_PEM)
}

/// The configuration for `idp` with the options in `rules` (oauth2-proxy's names), or the
/// refusal at load.
pub fn config(idp: Idp, rules: &Value) -> Result<Config, String> {
    let mut v = json!({
        "provider": idp.name(),
        "idp_cluster": "idp",
        "client_id": CLIENT,
        "client_secret": "s3cret",
        "cookie_secret": COOKIE_SECRET,
        "email_domains": ["*"],
        "skip_jwt_bearer_tokens": true,
        "cookie_secure": true,
    });
    let all = v.as_object_mut().expect("object");
    match idp {
        Idp::GitHub => {
            all.insert(
                "idp_clusters".into(),
                json!({"api.github.com": "github_api"}),
            );
            // GitHub issues no JWTs, and its API rules cannot be held against other issuers'
            // tokens (refused at load: tests/parity.rs).
            all.insert("skip_jwt_bearer_tokens".into(), false.into());
        }
        Idp::Entra => {
            all.insert("oidc_issuer_url".into(), idp.issuer().into());
            all.insert(
                "idp_clusters".into(),
                json!({"graph.microsoft.com": "graph"}),
            );
        }
        _ => {
            all.insert("oidc_issuer_url".into(), idp.issuer().into());
        }
    }
    for (k, val) in rules.as_object().expect("rules are an object") {
        all.insert(k.clone(), val.clone());
    }
    Config::parse(v.to_string().as_bytes(), &|_| None).map_err(|e| e.to_string())
}

fn discovery(idp: Idp) -> Discovery {
    let issuer = idp.issuer();
    let published = if idp == Idp::Entra {
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    } else {
        issuer
    };
    let origin = issuer
        .trim_end_matches("/common/v2.0")
        .trim_end_matches('/');
    let doc = json!({
        "issuer": published,
        "authorization_endpoint": format!("{origin}/authorize"),
        "token_endpoint": format!("{origin}/token"),
        "jwks_uri": format!("{origin}/jwks"),
        "userinfo_endpoint": format!("{origin}/userinfo"),
    });
    Discovery::parse(doc.to_string().as_bytes(), issuer).expect("discovery")
}

/// The gate of one configuration, with its caches, the time and a random source.
pub struct Gate {
    pub config: Config,
    providers: Issuers,
    sessions: Cache<gate::Admitted>,
    bearers: Cache<gate::Admitted>,
    exchanged: Cache<gate::Exchanged>,
    metrics: Metrics,
    pub now: u64,
    counter: u8,
}

impl Gate {
    pub fn new(idp: Idp, config: Config) -> Gate {
        let mut providers = Issuers::new(config.issuers.len());
        let provider = match idp {
            Idp::GitHub => Metadata::fixed(&config).expect("github endpoints"),
            _ => {
                let jwks = json!({"keys": [key().jwk()]}).to_string();
                Metadata::new(discovery(idp), jwks.as_bytes(), NOW).expect("provider")
            }
        };
        providers.set(0, provider);
        Gate {
            config,
            providers,
            sessions: Cache::new(64, 1 << 20),
            bearers: Cache::new(64, 1 << 20),
            exchanged: Cache::new(64, 1 << 20),
            metrics: Metrics::default(),
            now: NOW,
            counter: 0,
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Context, &mut Env) -> R) -> R {
        let counter = &mut self.counter;
        let mut random = |b: &mut [u8]| {
            for x in b.iter_mut() {
                *counter = counter.wrapping_add(1);
                *x = *counter;
            }
            true
        };
        let mut env = Env {
            now: self.now,
            random: &mut random,
        };
        let mut cx = Context {
            config: &self.config,
            issuers: &self.providers,
            sessions: &mut self.sessions,
            bearers: &mut self.bearers,
            exchanged: &mut self.exchanged,
            metrics: &mut self.metrics,
        };
        f(&mut cx, &mut env)
    }

    pub fn decide(&mut self, req: &Request) -> Step {
        self.run(|cx, env| gate::decide(cx, req, env))
    }

    fn resume(&mut self, pending: Pending, answer: Option<(u16, &[u8])>) -> Step {
        self.run(|cx, env| gate::resume(cx, pending, answer, env))
    }

    /// A session holding `s`, as its cookie header value.
    pub fn seal(&self, s: &Session) -> String {
        let name = &self.config.cookie.name;
        let value = session::seal(&self.config.keys.current.session, name, s, [9; 12])
            .expect("session seals");
        format!("{name}={value}")
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut all = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "app.example.com".to_string()),
        (":scheme".to_string(), "https".to_string()),
    ];
    all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Request {
        headers: all.into(),
    }
}

/// The claims of the ID token the IdP signs for this user (and of the bearer token a client
/// of the same IdP presents).
pub fn id_claims(idp: Idp, f: &Facts, now: u64) -> Value {
    let iss = match (idp, &f.tid) {
        (Idp::Entra, Some(tid)) => format!("https://login.microsoftonline.com/{tid}/v2.0"),
        _ => idp.issuer().to_string(),
    };
    let mut c = json!({
        "iss": iss, "aud": CLIENT, "sub": "user-1", "iat": now, "exp": now + 300,
    });
    let m = c.as_object_mut().expect("object");
    if let Some(e) = &f.email {
        m.insert("email".into(), e.clone().into());
    }
    if let Some(v) = f.email_verified {
        m.insert("email_verified".into(), v.into());
    }
    // GitLab's ID token has no `groups` (userinfo has them: docs.gitlab.com
    // integration/openid_connect_provider); the others carry them in the token.
    if idp != Idp::GitLab && !f.groups.is_empty() {
        m.insert("groups".into(), f.groups.clone().into());
    }
    if !f.realm_roles.is_empty() {
        m.insert("realm_access".into(), json!({"roles": f.realm_roles}));
    }
    if !f.client_roles.is_empty() {
        m.insert(
            "resource_access".into(),
            json!({CLIENT: {"roles": f.client_roles}}),
        );
    }
    for (name, v) in [("hd", &f.hd), ("tid", &f.tid)] {
        if let Some(v) = v {
            m.insert(name.into(), v.clone().into());
        }
    }
    if let Some(v) = f.xms_edov {
        m.insert("xms_edov".into(), v.into());
    }
    c
}

fn signed(claims: &Value) -> String {
    jwt::sign_rs256(&key(), "k1", claims)
}

/// The provider's answer to one of the filter's calls, as its API documentation says it
/// answers for a user with these facts.
fn api_answer(idp: Idp, f: &Facts, path: &str) -> (u16, Value) {
    let base = path.split('?').next().unwrap_or(path);
    match (idp, base) {
        // OIDC Core 5.3 userinfo; GitLab's adds `groups` and `email_verified`.
        (_, "/userinfo") => {
            let mut info = json!({"sub": "user-1"});
            let m = info.as_object_mut().expect("object");
            if let Some(e) = &f.email {
                m.insert("email".into(), e.clone().into());
            }
            if let Some(v) = f.email_verified {
                m.insert("email_verified".into(), v.into());
            }
            m.insert("groups".into(), f.groups.clone().into());
            (200, info)
        }
        // docs.github.com/rest/users/users#get-the-authenticated-user
        (Idp::GitHub, "/user") => (200, json!({"login": f.login, "id": 4242})),
        // docs.github.com/rest/users/emails: the primary address, `verified` as GitHub says.
        (Idp::GitHub, "/user/emails") => {
            let emails = match &f.email {
                Some(e) => vec![json!({"email": e, "primary": true,
                    "verified": f.email_verified == Some(true), "visibility": "private"})],
                None => Vec::new(),
            };
            (200, Value::Array(emails))
        }
        // docs.github.com/rest/orgs/orgs#list-organizations-for-the-authenticated-user
        (Idp::GitHub, "/user/orgs") => (200, f.orgs.iter().map(|o| json!({"login": o})).collect()),
        // docs.github.com/rest/teams/teams#list-teams-for-the-authenticated-user
        (Idp::GitHub, "/user/teams") => (
            200,
            f.teams
                .iter()
                .map(|(o, s)| json!({"slug": s, "organization": {"login": o}}))
                .collect(),
        ),
        (Idp::GitHub, p) if p.starts_with("/repos/") && p.contains("/collaborators/") => {
            // docs.github.com/rest/collaborators/collaborators: 204 or 404.
            if f.collaborator {
                (204, Value::Null)
            } else {
                (404, json!({"message": "Not Found"}))
            }
        }
        // docs.github.com/rest/repos/repos#get-a-repository: 404 for a private repository
        // the user cannot see.
        (Idp::GitHub, p) if p.starts_with("/repos/") => match f.repo {
            Some(r) if !r.private || r.pull || r.push => (
                200,
                json!({"private": r.private, "permissions": {
                    "admin": false, "push": r.push, "pull": r.pull || !r.private}}),
            ),
            _ => (404, json!({"message": "Not Found"})),
        },
        // docs.gitlab.com/api/projects#get-a-single-project: `archived`, and
        // `permissions.project_access.access_level` for a member.
        (Idp::GitLab, p) if p.starts_with("/api/v4/projects/") => {
            let wanted = url::form_urlencoded::parse(
                format!("x={}", p.trim_start_matches("/api/v4/projects/")).as_bytes(),
            )
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
            match f.projects.iter().find(|(path, ..)| *path == wanted) {
                Some((_, level, archived)) => (
                    200,
                    json!({"path_with_namespace": wanted, "archived": archived,
                        "permissions": {"project_access": {"access_level": level},
                                        "group_access": null}}),
                ),
                None => (404, json!({"message": "404 Project Not Found"})),
            }
        }
        _ => (404, json!({"message": "not in this mock"})),
    }
}

fn reason_of(step: &Step) -> String {
    step.log
        .as_ref()
        .and_then(|(_, line)| serde_json::from_str::<Value>(line).ok())
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn set_cookies(r: &gate::Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next().map(str::to_owned))
        .filter(|nv| !nv.ends_with('='))
        .collect()
}

/// A login as a browser makes it; the session's cookie when it ends in one.
pub fn login(g: &mut Gate, idp: Idp, f: &Facts) -> (Verdict, Option<String>) {
    let start = g.decide(&request("GET", "/app", &[("accept", "text/html")]));
    let Decision::Respond(r) = start.decision else {
        panic!("a login starts with a redirect, got {:?}", start.decision);
    };
    let location = r
        .headers
        .iter()
        .find(|(n, _)| n == "location")
        .map(|(_, v)| v.clone())
        .expect("location");
    let query: Map<String, Value> = url::Url::parse(&location)
        .expect("authorize URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect();
    let text = |k: &str| {
        query
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let csrf = set_cookies(&r).join("; ");
    let callback = format!("/oauth2/callback?code=c0de&state={}", text("state"));
    let mut step = g.decide(&request(
        "GET",
        &callback,
        &[("accept", "text/html"), ("cookie", &csrf)],
    ));
    let mut token_answered = false;
    loop {
        match step.decision {
            Decision::Call(callout, pending) => {
                let (status, body) = if !token_answered {
                    token_answered = true;
                    let body = if idp == Idp::GitHub {
                        // A GitHub App's expiring user token (docs.github.com/apps/creating-
                        // github-apps/authenticating-with-a-github-app/refreshing-user-access-
                        // tokens): `expires_in` and a `refresh_token`.
                        json!({"access_token": "ghu_user", "token_type": "bearer",
                               "scope": g.config.scope, "expires_in": 300,
                               "refresh_token": "ghr_1"})
                    } else {
                        let mut claims = id_claims(idp, f, g.now);
                        claims["nonce"] = text("nonce").into();
                        json!({"access_token": "AT", "token_type": "Bearer",
                               "id_token": signed(&claims), "refresh_token": "RT",
                               "expires_in": 300})
                    };
                    (200, body)
                } else {
                    api_answer(idp, f, &callout.path)
                };
                let bytes = if body.is_null() {
                    Vec::new()
                } else {
                    body.to_string().into_bytes()
                };
                step = g.resume(pending.0, Some((status, &bytes)));
            }
            Decision::Respond(r) if r.status == 302 => {
                let jar = set_cookies(&r)
                    .into_iter()
                    .filter(|c| c.starts_with("_oauth2_proxy=") || c.starts_with("_oauth2_proxy_"))
                    .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return (Ok(()), Some(jar));
            }
            Decision::Respond(ref r) if r.status == 403 => return (Err(reason_of(&step)), None),
            other => panic!("login ended in {other:?} ({:?})", step.log),
        }
    }
}

/// A session with what a login records of this user: the claims, userinfo's for what the
/// token lacks, and the memberships the provider's API confirms (for a login the rules refuse,
/// the session a looser configuration would have given).
pub fn recorded_session(g: &Gate, idp: Idp, f: &Facts, rules: &Value) -> Session {
    let v = visible(idp, f, Path::Login, rules);
    Session {
        user: f.login.clone(),
        email: v.email.clone().unwrap_or_default(),
        email_verified: v.email_verified,
        groups: v.groups.clone(),
        roles: v.roles.clone(),
        access_token: "AT".into(),
        id_token: "x.y.z".into(),
        refresh_token: "RT".into(),
        created_at: g.now,
        login_at: g.now,
        expires_at: g.now + 3600,
        id: "session-1".into(),
        sub: "user-1".into(),
        access_expires_at: g.now + 300,
        id_expires_at: g.now + 300,
        hosted_domain: f.hd.clone().unwrap_or_default(),
        tenant: f.tid.clone().unwrap_or_default(),
        proven: v.proven.clone(),
        ..Session::default()
    }
}

/// The verdict of a request that either goes on (admitted) or is answered 403 / gRPC 7.
fn outcome(step: &Step) -> Verdict {
    match &step.decision {
        Decision::Continue { .. } => Ok(()),
        Decision::Respond(r) if r.status == 202 => Ok(()),
        Decision::Respond(r)
            if r.status == 403
                || r.headers
                    .iter()
                    .any(|(n, v)| n == "grpc-status" && v == "7") =>
        {
            Err(reason_of(step))
        }
        other => panic!("unexpected decision {other:?} ({:?})", step.log),
    }
}

/// The verdict on `path` for this user under `g`'s configuration. `jar`: the session cookie
/// (from a login, or [`recorded_session`]).
pub fn verdict_on(g: &mut Gate, idp: Idp, f: &Facts, path: Path, jar: &str) -> Verdict {
    match path {
        Path::Login => login(g, idp, f).0,
        Path::Bearer => {
            let token = format!("Bearer {}", signed(&id_claims(idp, f, g.now)));
            outcome(&g.decide(&request(
                "GET",
                "/api",
                &[("accept", "application/json"), ("authorization", &token)],
            )))
        }
        Path::Auth => outcome(&g.decide(&request("GET", "/oauth2/auth", &[("cookie", jar)]))),
        Path::WebSocket => outcome(&g.decide(&request(
            "GET",
            "/ws",
            &[
                ("cookie", jar),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
            ],
        ))),
        Path::Grpc => outcome(&g.decide(&request(
            "POST",
            "/pkg.Service/Method",
            &[
                ("cookie", jar),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        ))),
        Path::Refresh => {
            let then = g.now;
            g.now += 290;
            let step = g.decide(&request(
                "GET",
                "/app",
                &[("accept", "application/json"), ("cookie", jar)],
            ));
            let verdict = match step.decision {
                Decision::Refresh(mut call) => {
                    let free: Vec<Option<&[u8]>> = vec![None; call.slots.len()];
                    let Plan::Claim { slot, bytes } =
                        refresh::plan(&free, &call.session_id, call.generation, g.now, 6, g.now)
                    else {
                        panic!("a free slot is claimed");
                    };
                    call.pending.0.set_claim(call.slots[slot].clone(), bytes);
                    let body = match idp {
                        // GitHub's refresh (GitHub Apps' expiring tokens) has no ID token.
                        Idp::GitHub => json!({"access_token": "gho_2", "token_type": "bearer",
                                              "refresh_token": "ghr_2", "expires_in": 28800}),
                        _ => json!({"access_token": "AT-2", "token_type": "Bearer",
                                    "id_token": signed(&id_claims(idp, f, g.now)),
                                    "refresh_token": "RT-2", "expires_in": 300}),
                    }
                    .to_string();
                    outcome(&g.resume(call.pending.0, Some((200, body.as_bytes()))))
                }
                _ => panic!("expected a refresh, got {:?}", step.decision),
            };
            g.now = then;
            verdict
        }
    }
}

/// Every path's verdict. The login's session (when it admits) serves the session paths;
/// otherwise the session a looser configuration would have recorded does.
pub fn verdicts(idp: Idp, rules: &Value, f: &Facts) -> Result<Vec<(Path, Verdict)>, String> {
    let config = config(idp, rules)?;
    let mut login_gate = Gate::new(idp, config.clone());
    let (on_login, jar) = login(&mut login_gate, idp, f);
    let mut out = vec![(Path::Login, on_login)];
    for path in [
        Path::Refresh,
        Path::Bearer,
        Path::Auth,
        Path::WebSocket,
        Path::Grpc,
    ] {
        // GitHub issues no JWTs: no bearer token of its own exists.
        if idp == Idp::GitHub && path == Path::Bearer {
            continue;
        }
        // A fresh gate per path: nothing cached from another path's verdict.
        let mut g = Gate::new(idp, config.clone());
        let jar = match &jar {
            Some(j) => j.clone(),
            None => g.seal(&recorded_session(&g, idp, f, rules)),
        };
        out.push((path, verdict_on(&mut g, idp, f, path, &jar)));
    }
    Ok(out)
}

// ------------------------------------------------------------------- the reference

/// What a path can know of the user: everything a login gathers, or a bearer token's claims.
#[derive(Debug, Default)]
pub struct Visible {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub proven: Vec<String>,
}

/// The options as the rules read them: a list (a JSON list, or one comma-separated string,
/// as oauth2-proxy's flags take them), a flag, a string.
fn list(rules: &Value, key: &str) -> Vec<String> {
    match rules.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn flag(rules: &Value, key: &str) -> bool {
    rules.get(key).and_then(Value::as_bool) == Some(true)
}

fn text(rules: &Value, key: &str) -> Option<String> {
    rules
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `gitlab_projects` entries: `path` and the wanted level (default 20).
fn projects(rules: &Value) -> Vec<(String, u8)> {
    list(rules, "gitlab_projects")
        .into_iter()
        .map(|e| match e.rsplit_once('=') {
            Some((p, l)) => (p.to_string(), l.parse().unwrap_or(20)),
            None => (e, 20),
        })
        .collect()
}

/// The facts a path sees, read the way each provider's documentation describes them.
pub fn visible(idp: Idp, f: &Facts, path: Path, rules: &Value) -> Visible {
    let bearer = path == Path::Bearer;
    let tenants = list(rules, "entra_id_allowed_tenants");
    let several_tenants = tenants.len() > 1 || tenants.iter().any(|t| t == "*");
    let groups_wanted = !list(rules, "allowed_groups").is_empty();
    let read_orgs = text(rules, "github_org").is_some() || groups_wanted;
    // Keycloak-shaped role claims count as roles for every OIDC provider (`allowed_roles`);
    // keycloak-oidc also passes them as `role:` groups.
    let mut roles = f.realm_roles.clone();
    roles.extend(f.client_roles.iter().map(|r| format!("{CLIENT}:{r}")));
    let mut v = Visible {
        email: f.email.clone(),
        email_verified: f.email_verified,
        groups: f.groups.clone(),
        roles: if idp == Idp::GitHub {
            Vec::new()
        } else {
            roles
        },
        ..Visible::default()
    };
    match idp {
        Idp::GitHub => {
            // Only a verified primary address counts; orgs and teams are groups when read.
            if bearer {
                return v;
            }
            if f.email_verified != Some(true) {
                v.email = None;
            }
            v.email_verified = v.email.as_ref().map(|_| true);
            v.groups.clear();
            v.proven.push(format!("github:user:{}", f.login));
            if read_orgs {
                for o in &f.orgs {
                    v.groups.push(o.clone());
                    v.proven.push(format!("github:org:{o}"));
                }
            }
            if !list(rules, "github_team").is_empty() || groups_wanted {
                for (o, s) in &f.teams {
                    v.groups.push(format!("{o}:{s}"));
                    v.proven.push(format!("github:team:{o}:{s}"));
                }
            }
            let users = list(rules, "github_users");
            let listed = users.iter().any(|u| u.eq_ignore_ascii_case(&f.login));
            let (org, repo) = (text(rules, "github_org"), text(rules, "github_repo"));
            if let (None, Some(repo), false) = (org, repo, listed) {
                let access = match text(rules, "github_token") {
                    Some(_) => f.collaborator,
                    None => f.repo.is_some_and(|r| r.push || (r.private && r.pull)),
                };
                if access {
                    v.proven.push(format!("github:repo:{repo}"));
                }
            }
        }
        Idp::GitLab => {
            if bearer {
                // The token's own claims: no `groups` (those are userinfo's).
                v.groups.clear();
                return v;
            }
            for (p, wanted) in &projects(rules) {
                if f.projects
                    .iter()
                    .any(|(q, level, archived)| q == p && !archived && level >= wanted)
                {
                    v.groups.push(format!("project:{p}"));
                    v.proven.push(format!("gitlab:project:{p}"));
                }
            }
        }
        Idp::Keycloak => {
            v.groups.extend(v.roles.iter().map(|r| format!("role:{r}")));
        }
        Idp::Entra if several_tenants && !flag(rules, "insecure_oidc_allow_unverified_email") => {
            if f.xms_edov == Some(true) {
                v.email_verified = Some(true);
            } else {
                v.email = None;
                v.email_verified = None;
            }
        }
        _ => {}
    }
    v
}

fn domain_ok(entry: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let entry = entry.to_ascii_lowercase();
    if entry == "*" {
        return true;
    }
    match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
        Some(base) => domain.ends_with(&format!(".{base}")),
        None => domain == entry,
    }
}

/// The rules as oauth2-proxy's documentation and source state them (with this project's
/// listed differences), over what a path can see.
pub fn reference(idp: Idp, f: &Facts, path: Path, rules: &Value) -> Verdict {
    let v = visible(idp, f, path, rules);
    let deny = |why: &str| Err(why.to_string());
    let domains = match list(rules, "email_domains") {
        d if d.is_empty() => vec!["*".to_string()],
        d => d,
    };
    let allow_unverified = flag(rules, "insecure_oidc_allow_unverified_email");
    let any_domain = domains.iter().any(|d| d == "*");
    match &v.email {
        None if !any_domain || idp == Idp::GitHub => return deny("no_email"),
        None => {}
        Some(e) => {
            let parts: Vec<&str> = e.split('@').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return deny("invalid_email");
            }
            let unverified = v.email_verified == Some(false)
                || (idp == Idp::GitLab && v.email_verified != Some(true));
            if unverified && !allow_unverified {
                return deny("email_not_verified");
            }
            let by_domain = domains.iter().any(|d| domain_ok(d, parts[1]));
            let listed = list(rules, "authenticated_emails")
                .iter()
                .any(|a| a.eq_ignore_ascii_case(e));
            if !by_domain && !listed {
                return deny("email_not_allowed");
            }
        }
    }
    let has = |fact: String| v.proven.iter().any(|x| x.eq_ignore_ascii_case(&fact));
    match idp {
        Idp::Google => {
            let hosted = list(rules, "google_hosted_domains");
            let hd = f.hd.clone().unwrap_or_default();
            if !hosted.is_empty() && !hosted.iter().any(|d| d.eq_ignore_ascii_case(&hd)) {
                return deny("hosted_domain");
            }
        }
        Idp::Entra => {
            let t = list(rules, "entra_id_allowed_tenants");
            let tid = f.tid.clone().unwrap_or_default();
            let ok = t.is_empty()
                || t.iter().any(|x| x == "*")
                || t.iter().any(|x| x.eq_ignore_ascii_case(&tid));
            if !ok {
                return deny("entra_tenant");
            }
        }
        Idp::GitLab => {
            let groups = list(rules, "gitlab_group");
            let projects = projects(rules);
            if !(groups.is_empty() && projects.is_empty()) {
                let by_group = v.groups.iter().any(|g| groups.contains(g));
                let by_project = projects
                    .iter()
                    .any(|(path, _)| has(format!("gitlab:project:{path}")));
                if !by_group && !by_project {
                    return deny("gitlab_group_or_project");
                }
            }
        }
        Idp::GitHub => {
            let users = list(rules, "github_users");
            let teams = list(rules, "github_team");
            let listed = users.iter().any(|u| has(format!("github:user:{u}")));
            if !listed {
                match (text(rules, "github_org"), text(rules, "github_repo")) {
                    (Some(org), _) if teams.is_empty() => {
                        if !has(format!("github:org:{org}")) {
                            return deny("github_org");
                        }
                    }
                    (Some(org), _) => {
                        if !teams.iter().any(|t| has(format!("github:team:{org}:{t}"))) {
                            return deny(if has(format!("github:org:{org}")) {
                                "github_team"
                            } else {
                                "github_org"
                            });
                        }
                    }
                    (None, Some(repo)) => {
                        if !has(format!("github:repo:{repo}")) {
                            return deny("github_repo");
                        }
                    }
                    (None, None) if !users.is_empty() => return deny("github_user"),
                    (None, None) => {}
                }
            }
        }
        _ => {}
    }
    let allowed_groups = list(rules, "allowed_groups");
    let allowed_roles = list(rules, "allowed_roles");
    if !allowed_groups.is_empty() || !allowed_roles.is_empty() {
        let by_group = v.groups.iter().any(|g| allowed_groups.contains(g));
        let by_role = v.roles.iter().any(|x| allowed_roles.contains(x));
        if !by_group && !by_role {
            return deny("group_not_allowed");
        }
    }
    Ok(())
}
