//! GitHub (Enterprise Server style) as the `github` provider meets it, on two listeners:
//!
//! - the web host (`login_url`, `redeem_url`): `GET /login/oauth/authorize` redirects straight
//!   back as the configured user who approved; `POST /login/oauth/access_token` checks the
//!   code, the client credentials (Basic or form) and PKCE, and answers JSON only when asked
//!   with `Accept: application/json` (else form-encoded, as GitHub does). Errors are a 200
//!   with `{"error": "bad_verification_code", …}`.
//! - the API host (`validate_url`, `http://127.0.0.1:<port>/api/v3`): `GET /user`,
//!   `/user/emails`, `/user/orgs`, `/user/teams` (paginated with `per_page`/`page` and a
//!   `Link` header), `/repos/{owner}/{repo}` (with `permissions`) and
//!   `/repos/{owner}/{repo}/collaborators/{user}` (204 / 404).
//!
//! Shapes, status codes and headers follow GitHub's REST documentation: `X-OAuth-Scopes`,
//! `X-Accepted-OAuth-Scopes` and `X-RateLimit-*` on every API answer; 401 `Bad credentials`
//! for a revoked token; 403 for a missing scope on `/user/emails`, `/user/orgs`,
//! `/user/teams`; 404 for a private repository the token may not see; a primary rate limit
//! as 403 with `x-ratelimit-remaining: 0` and a secondary one as 429 with `retry-after`; 403
//! for a request without `User-Agent`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::mock_common::{
    approve, authorization, check_grant, client_credentials, code_issuer, empty, listen,
    redirect_back, take_code, token_of, with_header, ClientAuthSeen, Grant, Late, Log, Seen,
};
use super::upstream::{MiniServer, ServerRequest, ServerResponse};

pub const API_PREFIX: &str = "/api/v3";

#[derive(Clone, Debug)]
pub struct GhEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Clone, Debug)]
pub struct GhOrg {
    pub login: String,
    pub id: u64,
}

#[derive(Clone, Debug)]
pub struct GhTeam {
    pub org: String,
    pub slug: String,
    pub id: u64,
}

/// What a user may do in a repository (`permissions` of `GET /repos/{o}/{r}`).
#[derive(Clone, Debug)]
pub struct GhRepoAccess {
    pub admin: bool,
    pub push: bool,
    pub pull: bool,
}

#[derive(Clone, Debug)]
pub struct GhRepo {
    pub full_name: String,
    pub id: u64,
    pub private: bool,
    /// Logins that are collaborators, and what each may do. Anyone else sees a public
    /// repository with `pull` only (GitHub: every account can read a public repository, so
    /// its `permissions.pull` is true for all) and a private one not at all (404).
    pub access: HashMap<String, GhRepoAccess>,
}

#[derive(Clone, Debug)]
pub struct GhUser {
    pub login: String,
    pub id: u64,
    pub name: String,
    pub emails: Vec<GhEmail>,
    pub orgs: Vec<GhOrg>,
    pub teams: Vec<GhTeam>,
}

impl GhUser {
    /// A user with one verified primary address, `<login>@example.com`.
    pub fn new(login: &str, id: u64) -> GhUser {
        GhUser {
            login: login.to_string(),
            id,
            name: format!("{login} (mock)"),
            emails: vec![GhEmail {
                email: format!("{login}@example.com"),
                primary: true,
                verified: true,
            }],
            orgs: Vec::new(),
            teams: Vec::new(),
        }
    }
    pub fn org(mut self, login: &str, id: u64) -> GhUser {
        self.orgs.push(GhOrg {
            login: login.to_string(),
            id,
        });
        self
    }
    pub fn team(mut self, org: &str, slug: &str, id: u64) -> GhUser {
        self.teams.push(GhTeam {
            org: org.to_string(),
            slug: slug.to_string(),
            id,
        });
        self
    }
}

/// What goes wrong, by design, for the next logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GhFault {
    None,
    /// The user clicks "Cancel": `error=access_denied` back to the redirect URI.
    UserDenied,
    /// The token endpoint says the code is wrong or expired (200 + `bad_verification_code`).
    CodeExpired,
    /// Tokens are revoked right after they are issued: the API answers 401.
    Revoked,
    /// After `after` more API calls every one is refused by the primary rate limit
    /// (403, `x-ratelimit-remaining: 0`).
    RateLimited {
        after: usize,
    },
    /// After `after` more API calls every one hits a secondary rate limit (429, `retry-after`).
    SecondaryRateLimit {
        after: usize,
    },
}

#[derive(Clone, Debug)]
struct Token {
    login: String,
    scopes: Vec<String>,
}

pub struct GhState {
    pub client_id: String,
    pub client_secret: String,
    /// When set, the only redirect URI the authorize endpoint accepts.
    pub redirect_uri: Option<String>,
    pub users: HashMap<String, GhUser>,
    pub repos: HashMap<String, GhRepo>,
    /// Who approves the next authorization request.
    pub current: String,
    pub fault: GhFault,
    /// Scopes the next tokens carry instead of the requested ones (an app whose grant was
    /// narrowed).
    pub scope_override: Option<String>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Token>,
    /// API calls since the fault was set (for the rate limits).
    api_calls: usize,
    /// Client authentication methods seen at the token endpoint.
    pub token_auth: Vec<ClientAuthSeen>,
    /// Protocol mistakes of the relying party: must stay empty.
    pub violations: Vec<String>,
}

code_issuer!(GhState);

pub struct MockGitHub {
    pub web: MiniServer,
    pub api: MiniServer,
    pub state: Arc<Mutex<GhState>>,
    pub log: Log,
}

impl MockGitHub {
    pub fn start(client_id: &str, client_secret: &str) -> MockGitHub {
        let state = Arc::new(Mutex::new(GhState {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_uri: None,
            users: HashMap::new(),
            repos: HashMap::new(),
            current: String::new(),
            fault: GhFault::None,
            scope_override: None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            api_calls: 0,
            token_auth: Vec::new(),
            violations: Vec::new(),
        }));
        let log = Log::default();
        // The API's own base URL (for `url` fields and `Link` headers) needs its port first.
        let base = Late::default();
        let web = listen("web", &state, &Late::default(), &log, |st, _: &(), req| {
            web(st, req)
        });
        let api = listen("api", &state, &base, &log, |st, b: &String, req| {
            api(st, b, req)
        });
        base.set(format!("http://127.0.0.1:{}{API_PREFIX}", api.port));
        MockGitHub {
            web,
            api,
            state,
            log,
        }
    }

    pub fn web_port(&self) -> u16 {
        self.web.port
    }
    pub fn api_port(&self) -> u16 {
        self.api.port
    }
    pub fn login_url(&self) -> String {
        format!("http://127.0.0.1:{}/login/oauth/authorize", self.web.port)
    }
    pub fn redeem_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/login/oauth/access_token",
            self.web.port
        )
    }
    /// `validate_url`: the REST API's base, as GitHub Enterprise Server serves it.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}{API_PREFIX}", self.api.port)
    }

    pub fn add_user(&self, u: GhUser) {
        self.st().users.insert(u.login.clone(), u);
    }
    pub fn add_repo(&self, r: GhRepo) {
        self.st().repos.insert(r.full_name.clone(), r);
    }
    /// The user who approves the next authorization request.
    pub fn approve_as(&self, login: &str) {
        self.st().current = login.to_string();
    }
    pub fn set_fault(&self, f: GhFault) {
        let mut st = self.st();
        st.fault = f;
        st.api_calls = 0;
    }
    pub fn set_redirect_uri(&self, u: &str) {
        self.st().redirect_uri = Some(u.to_string());
    }
    pub fn set_scope_override(&self, s: Option<&str>) {
        self.st().scope_override = s.map(str::to_string);
    }
    /// A personal access token of `login` with `scopes` (for `github_token`).
    pub fn add_pat(&self, token: &str, login: &str, scopes: &[&str]) {
        self.st().tokens.insert(
            token.to_string(),
            Token {
                login: login.to_string(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            },
        );
    }
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }
    pub fn token_auth(&self) -> Vec<ClientAuthSeen> {
        self.st().token_auth.clone()
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.log.all()
    }
    /// API requests, as paths relative to the API base (`/user/emails?per_page=…`).
    pub fn api_targets(&self) -> Vec<String> {
        self.log
            .on("api")
            .iter()
            .map(|s| {
                s.target
                    .strip_prefix(API_PREFIX)
                    .unwrap_or(&s.target)
                    .to_string()
            })
            .collect()
    }
    fn st(&self) -> MutexGuard<'_, GhState> {
        self.state.lock().expect("gh")
    }
}

fn oauth_error(code: &str, description: &str) -> ServerResponse {
    // GitHub answers token errors with 200.
    ServerResponse::json(
        200,
        &json!({
            "error": code,
            "error_description": description,
            "error_uri": format!(
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{}",
                code.replace('_', "-")
            ),
        }),
    )
}

fn web(st: &mut GhState, req: &ServerRequest) -> ServerResponse {
    match (req.method.as_str(), req.path()) {
        ("GET", "/login/oauth/authorize") => authorize(st, req),
        ("POST", "/login/oauth/access_token") => token(st, req),
        _ => ServerResponse::text(404, "Not Found"),
    }
}

fn authorize(st: &mut GhState, req: &ServerRequest) -> ServerResponse {
    let Some((g, state)) = authorization(st, req) else {
        return ServerResponse::text(404, "Not Found");
    };
    if g.redirect_uri.is_empty()
        || st
            .redirect_uri
            .as_ref()
            .is_some_and(|r| *r != g.redirect_uri)
    {
        st.violations
            .push(format!("authorize: redirect_uri {:?}", g.redirect_uri));
        return ServerResponse::text(
            400,
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    if state.len() < 16 {
        st.violations
            .push(format!("authorize: weak state {state:?}"));
    }
    if st.fault == GhFault::UserDenied {
        return redirect_back(
            &g.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user has denied your application access."),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied",
                ),
                ("state", &state),
            ],
        );
    }
    if !st.users.contains_key(&st.current) {
        return ServerResponse::text(500, &format!("mock: no user {:?}", st.current));
    }
    // GitHub's codes look like this: 20 hex characters.
    let code = hex(10);
    approve(st, &code, g, &[("code", &code), ("state", &state)])
}

fn token(st: &mut GhState, req: &ServerRequest) -> ServerResponse {
    let json_wanted = req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    if !json_wanted {
        st.violations.push(format!(
            "token: Accept {:?} (GitHub answers form-encoded unless asked for JSON)",
            req.header("accept")
        ));
    }
    let answer = |st: &mut GhState| -> Result<(String, String), ServerResponse> {
        let Some((id, secret, how)) = client_credentials(req) else {
            return Err(oauth_error(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ));
        };
        st.token_auth.push(how);
        if id != st.client_id || secret != st.client_secret {
            return Err(oauth_error(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ));
        }
        let Some(grant) = take_code(st, req) else {
            return Err(oauth_error(
                "bad_verification_code",
                "The code passed is incorrect or expired.",
            ));
        };
        if st.fault == GhFault::CodeExpired {
            return Err(oauth_error(
                "bad_verification_code",
                "The code passed is incorrect or expired.",
            ));
        }
        if let Err(e) = check_grant(st, req, &grant) {
            let code = if e == "invalid_grant"
                && req.form().get("redirect_uri") != Some(&grant.redirect_uri)
            {
                "redirect_uri_mismatch"
            } else {
                "bad_verification_code"
            };
            return Err(oauth_error(code, "The code could not be redeemed."));
        }
        let scope = st
            .scope_override
            .clone()
            .unwrap_or_else(|| grant.scope.replace(' ', ","));
        let token = format!("gho_{}", hex(18));
        if st.fault != GhFault::Revoked {
            st.tokens.insert(
                token.clone(),
                Token {
                    login: grant.user.clone(),
                    scopes: scope
                        .split([',', ' '])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                },
            );
        }
        Ok((token, scope))
    };
    let result = answer(st);
    let (token, scope) = match result {
        Ok(t) => t,
        Err(e) => return e,
    };
    if json_wanted {
        ServerResponse::json(
            200,
            &json!({"access_token": token, "scope": scope, "token_type": "bearer"}),
        )
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("access_token", &token)
            .append_pair("scope", &scope)
            .append_pair("token_type", "bearer")
            .finish();
        ServerResponse {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: body.into_bytes(),
            delay: None,
        }
    }
}

fn hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn gh_error(status: u16, message: &str, doc: &str) -> ServerResponse {
    ServerResponse::json(
        status,
        &json!({"message": message, "documentation_url": doc, "status": status.to_string()}),
    )
}

/// The headers GitHub puts on every REST answer.
fn api_headers(
    mut r: ServerResponse,
    remaining: u32,
    scopes: &str,
    accepted: &str,
) -> ServerResponse {
    let reset = super::now() + 3600;
    for (k, v) in [
        ("X-GitHub-Media-Type", "github.v3; format=json".to_string()),
        ("X-GitHub-Api-Version-Selected", "2022-11-28".to_string()),
        ("X-RateLimit-Limit", "5000".to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
        ("X-RateLimit-Used", (5000 - remaining).to_string()),
        ("X-RateLimit-Resource", "core".to_string()),
        ("X-OAuth-Scopes", scopes.to_string()),
        ("X-Accepted-OAuth-Scopes", accepted.to_string()),
    ] {
        r = with_header(r, k, &v);
    }
    r
}

fn has_any(scopes: &[String], wanted: &[&str]) -> bool {
    scopes.iter().any(|s| wanted.contains(&s.as_str()))
}

/// `per_page` (default 30, at most 100) and `page` (from 1) of a list request.
fn page_of(req: &ServerRequest) -> (usize, usize) {
    let q = req.query();
    let per = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    (per, page)
}

/// One page of `items` with GitHub's `Link` header (`next`, `last`, `first`, `prev`).
fn paged(base: &str, req: &ServerRequest, items: Vec<Value>) -> ServerResponse {
    let (per, page) = page_of(req);
    let total = items.len();
    let last = total.div_ceil(per).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let mut r = ServerResponse::json(200, &Value::Array(slice));
    let path = req.path().strip_prefix(API_PREFIX).unwrap_or(req.path());
    let link =
        |p: usize, rel: &str| format!("<{base}{path}?per_page={per}&page={p}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        r = with_header(r, "Link", &links.join(", "));
    }
    r
}

fn api(st: &mut GhState, base: &str, req: &ServerRequest) -> ServerResponse {
    const DOCS: &str = "https://docs.github.com/rest";
    let Some(path) = req.path().strip_prefix(API_PREFIX).map(str::to_string) else {
        return gh_error(404, "Not Found", DOCS);
    };
    if req.method != "GET" {
        return gh_error(404, "Not Found", DOCS);
    }
    if req.header("user-agent").is_none_or(|u| u.trim().is_empty()) {
        return ServerResponse::text(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
        );
    }
    st.api_calls += 1;
    let limited = match st.fault {
        GhFault::RateLimited { after } if st.api_calls > after => Some(403),
        GhFault::SecondaryRateLimit { after } if st.api_calls > after => Some(429),
        _ => None,
    };
    let Some(token) = token_of(req, &st.tokens) else {
        let msg = if req.header("authorization").is_some() {
            "Bad credentials"
        } else {
            "Requires authentication"
        };
        return api_headers(gh_error(401, msg, DOCS), 4999, "", "");
    };
    let scopes = token.scopes.join(", ");
    match limited {
        Some(403) => {
            let uid = st.users.get(&token.login).map_or(0, |u| u.id);
            return api_headers(
                gh_error(
                    403,
                    &format!("API rate limit exceeded for user ID {uid}."),
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                ),
                0,
                &scopes,
                "",
            );
        }
        Some(_) => {
            let r = gh_error(
                429,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            );
            return with_header(api_headers(r, 4990, &scopes, ""), "Retry-After", "60");
        }
        None => {}
    }
    let Some(user) = st.users.get(&token.login).cloned() else {
        return api_headers(gh_error(401, "Bad credentials", DOCS), 4999, "", "");
    };
    let ok = |r: ServerResponse, accepted: &str| api_headers(r, 4998, &scopes, accepted);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["user"] => ok(ServerResponse::json(200, &user_json(base, &user)), ""),
        ["user", "emails"] => {
            if !has_any(&token.scopes, &["user", "user:email"]) {
                return ok(
                    gh_error(
                        403,
                        "Resource not accessible by integration",
                        "https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user",
                    ),
                    "user, user:email",
                );
            }
            let items = user
                .emails
                .iter()
                .map(|e| {
                    json!({
                        "email": e.email,
                        "primary": e.primary,
                        "verified": e.verified,
                        "visibility": if e.primary { Value::from("private") } else { Value::Null },
                    })
                })
                .collect();
            ok(paged(base, req, items), "user, user:email")
        }
        ["user", "orgs"] => {
            // "This API requires at least user or read:org scope for OAuth tokens …
            // Requests with insufficient scope will receive a 403 Forbidden response."
            if !has_any(
                &token.scopes,
                &["user", "read:org", "write:org", "admin:org"],
            ) {
                return ok(
                    gh_error(403, "Resource not accessible by integration", "https://docs.github.com/rest/orgs/orgs#list-organizations-for-the-authenticated-user"),
                    "admin:org, read:org, repo, user, write:org",
                );
            }
            let items = user.orgs.iter().map(|o| org_json(base, o)).collect();
            ok(
                paged(base, req, items),
                "admin:org, read:org, repo, user, write:org",
            )
        }
        ["user", "teams"] => {
            if !has_any(
                &token.scopes,
                &["user", "repo", "read:org", "write:org", "admin:org"],
            ) {
                return ok(
                    gh_error(403, "Resource not accessible by integration", "https://docs.github.com/rest/teams/teams#list-teams-for-the-authenticated-user"),
                    "read:org, repo, user",
                );
            }
            let items = user.teams.iter().map(|t| team_json(base, t)).collect();
            ok(paged(base, req, items), "read:org, repo, user")
        }
        ["repos", owner, repo] => {
            let full = format!("{owner}/{repo}");
            match st.repos.get(&full) {
                Some(r) if visible(r, &user.login, &token.scopes) => {
                    let access = r.access.get(&user.login).cloned().unwrap_or(GhRepoAccess {
                        admin: false,
                        push: false,
                        pull: !r.private,
                    });
                    ok(
                        ServerResponse::json(200, &repo_json(base, r, &access)),
                        "repo",
                    )
                }
                _ => ok(
                    gh_error(
                        404,
                        "Not Found",
                        "https://docs.github.com/rest/repos/repos#get-a-repository",
                    ),
                    "repo",
                ),
            }
        }
        ["repos", owner, repo, "collaborators", who] => {
            let full = format!("{owner}/{repo}");
            let Some(r) = st
                .repos
                .get(&full)
                .filter(|r| visible(r, &user.login, &token.scopes))
            else {
                return ok(gh_error(404, "Not Found", DOCS), "repo");
            };
            // Listing collaborators needs push access to the repository.
            if !r.access.get(&user.login).is_some_and(|a| a.push || a.admin) {
                return ok(
                    gh_error(403, "Must have push access to view repository collaborators.", "https://docs.github.com/rest/collaborators/collaborators#check-if-a-user-is-a-repository-collaborator"),
                    "repo",
                );
            }
            if r.access.contains_key(*who) {
                ok(empty(204), "repo")
            } else {
                ok(gh_error(404, "Not Found", DOCS), "repo")
            }
        }
        _ => ok(gh_error(404, "Not Found", DOCS), ""),
    }
}

/// A private repository is visible to its collaborators through a token with `repo`.
fn visible(r: &GhRepo, login: &str, scopes: &[String]) -> bool {
    !r.private || (r.access.contains_key(login) && has_any(scopes, &["repo"]))
}

fn user_json(base: &str, u: &GhUser) -> Value {
    let web = base.trim_end_matches(API_PREFIX);
    json!({
        "login": u.login,
        "id": u.id,
        "node_id": format!("MDQ6VXNlcj{}", u.id),
        "avatar_url": format!("{web}/avatars/u/{}?v=4", u.id),
        "gravatar_id": "",
        "url": format!("{base}/users/{}", u.login),
        "html_url": format!("{web}/{}", u.login),
        "organizations_url": format!("{base}/users/{}/orgs", u.login),
        "repos_url": format!("{base}/users/{}/repos", u.login),
        "type": "User",
        "site_admin": false,
        "name": u.name,
        "company": "@github",
        "blog": "https://github.blog",
        "location": "San Francisco",
        // The public profile email; null when the user keeps it private.
        "email": Value::Null,
        "hireable": Value::Null,
        "bio": Value::Null,
        "twitter_username": Value::Null,
        "public_repos": 8,
        "public_gists": 8,
        "followers": 20,
        "following": 9,
        "created_at": "2011-01-25T18:44:36Z",
        "updated_at": "2024-01-22T12:13:59Z",
    })
}

fn org_json(base: &str, o: &GhOrg) -> Value {
    json!({
        "login": o.login,
        "id": o.id,
        "node_id": format!("MDEyOk9yZ2FuaXphdGlvbj{}", o.id),
        "url": format!("{base}/orgs/{}", o.login),
        "repos_url": format!("{base}/orgs/{}/repos", o.login),
        "events_url": format!("{base}/orgs/{}/events", o.login),
        "hooks_url": format!("{base}/orgs/{}/hooks", o.login),
        "issues_url": format!("{base}/orgs/{}/issues", o.login),
        "members_url": format!("{base}/orgs/{}/members{{/member}}", o.login),
        "public_members_url": format!("{base}/orgs/{}/public_members{{/member}}", o.login),
        "avatar_url": format!("{base}/avatars/o/{}", o.id),
        "description": format!("The {} organisation", o.login),
    })
}

fn team_json(base: &str, t: &GhTeam) -> Value {
    json!({
        "id": t.id,
        "node_id": format!("MDQ6VGVhbT{}", t.id),
        "url": format!("{base}/teams/{}", t.id),
        "html_url": format!("{}/orgs/{}/teams/{}", base.trim_end_matches(API_PREFIX), t.org, t.slug),
        "name": t.slug.replace('-', " "),
        "slug": t.slug,
        "description": "",
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": format!("{base}/teams/{}/members{{/member}}", t.id),
        "repositories_url": format!("{base}/teams/{}/repos", t.id),
        "parent": Value::Null,
        "members_count": 3,
        "repos_count": 10,
        "created_at": "2017-07-14T16:53:42Z",
        "updated_at": "2017-08-17T12:37:15Z",
        "organization": {
            "login": t.org,
            "id": 1,
            "url": format!("{base}/orgs/{}", t.org),
            "type": "Organization",
        },
    })
}

fn repo_json(base: &str, r: &GhRepo, a: &GhRepoAccess) -> Value {
    let (owner, name) = r.full_name.split_once('/').unwrap_or(("", ""));
    json!({
        "id": r.id,
        "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", r.id),
        "name": name,
        "full_name": r.full_name,
        "owner": {"login": owner, "type": "Organization", "url": format!("{base}/users/{owner}")},
        "private": r.private,
        "visibility": if r.private { "private" } else { "public" },
        "html_url": format!("{}/{}", base.trim_end_matches(API_PREFIX), r.full_name),
        "url": format!("{base}/repos/{}", r.full_name),
        "fork": false,
        "archived": false,
        "default_branch": "main",
        "permissions": {
            "admin": a.admin,
            "maintain": a.admin,
            "push": a.push || a.admin,
            "triage": a.push || a.admin,
            "pull": a.pull || a.push || a.admin,
        },
    })
}
