//! Microsoft Entra ID (v2.0 endpoints) as the `ms-entra-id` provider meets it, on two
//! listeners:
//!
//! - `login` (login.microsoftonline.com): `/{common|organizations}/v2.0/.well-known/openid-configuration`
//!   whose issuer is the template `http://127.0.0.1:<port>/{tenantid}/v2.0`,
//!   `/common/oauth2/v2.0/authorize` (straight back as the configured user, with
//!   `session_state`), `/common/oauth2/v2.0/token` (client credentials, code, `redirect_uri`,
//!   PKCE; an RS256 v2.0 ID token naming the user's own tenant in `iss` and `tid`, `oid`, a
//!   pairwise `sub`, and either `groups` or — for a user in too many groups — the overage
//!   claims `_claim_names` / `_claim_sources`), `/common/discovery/v2.0/keys`;
//! - `graph` (graph.microsoft.com): `/oidc/userinfo` (the discovery's `userinfo_endpoint`, as
//!   Entra publishes it) and `GET /v1.0/me/transitiveMemberOf` (`$select`, `$top`, server-side
//!   paging with `@odata.nextLink` on `https://graph.microsoft.com/…` and `$skiptoken`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::jwt::{self, Key};
use super::mock_common::{approve, authorization, code_issuer, listen, token_of, Grant, Late, Log};
use super::mock_oidc::{discovery, id_token, jwks, redeem, want_openid, Refused};
use super::upstream::{MiniServer, ServerRequest, ServerResponse};

/// Where Graph's `@odata.nextLink`s point (the filter only follows links on this host).
pub const GRAPH_HOST: &str = "graph.microsoft.com";

#[derive(Clone, Debug)]
pub struct EntraUser {
    pub oid: String,
    pub tid: String,
    pub name: String,
    /// The UPN, as `preferred_username`.
    pub upn: String,
    pub email: Option<String>,
    /// Group object ids (transitive).
    pub groups: Vec<String>,
    /// Put the overage claims in the ID token instead of `groups` (Entra does so above 200).
    pub overage: bool,
    /// The optional claim `xms_edov` ("email domain owner verified", Microsoft identity
    /// platform: optional claims reference), sent when set.
    pub xms_edov: Option<bool>,
}

pub struct EntraState {
    pub client_id: String,
    pub client_secret: String,
    pub users: HashMap<String, EntraUser>,
    /// The UPN of the user who approves the next authorization request.
    pub current: String,
    /// Graph answers at most this many groups a page (whatever `$top` asks).
    pub graph_page_size: usize,
    pub key: Key,
    codes: HashMap<String, Grant>,
    /// access token -> UPN
    tokens: HashMap<String, String>,
    pub violations: Vec<String>,
}

code_issuer!(EntraState);

pub struct MockEntra {
    pub login: MiniServer,
    pub graph: MiniServer,
    pub state: Arc<Mutex<EntraState>>,
    pub log: Log,
}

#[derive(Clone, Default)]
struct Urls {
    login: String,
    graph: String,
}

impl MockEntra {
    pub fn start(client_id: &str, client_secret: &str) -> MockEntra {
        let state = Arc::new(Mutex::new(EntraState {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            users: HashMap::new(),
            current: String::new(),
            graph_page_size: 100,
            key: Key::load("JDNa_4i4r7FgigL3sHIlI3xV-IU", jwt::K9_PEM),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            violations: Vec::new(),
        }));
        let log = Log::default();
        let urls = Late::default();
        let login_srv = listen("login", &state, &urls, &log, login);
        let graph_srv = listen("graph", &state, &urls, &log, |st, _, req| graph(st, req));
        urls.set(Urls {
            login: format!("http://127.0.0.1:{}", login_srv.port),
            graph: format!("http://127.0.0.1:{}", graph_srv.port),
        });
        MockEntra {
            login: login_srv,
            graph: graph_srv,
            state,
            log,
        }
    }

    /// The multi-tenant issuer to configure: `http://127.0.0.1:<port>/common/v2.0`.
    pub fn common_issuer(&self) -> String {
        format!("http://127.0.0.1:{}/common/v2.0", self.login.port)
    }
    /// The issuer a user of tenant `tid` gets in `iss`.
    pub fn tenant_issuer(&self, tid: &str) -> String {
        format!("http://127.0.0.1:{}/{tid}/v2.0", self.login.port)
    }
    pub fn add_user(&self, u: EntraUser) {
        self.st().users.insert(u.upn.clone(), u);
    }
    pub fn approve_as(&self, upn: &str) {
        self.st().current = upn.to_string();
    }
    pub fn set_graph_page_size(&self, n: usize) {
        self.st().graph_page_size = n;
    }
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }
    fn st(&self) -> MutexGuard<'_, EntraState> {
        self.state.lock().expect("entra")
    }
}

fn aad_error(status: u16, code: &str, description: &str, codes: &[u32]) -> ServerResponse {
    ServerResponse::json(
        status,
        &json!({
            "error": code,
            "error_description": description,
            "error_codes": codes,
            "timestamp": "2024-05-01 10:00:00Z",
            "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
            "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        }),
    )
}

fn login(st: &mut EntraState, urls: &Urls, req: &ServerRequest) -> ServerResponse {
    let path = req.path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", [tenant, "v2.0", ".well-known", "openid-configuration"])
            if matches!(*tenant, "common" | "organizations") =>
        {
            ServerResponse::json(200, &entra_discovery(urls, tenant))
        }
        ("GET", [_, "discovery", "v2.0", "keys"]) => {
            let mut jwk = st.key.jwk();
            jwk["x5t"] = json!(st.key.kid);
            jwk["issuer"] = json!(format!("{}/{{tenantid}}/v2.0", urls.login));
            jwks(vec![jwk])
        }
        ("GET", ["common", "oauth2", "v2.0", "authorize"]) => authorize(st, req),
        ("POST", ["common", "oauth2", "v2.0", "token"]) => token(st, urls, req),
        _ => ServerResponse::text(404, "Not Found"),
    }
}

fn entra_discovery(u: &Urls, tenant: &str) -> Value {
    let l = &u.login;
    discovery(
        &format!("{l}/{{tenantid}}/v2.0"),
        json!({
            "token_endpoint": format!("{l}/{tenant}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{l}/{tenant}/discovery/v2.0/keys"),
            "subject_types_supported": ["pairwise"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": format!("{}/oidc/userinfo", u.graph),
            "authorization_endpoint": format!("{l}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{l}/{tenant}/oauth2/v2.0/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{l}/{tenant}/oauth2/v2.0/logout"),
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": format!("{l}/{tenant}/kerberos"),
            "tenant_region_scope": Value::Null,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": GRAPH_HOST,
            "rbac_url": "https://pas.windows.net",
        }),
    )
}

fn authorize(st: &mut EntraState, req: &ServerRequest) -> ServerResponse {
    let Some((g, state)) = authorization(st, req) else {
        return ServerResponse::text(400, "AADSTS700016: Application not found in the directory.");
    };
    want_openid(st, &g);
    let code = format!("1.AXkA{}", super::random_token(48));
    approve(
        st,
        &code,
        g,
        &[
            ("code", &code),
            ("state", &state),
            ("session_state", "00000000-0000-0000-4d41-f5f1d2c3b4a5"),
        ],
    )
}

/// Entra's `sub` is pairwise: the same user has another `sub` in another application.
fn pairwise_sub(oid: &str, client_id: &str) -> String {
    let d = Sha256::digest(format!("{oid}|{client_id}").as_bytes());
    jwt::b64(&d)[..43].to_string()
}

fn token(st: &mut EntraState, urls: &Urls, req: &ServerRequest) -> ServerResponse {
    let grant = match redeem(st, req) {
        Ok(g) => g,
        Err(r) => {
            let (description, code) = match r {
                Refused::Client => ("AADSTS7000215: Invalid client secret provided.", 7000215),
                Refused::Code => ("AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.", 70008),
                Refused::Grant(_) => ("AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.", 501481),
            };
            return aad_error(r.status(), r.error(), description, &[code]);
        }
    };
    let Some(u) = st.users.get(&grant.user).cloned() else {
        return aad_error(400, "invalid_grant", "no such user", &[50034]);
    };
    let access_token = format!("eyJ0eXAiOiJKV1QiLCJub25jZSI6.{}", super::random_token(64));
    st.tokens.insert(access_token.clone(), u.upn.clone());
    let now = super::now();
    let mut claims = json!({
        "aud": st.client_id,
        "iss": format!("{}/{}/v2.0", urls.login, u.tid),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "aio": super::random_token(24),
        "name": u.name,
        "oid": u.oid,
        "preferred_username": u.upn,
        "rh": "0.AXkAmock.",
        "sid": "004f8d1c-7a2e-4b3f-9c5d-6e7f8a9b0c1d",
        "sub": pairwise_sub(&u.oid, &st.client_id),
        "tid": u.tid,
        "uti": super::random_token(16),
        "ver": "2.0",
    });
    if let Some(e) = &u.email {
        claims["email"] = json!(e);
    }
    if let Some(v) = u.xms_edov {
        claims["xms_edov"] = json!(v);
    }
    if u.overage || u.groups.len() > 200 {
        claims["_claim_names"] = json!({"groups": "src1"});
        claims["_claim_sources"] = json!({"src1": {"endpoint": format!(
            "https://graph.windows.net/{}/users/{}/getMemberObjects", u.tid, u.oid
        )}});
    } else {
        claims["groups"] = json!(u.groups);
    }
    let id_token = id_token(&st.key, &grant, claims);
    ServerResponse::json(
        200,
        &json!({
            "token_type": "Bearer",
            "scope": "openid profile email https://graph.microsoft.com/User.Read",
            "expires_in": 4107,
            "ext_expires_in": 4107,
            "access_token": access_token,
            "id_token": id_token,
        }),
    )
}

fn graph_error(status: u16, code: &str, message: &str) -> ServerResponse {
    ServerResponse::json(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {
            "date": "2024-05-01T10:00:00",
            "request-id": "b8b5f2d6-0000-0000-0000-000000000000",
            "client-request-id": "b8b5f2d6-0000-0000-0000-000000000000",
        }}}),
    )
}

fn graph(st: &mut EntraState, req: &ServerRequest) -> ServerResponse {
    let Some(upn) = token_of(req, &st.tokens) else {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        );
    };
    let Some(u) = st.users.get(&upn).cloned() else {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        );
    };
    match (req.method.as_str(), req.path()) {
        ("GET" | "POST", "/oidc/userinfo") => {
            let mut v = json!({
                "sub": pairwise_sub(&u.oid, &st.client_id),
                "name": u.name,
                "family_name": "Mock",
                "given_name": u.name.split(' ').next().unwrap_or(""),
                "picture": "https://graph.microsoft.com/v1.0/me/photo/$value",
            });
            if let Some(e) = &u.email {
                v["email"] = json!(e);
            }
            ServerResponse::json(200, &v)
        }
        ("GET", "/v1.0/me/transitiveMemberOf") => {
            let q = req.query();
            let top = q
                .get("$top")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(100);
            if top == 0 || top > 999 {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "Invalid page size specified: '0'. Must be between 1 and 999 inclusive.",
                );
            }
            let per = top.min(st.graph_page_size);
            let from = q
                .get("$skiptoken")
                .and_then(|t| t.strip_prefix("RFNwdAIAAQAAA"))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let value: Vec<Value> = u
                .groups
                .iter()
                .skip(from)
                .take(per)
                .map(|g| json!({"@odata.type": "#microsoft.graph.group", "id": g}))
                .collect();
            let mut body = json!({
                "@odata.context": format!("https://{GRAPH_HOST}/v1.0/$metadata#directoryObjects(id)"),
                "value": value,
            });
            if from + per < u.groups.len() {
                let mut link = format!(
                    "https://{GRAPH_HOST}/v1.0/me/transitiveMemberOf?$top={top}&$skiptoken=RFNwdAIAAQAAA{}",
                    from + per
                );
                if let Some(sel) = q.get("$select") {
                    link = format!(
                        "https://{GRAPH_HOST}/v1.0/me/transitiveMemberOf?$select={sel}&$top={top}&$skiptoken=RFNwdAIAAQAAA{}",
                        from + per
                    );
                }
                body["@odata.nextLink"] = json!(link);
            }
            ServerResponse::json(200, &body)
        }
        _ => graph_error(400, "BadRequest", "Resource not found for the segment."),
    }
}
