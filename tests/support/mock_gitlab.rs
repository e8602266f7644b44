//! GitLab as the `gitlab` provider meets it, on one listener (the issuer
//! `http://127.0.0.1:<port>`, its REST API under `/api/v4`):
//!
//! - discovery, `/oauth/authorize` (straight back as the configured user), `/oauth/token`
//!   (client credentials, code, `redirect_uri`, PKCE; an RS256 ID token with GitLab's claims:
//!   `nickname`, `groups_direct`, the request's `nonce`), `/oauth/discovery/keys`,
//!   `/oauth/userinfo` (with `groups`: every group the user is in, full paths), `/oauth/revoke`;
//! - `GET /api/v4/projects/:id` by numeric id or URL-encoded path (`acme%2Fwidgets`), with
//!   `permissions.project_access` / `group_access` (`access_level` 10 guest, 20 reporter,
//!   30 developer, 40 maintainer, 50 owner). A private project the user is not in is a 404
//!   (`{"message":"404 Project Not Found"}`), a public one answers with both accesses `null`.
//!   The API needs the `read_api` (or `api`) scope: without it, 403 `insufficient_scope`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::jwt::{self, Key};
use super::mock_common::{
    approve, authorization, code_issuer, listen, token_of, with_header, Grant, Late, Log,
};
use super::mock_oidc::{discovery, id_token, jwks, merged, redeem, revoke, Refused};
use super::upstream::{MiniServer, ServerRequest, ServerResponse};

#[derive(Clone, Debug)]
pub struct GitLabUser {
    pub id: u64,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    /// Full paths of every group the user is in (`acme`, `acme/devs`).
    pub groups: Vec<String>,
    /// Project path -> (project access level, inherited group access level).
    pub access: HashMap<String, (Option<u8>, Option<u8>)>,
}

impl GitLabUser {
    pub fn new(id: u64, username: &str, groups: &[&str]) -> GitLabUser {
        GitLabUser {
            id,
            username: username.to_string(),
            email: format!("{username}@example.com"),
            email_verified: true,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            access: HashMap::new(),
        }
    }
    pub fn project_access(mut self, path: &str, level: u8) -> GitLabUser {
        self.access.entry(path.to_string()).or_default().0 = Some(level);
        self
    }
    pub fn group_access(mut self, path: &str, level: u8) -> GitLabUser {
        self.access.entry(path.to_string()).or_default().1 = Some(level);
        self
    }
}

#[derive(Clone, Debug)]
pub struct GitLabProject {
    pub id: u64,
    pub path: String,
    /// `private`, `internal` or `public`.
    pub visibility: &'static str,
}

pub struct GitLabState {
    pub client_id: String,
    pub client_secret: String,
    pub users: HashMap<String, GitLabUser>,
    pub projects: Vec<GitLabProject>,
    pub current: String,
    pub key: Key,
    codes: HashMap<String, Grant>,
    /// access token -> (username, scopes)
    tokens: HashMap<String, (String, Vec<String>)>,
    pub violations: Vec<String>,
}

code_issuer!(GitLabState);

pub struct MockGitLab {
    pub server: MiniServer,
    pub state: Arc<Mutex<GitLabState>>,
    pub log: Log,
}

impl MockGitLab {
    pub fn start(client_id: &str, client_secret: &str) -> MockGitLab {
        let state = Arc::new(Mutex::new(GitLabState {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            users: HashMap::new(),
            projects: Vec::new(),
            current: String::new(),
            key: Key::load("kewiQq9jiC84CvSsJYOB-N6A8WFLSV20Mb-y7IlWDSQ", jwt::K2_PEM),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            violations: Vec::new(),
        }));
        let log = Log::default();
        let issuer = Late::default();
        let server = listen("gitlab", &state, &issuer, &log, |st, iss: &String, req| {
            handle(st, iss, req)
        });
        issuer.set(format!("http://127.0.0.1:{}", server.port));
        MockGitLab { server, state, log }
    }
    pub fn port(&self) -> u16 {
        self.server.port
    }
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }
    pub fn add_user(&self, u: GitLabUser) {
        self.st().users.insert(u.username.clone(), u);
    }
    pub fn add_project(&self, id: u64, path: &str, visibility: &'static str) {
        self.st().projects.push(GitLabProject {
            id,
            path: path.to_string(),
            visibility,
        });
    }
    pub fn approve_as(&self, username: &str) {
        self.st().current = username.to_string();
    }
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }
    fn st(&self) -> MutexGuard<'_, GitLabState> {
        self.state.lock().expect("gitlab")
    }
}

fn handle(st: &mut GitLabState, iss: &str, req: &ServerRequest) -> ServerResponse {
    let path = req.path().to_string();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            ServerResponse::json(200, &gitlab_discovery(iss))
        }
        ("GET", "/oauth/discovery/keys") => jwks(vec![st.key.jwk()]),
        ("GET", "/oauth/authorize") => authorize(st, req),
        ("POST", "/oauth/token") => token(st, iss, req),
        ("GET" | "POST", "/oauth/userinfo") => userinfo(st, iss, req),
        ("POST", "/oauth/revoke") => {
            revoke(req, &mut st.tokens);
            ServerResponse::json(200, &json!({}))
        }
        ("GET", p) if p.starts_with("/api/v4/") => api(st, iss, req),
        _ => ServerResponse::json(404, &json!({"error": "404 Not Found"})),
    }
}

fn gitlab_discovery(iss: &str) -> Value {
    discovery(
        iss,
        json!({
            "authorization_endpoint": format!("{iss}/oauth/authorize"),
            "token_endpoint": format!("{iss}/oauth/token"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
            "jwks_uri": format!("{iss}/oauth/discovery/keys"),
            "scopes_supported": ["api", "read_api", "read_user", "create_runner", "k8s_proxy", "read_repository", "write_repository", "read_registry", "write_registry", "sudo", "admin_mode", "openid", "profile", "email"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials", "device_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "claim_types_supported": ["normal"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email", "email_verified", "website", "profile", "picture", "groups", "groups_direct", "https://gitlab.org/claims/groups/owner", "https://gitlab.org/claims/groups/maintainer", "https://gitlab.org/claims/groups/developer"],
            "code_challenge_methods_supported": ["plain", "S256"],
        }),
    )
}

fn oauth_error(status: u16, code: &str, description: &str) -> ServerResponse {
    ServerResponse::json(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

fn authorize(st: &mut GitLabState, req: &ServerRequest) -> ServerResponse {
    let Some((g, state)) = authorization(st, req) else {
        return ServerResponse::text(400, "Client authentication failed due to unknown client");
    };
    // GitLab refuses scopes the application was not registered with; this one has them all.
    let code = super::random_token(32);
    approve(st, &code, g, &[("code", &code), ("state", &state)])
}

fn token(st: &mut GitLabState, iss: &str, req: &ServerRequest) -> ServerResponse {
    let grant = match redeem(st, req) {
        Ok(g) => g,
        Err(r) => {
            let description = match r {
                Refused::Client => "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
                Refused::Code => "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                Refused::Grant(_) => "The provided authorization grant is invalid.",
            };
            return oauth_error(r.status(), r.error(), description);
        }
    };
    let Some(u) = st.users.get(&grant.user).cloned() else {
        return oauth_error(400, "invalid_grant", "no such user");
    };
    let scopes: Vec<String> = grant
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let access_token = super::random_token(32);
    st.tokens
        .insert(access_token.clone(), (u.username.clone(), scopes.clone()));
    let now = super::now();
    let claims = json!({
        "iss": iss,
        "aud": st.client_id,
        "exp": now + 120,
        "iat": now,
        "auth_time": now - 5,
        "groups_direct": u.groups,
    });
    let id_token = id_token(&st.key, &grant, merged(profile(&u, iss, &scopes), claims));
    ServerResponse::json(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 7200,
            "refresh_token": super::random_token(32),
            "scope": scopes.join(" "),
            "created_at": now,
            "id_token": id_token,
        }),
    )
}

fn unauthorized() -> ServerResponse {
    let r = ServerResponse::json(401, &json!({"message": "401 Unauthorized"}));
    with_header(r, "WWW-Authenticate", "Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"Token is expired. You can either do re-authorization or token refresh.\"")
}

fn insufficient_scope(needed: &str) -> ServerResponse {
    let description = "The request requires higher privileges than provided by the access token.";
    let r = ServerResponse::json(
        403,
        &json!({"error": "insufficient_scope", "error_description": description, "scope": needed}),
    );
    with_header(
        r,
        "WWW-Authenticate",
        &format!("Bearer realm=\"Protected by OAuth 2.0\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{needed}\""),
    )
}

/// The claims about `u` that both the ID token and userinfo carry (the email ones only with
/// the `email` scope).
fn profile(u: &GitLabUser, iss: &str, scopes: &[String]) -> Value {
    let mut v = json!({
        "sub": u.id.to_string(),
        "sub_legacy": format!("{:064x}", u.id),
        "name": format!("{} (mock)", u.username),
        "nickname": u.username,
        "preferred_username": u.username,
        "website": "",
        "profile": format!("{iss}/{}", u.username),
        "picture": format!("{iss}/uploads/-/system/user/avatar/{}/avatar.png", u.id),
    });
    if scopes.iter().any(|s| s == "email") {
        v["email"] = json!(u.email);
        v["email_verified"] = json!(u.email_verified);
    }
    v
}

fn userinfo(st: &mut GitLabState, iss: &str, req: &ServerRequest) -> ServerResponse {
    let Some((username, scopes)) = token_of(req, &st.tokens) else {
        return unauthorized();
    };
    if !scopes.iter().any(|s| s == "openid") {
        return insufficient_scope("openid");
    }
    let Some(u) = st.users.get(&username) else {
        return unauthorized();
    };
    let groups = json!({
        "groups": u.groups,
        "groups_direct": u.groups,
        "https://gitlab.org/claims/groups/owner": [],
        "https://gitlab.org/claims/groups/maintainer": [],
        "https://gitlab.org/claims/groups/developer": [],
    });
    ServerResponse::json(200, &merged(profile(u, iss, &scopes), groups))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn api(st: &mut GitLabState, iss: &str, req: &ServerRequest) -> ServerResponse {
    let Some((username, scopes)) = token_of(req, &st.tokens) else {
        return unauthorized();
    };
    if !scopes.iter().any(|s| s == "read_api" || s == "api") {
        return insufficient_scope("api read_api");
    }
    let rest = req.path().strip_prefix("/api/v4/").unwrap_or("");
    // `projects/:id`: one segment, so a path id must arrive URL-encoded.
    let Some(id) = rest
        .strip_prefix("projects/")
        .filter(|id| !id.contains('/'))
    else {
        return ServerResponse::json(404, &json!({"error": "404 Not Found"}));
    };
    let id = percent_decode(id);
    let not_found = || ServerResponse::json(404, &json!({"message": "404 Project Not Found"}));
    let Some(p) = st
        .projects
        .iter()
        .find(|p| p.path == id || p.id.to_string() == id)
        .cloned()
    else {
        return not_found();
    };
    let (project_access, group_access) = st
        .users
        .get(&username)
        .and_then(|u| u.access.get(&p.path).copied())
        .unwrap_or((None, None));
    let member = project_access.is_some() || group_access.is_some();
    if p.visibility == "private" && !member {
        return not_found();
    }
    let level = |l: Option<u8>| match l {
        Some(l) => json!({"access_level": l, "notification_level": 3}),
        None => Value::Null,
    };
    let (ns, name) = p.path.rsplit_once('/').unwrap_or(("", &p.path));
    ServerResponse::json(
        200,
        &json!({
            "id": p.id,
            "description": "",
            "name": name,
            "name_with_namespace": format!("{ns} / {name}"),
            "path": name,
            "path_with_namespace": p.path,
            "created_at": "2023-01-05T10:20:30.000Z",
            "default_branch": "main",
            "visibility": p.visibility,
            "archived": false,
            "web_url": format!("{iss}/{}", p.path),
            "namespace": {"id": 9, "name": ns, "path": ns, "kind": "group", "full_path": ns},
            "permissions": {
                "project_access": level(project_access),
                "group_access": level(group_access),
            },
        }),
    )
}
