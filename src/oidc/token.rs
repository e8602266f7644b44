//! Token endpoint: authorization-code exchange request and response (RFC 6749 4.1.3-4.1.4).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::form_urlencoded;

use super::error::{OidcError, MAX_DOCUMENT_BYTES};

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAuth {
    #[serde(rename = "client_secret_basic")]
    Basic,
    #[serde(rename = "client_secret_post")]
    Post,
    /// A JWT signed with the client's private key (RFC 7523 2.2, OIDC Core 9); see
    /// [`super::ClientKey`].
    #[serde(rename = "private_key_jwt")]
    PrivateKeyJwt,
}

/// RFC 7523 2.2: how the token endpoint learns `client_assertion` is a JWT.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Headers and body for the token callout; the caller adds `:method`, `:path`,
/// `:authority`. Includes `content-length` because Envoy would otherwise send the body
/// chunked, which some token endpoints reject.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

// Manual Debug: the body holds the code, verifier and maybe the client secret.
impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenRequest")
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Builds the `authorization_code` grant request. An empty `code_verifier` omits the
/// PKCE parameter for providers that reject it.
pub fn code_exchange(
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
    client: &Client,
) -> TokenRequest {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if !code_verifier.is_empty() {
        params.push(("code_verifier", code_verifier));
    }
    form_request(&params, client)
}

/// The `refresh_token` grant (RFC 6749 6).
pub fn refresh_grant(refresh_token: &str, client: &Client) -> TokenRequest {
    form_request(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        client,
    )
}

/// RFC 8693 token exchange of an access token for one with `audience`.
pub fn token_exchange(
    subject_token: &str,
    audience: &str,
    scope: Option<&str>,
    resource: Option<&str>,
    client: &Client,
) -> TokenRequest {
    let mut params = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", subject_token),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("audience", audience),
    ];
    if let Some(scope) = scope {
        params.push(("scope", scope));
    }
    if let Some(resource) = resource {
        params.push(("resource", resource));
    }
    form_request(&params, client)
}

/// RFC 7009 revocation of a refresh token.
pub fn revocation(refresh_token: &str, client: &Client) -> TokenRequest {
    form_request(
        &[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
        client,
    )
}

/// The client's credentials and how it presents them at the token endpoint.
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub auth: ClientAuth,
    /// The signed client assertion for [`ClientAuth::PrivateKeyJwt`], minted for this one
    /// request (its `aud` is the endpoint, its `jti` single-use). Ignored by the other
    /// methods. Without it such a request carries only `client_id`, which the provider
    /// will refuse.
    pub assertion: Option<&'a str>,
}

fn form_request(params: &[(&str, &str)], client: &Client) -> TokenRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(params);
    match client.auth {
        ClientAuth::Post => {
            form.append_pair("client_id", client.id)
                .append_pair("client_secret", client.secret);
        }
        ClientAuth::PrivateKeyJwt => {
            form.append_pair("client_id", client.id);
            if let Some(assertion) = client.assertion {
                form.append_pair("client_assertion_type", JWT_BEARER_ASSERTION)
                    .append_pair("client_assertion", assertion);
            }
        }
        ClientAuth::Basic => {}
    }
    let body = form.finish().into_bytes();

    let mut headers = vec![
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept".to_owned(), "application/json".to_owned()),
        ("content-length".to_owned(), body.len().to_string()),
    ];
    if client.auth == ClientAuth::Basic {
        headers.push((
            "authorization".to_owned(),
            basic_credentials(client.id, client.secret),
        ));
    }
    TokenRequest { headers, body }
}

/// RFC 6749 2.3.1 form-encodes id and secret *before* base64, so `:` or `%` in a secret
/// cannot be confused with the separator; servers decode symmetrically.
fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A successful token response. Debug is redacted so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub token_type: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("id_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// Interprets the token endpoint's reply. Errors carry at most the OAuth `error` code,
/// never the body, since bodies may echo codes or secrets.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, OidcError> {
    let tokens = parse_grant_response(status, body)?;
    if tokens.id_token.is_empty() {
        return Err(OidcError::MissingField("id_token"));
    }
    Ok(tokens)
}

/// A refresh or token-exchange answer, where `id_token` may be absent (left empty).
pub fn parse_grant_response(status: u16, body: &[u8]) -> Result<TokenResponse, OidcError> {
    let json = if body.len() <= MAX_DOCUMENT_BYTES {
        serde_json::from_slice::<Value>(body).ok()
    } else {
        None
    };
    let obj = json.as_ref().and_then(Value::as_object);
    let error_code = obj.and_then(|o| o.get("error")).and_then(Value::as_str);

    // Some providers (GitHub among them) report errors with a 200.
    if !(200..300).contains(&status) || error_code.is_some() {
        return Err(OidcError::TokenEndpoint {
            status,
            error: error_code.and_then(sanitize_error_code),
        });
    }
    let obj = obj.ok_or(OidcError::Malformed)?;

    let access_token = required(obj, "access_token")?;
    let token_type = required(obj, "token_type")?;
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(OidcError::BadTokenType);
    }
    let id_token = obj
        .get("id_token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let refresh_token = obj
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);

    Ok(TokenResponse {
        access_token,
        id_token,
        refresh_token,
        expires_in: obj.get("expires_in").and_then(lenient_u64),
        token_type,
    })
}

fn required(obj: &Map<String, Value>, name: &'static str) -> Result<String, OidcError> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or(OidcError::MissingField(name))
}

/// Some providers (older Azure AD) send `expires_in` as a string.
fn lenient_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Keeps only codes in the RFC 6749 5.2 character set, so a hostile server cannot inject
/// log lines or smuggle token material through the error.
fn sanitize_error_code(code: &str) -> Option<String> {
    let valid = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\');
    valid.then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header<'a>(req: &'a TokenRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn form(req: &TokenRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(&req.body).into_owned().collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    fn client<'a>(id: &'a str, secret: &'a str, auth: ClientAuth) -> Client<'a> {
        Client {
            id,
            secret,
            auth,
            assertion: None,
        }
    }

    #[test]
    fn refresh_exchange_and_revocation_forms() {
        let c = client("id", "s", ClientAuth::Post);
        let f = form(&refresh_grant("RT", &c));
        assert!(f.contains(&pair("grant_type", "refresh_token")));
        assert!(f.contains(&pair("refresh_token", "RT")));
        assert!(f.contains(&pair("client_secret", "s")));
        let f = form(&token_exchange("AT", "api", Some("read"), None, &c));
        assert!(f.contains(&pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        )));
        assert!(f.contains(&pair("subject_token", "AT")));
        assert!(f.contains(&pair("audience", "api")));
        assert!(f.contains(&pair("scope", "read")));
        assert!(!f.iter().any(|(k, _)| k == "resource"));
        let f = form(&revocation("RT", &c));
        assert_eq!(
            f[..2],
            [
                pair("token", "RT"),
                pair("token_type_hint", "refresh_token")
            ]
        );
    }

    #[test]
    fn grant_answers_may_lack_an_id_token() {
        let body = json!({"access_token": "a", "token_type": "Bearer", "expires_in": 5});
        let t = parse_grant_response(200, body.to_string().as_bytes()).unwrap();
        assert_eq!((t.id_token.as_str(), t.expires_in), ("", Some(5)));
        assert!(parse_token_response(200, body.to_string().as_bytes()).is_err());
    }

    #[test]
    fn basic_exchange() {
        let req = code_exchange(
            "c0de",
            "https://app/cb?x=1",
            "verif",
            &client("my id", "s3:cr%t+/=", ClientAuth::Basic),
        );
        assert_eq!(
            form(&req),
            vec![
                pair("grant_type", "authorization_code"),
                pair("code", "c0de"),
                pair("redirect_uri", "https://app/cb?x=1"),
                pair("code_verifier", "verif"),
            ]
        );
        assert_eq!(
            header(&req, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(
            header(&req, "content-length"),
            Some(req.body.len().to_string().as_str())
        );
        let auth = header(&req, "authorization").unwrap();
        let decoded = STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my+id:s3%3Acr%25t%2B%2F%3D"
        );
        assert!(!String::from_utf8_lossy(&req.body).contains("client_secret"));
    }

    #[test]
    fn post_exchange() {
        let req = code_exchange(
            "c",
            "https://app/cb",
            "",
            &client("id", "sec ret", ClientAuth::Post),
        );
        assert_eq!(header(&req, "authorization"), None);
        let f = form(&req);
        assert!(f.contains(&pair("client_id", "id")));
        assert!(f.contains(&pair("client_secret", "sec ret")));
        assert!(!f.iter().any(|(k, _)| k == "code_verifier"));
        assert!(!String::from_utf8(req.body.clone())
            .unwrap()
            .contains("sec ret"));
    }

    #[test]
    fn debug_is_redacted() {
        let req = code_exchange(
            "thecode",
            "https://app/cb",
            "v",
            &client("id", "topsecret", ClientAuth::Post),
        );
        let s = format!("{req:?}");
        assert!(!s.contains("thecode") && !s.contains("topsecret"));
        let resp = parse_token_response(200, ok_body().to_string().as_bytes()).unwrap();
        let s = format!("{resp:?}");
        assert!(!s.contains("AT-value") && !s.contains("eyJ") && !s.contains("RT-value"));
    }

    fn ok_body() -> Value {
        json!({
            "access_token": "AT-value",
            "id_token": "eyJ.x.y",
            "refresh_token": "RT-value",
            "expires_in": 3600,
            "token_type": "bearer",
            "scope": "openid"
        })
    }

    #[test]
    fn parses_success() {
        let r = parse_token_response(200, ok_body().to_string().as_bytes()).unwrap();
        assert_eq!(r.access_token, "AT-value");
        assert_eq!(r.id_token, "eyJ.x.y");
        assert_eq!(r.refresh_token.as_deref(), Some("RT-value"));
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.token_type, "bearer");

        let mut b = ok_body();
        b["expires_in"] = json!("120");
        b.as_object_mut().unwrap().remove("refresh_token");
        let r = parse_token_response(201, b.to_string().as_bytes()).unwrap();
        assert_eq!((r.expires_in, r.refresh_token), (Some(120), None));
    }

    #[test]
    fn rejects_bad_success_bodies() {
        let mut b = ok_body();
        b["token_type"] = json!("mac");
        assert_eq!(
            parse_token_response(200, b.to_string().as_bytes()),
            Err(OidcError::BadTokenType)
        );
        let mut b = ok_body();
        b.as_object_mut().unwrap().remove("id_token");
        assert_eq!(
            parse_token_response(200, b.to_string().as_bytes()),
            Err(OidcError::MissingField("id_token"))
        );
        let mut b = ok_body();
        b["access_token"] = json!("");
        assert_eq!(
            parse_token_response(200, b.to_string().as_bytes()),
            Err(OidcError::MissingField("access_token"))
        );
        assert_eq!(
            parse_token_response(200, b"<html>"),
            Err(OidcError::Malformed)
        );
    }

    #[test]
    fn error_responses_carry_only_the_code() {
        let body = json!({"error": "invalid_grant", "error_description": "code eyJsecret expired"});
        assert_eq!(
            parse_token_response(400, body.to_string().as_bytes()),
            Err(OidcError::TokenEndpoint {
                status: 400,
                error: Some("invalid_grant".into())
            })
        );
        assert_eq!(
            parse_token_response(502, b"upstream connect error"),
            Err(OidcError::TokenEndpoint {
                status: 502,
                error: None
            })
        );
        assert_eq!(
            parse_token_response(200, br#"{"error":"bad_verification_code"}"#),
            Err(OidcError::TokenEndpoint {
                status: 200,
                error: Some("bad_verification_code".into())
            })
        );
        let injected = json!({"error": "x\nFAKE LOG LINE"});
        assert_eq!(
            parse_token_response(401, injected.to_string().as_bytes()),
            Err(OidcError::TokenEndpoint {
                status: 401,
                error: None
            })
        );
        let long = json!({"error": "e".repeat(65)});
        assert_eq!(
            parse_token_response(401, long.to_string().as_bytes()),
            Err(OidcError::TokenEndpoint {
                status: 401,
                error: None
            })
        );
    }

    #[test]
    fn client_auth_serde_names() {
        assert_eq!(
            serde_json::to_string(&ClientAuth::Basic).unwrap(),
            "\"client_secret_basic\""
        );
        let post: ClientAuth = serde_json::from_str("\"client_secret_post\"").unwrap();
        assert_eq!(post, ClientAuth::Post);
        assert_eq!(
            serde_json::to_string(&ClientAuth::PrivateKeyJwt).unwrap(),
            "\"private_key_jwt\""
        );
        let jwt: ClientAuth = serde_json::from_str("\"private_key_jwt\"").unwrap();
        assert_eq!(jwt, ClientAuth::PrivateKeyJwt);
    }

    #[test]
    fn private_key_jwt_sends_the_assertion_and_no_secret() {
        let key = crate::oidc::ClientKey::from_pem(
            &p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(
                crate::oidc::testkeys::ec_key(),
                p256::pkcs8::LineEnding::LF,
            )
            .unwrap(),
            None,
        )
        .unwrap();
        let assertion = key
            .assertion("my id", "https://idp/token", 1_700_000_000, "jti-1")
            .unwrap();
        let c = Client {
            id: "my id",
            secret: "topsecret",
            auth: ClientAuth::PrivateKeyJwt,
            assertion: Some(&assertion),
        };
        let jwt_auth = [
            pair("client_id", "my id"),
            pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            pair("client_assertion", &assertion),
        ];
        let requests = [
            (
                code_exchange("c0de", "https://app/cb", "verif", &c),
                vec![
                    pair("grant_type", "authorization_code"),
                    pair("code", "c0de"),
                    pair("redirect_uri", "https://app/cb"),
                    pair("code_verifier", "verif"),
                ],
            ),
            (
                refresh_grant("RT", &c),
                vec![
                    pair("grant_type", "refresh_token"),
                    pair("refresh_token", "RT"),
                ],
            ),
            (
                revocation("RT", &c),
                vec![
                    pair("token", "RT"),
                    pair("token_type_hint", "refresh_token"),
                ],
            ),
        ];
        for (req, grant) in requests {
            let expected: Vec<(String, String)> =
                grant.into_iter().chain(jwt_auth.iter().cloned()).collect();
            assert_eq!(form(&req), expected);
            assert_eq!(header(&req, "authorization"), None);
            let body = String::from_utf8(req.body.clone()).unwrap();
            assert!(!body.contains("topsecret") && !body.contains("client_secret"));
            assert!(!req.headers.iter().any(|(_, v)| v.contains("topsecret")));
        }
        let f = form(&token_exchange("AT", "api", None, None, &c));
        assert!(f.ends_with(&jwt_auth));

        // Without an assertion nothing stands in for it, least of all the secret.
        let bare = Client {
            assertion: None,
            ..c
        };
        let req = refresh_grant("RT", &bare);
        assert_eq!(
            form(&req),
            vec![
                pair("grant_type", "refresh_token"),
                pair("refresh_token", "RT"),
                pair("client_id", "my id"),
            ]
        );
        assert_eq!(header(&req, "authorization"), None);
    }

    #[test]
    fn other_methods_ignore_an_assertion() {
        for auth in [ClientAuth::Basic, ClientAuth::Post] {
            let c = Client {
                assertion: Some("eyJ.stray.assertion"),
                ..client("id", "s", auth)
            };
            let with = code_exchange("c", "https://app/cb", "v", &c);
            let without = code_exchange("c", "https://app/cb", "v", &client("id", "s", auth));
            assert_eq!(with, without);
            assert!(!String::from_utf8_lossy(&with.body).contains("assertion"));
        }
    }
}
