//! End-to-end tests of the protocols beyond HTTP/1.1 page loads, through a real Envoy running
//! the optimized filter and the real oidc-provider IdP (`idp/server.js`):
//!
//! - WebSocket: a real WebSocket echo app (tungstenite) behind Envoy's websocket upgrade;
//! - gRPC over h2c: a real tonic client and a tonic server (no codegen: prost-derived
//!   messages, `tonic::client::Grpc` and a hand-written `tonic::server::Grpc::unary` service
//!   on hyper's HTTP/2), Envoy speaking h2c to the app;
//! - the browser login with every request to Envoy over HTTP/2 (h2c, prior knowledge).
//!
//! Run with (all three variables are required; a missing one FAILS the tests):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e protocols:: -- --test-threads 2
//! ```

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::support::checks::{
    assert_gate_401, assert_login_redirect, authz_endpoint, is_session_cookie_name,
    session_cookies_set, CSRF, SESSION,
};
use crate::support::http::{
    format_hops, h2c_request, raw_request, Browser, Response, BROWSER_ACCEPT,
};
use crate::support::jwt;
use crate::support::stack::{App, Stack};

/// Identity headers a client forges along with its credential: none of these values may
/// reach the app.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Forwarded-User", "admin@example.com"),
    ("X-Forwarded-Email", "admin@example.com"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "admin"),
    ("X-Auth-Request-Email", "admin@example.com"),
    ("X-Auth-Request-User", "admin@example.com"),
];

/// john's identity as the app must receive it, each header exactly once.
const JOHN: &[(&str, &str)] = &[
    ("x-forwarded-user", "john@example.com"),
    ("x-forwarded-email", "john@example.com"),
    ("x-forwarded-preferred-username", "john"),
    ("x-forwarded-groups", "developers"),
    ("x-auth-request-user", "john@example.com"),
    ("x-auth-request-email", "john@example.com"),
];

const HTML: (&str, &str) = ("Accept", BROWSER_ACCEPT);
const API: (&str, &str) = ("Accept", "application/json");

// ------------------------------------------------------------------------- helpers

/// Every value of header `name` (any case) in `headers`.
fn values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Cookie names in every `cookie` header of `headers`.
fn cookie_names(headers: &[(String, String)]) -> Vec<String> {
    values(headers, "cookie")
        .iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// What the app received carries john's identity (each header exactly once), none of the
/// forged values, none of the gate's cookies, and the app's own cookie `keep` if given.
fn expect_john(st: &Stack, ctx: &str, headers: &[(String, String)], keep: Option<&str>) {
    for (name, want) in JOHN {
        let got = values(headers, name);
        st.check(got == [*want], || {
            format!("{ctx}: the app got {name} = {got:?}, want exactly [{want:?}]: {headers:?}")
        });
    }
    for (name, value) in headers {
        st.check(
            !value.contains("admin@example.com") && !SPOOFS.iter().any(|(_, f)| value == f),
            || format!("{ctx}: a forged value reached the app: {name}: {value}"),
        );
    }
    let names = cookie_names(headers);
    st.check(
        !names
            .iter()
            .any(|n| is_session_cookie_name(n) || n.as_str() == CSRF),
        || format!("{ctx}: the gate's cookies reached the app: {names:?}"),
    );
    if let Some(k) = keep {
        st.check(names.iter().any(|n| n == k), || {
            format!("{ctx}: the app's own cookie {k} was dropped: {headers:?}")
        });
    }
}

/// The browser's `Cookie` header for the stack (session included).
fn session_cookie(st: &Stack, b: &Browser) -> String {
    let c = b
        .cookie_header(&url::Url::parse(&st.url("/")).expect("url"))
        .unwrap_or_else(|| st.fail("the browser holds no cookie after login"));
    st.check(c.contains(&format!("{SESSION}=")), || {
        format!("no session cookie in {c}")
    });
    c
}

/// The JSON an app answers plain HTTP requests with: like the Recorder's `/headers` echo,
/// each header lowercase with its copies joined, and `_raw` as received.
fn echo_json(headers: &[(String, String)]) -> Vec<u8> {
    let mut obj = Map::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        let nv = match obj.get(&k) {
            Some(Value::String(old)) => format!("{old}, {v}"),
            _ => v.clone(),
        };
        obj.insert(k, Value::String(nv));
    }
    let raw: Vec<Value> = headers.iter().map(|(k, v)| json!([k, v])).collect();
    obj.insert("_raw".into(), Value::Array(raw));
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

/// A fresh current-thread tokio runtime (clients and servers here each run their own).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ------------------------------------------------------------- the WebSocket echo app

/// What the WebSocket app received on one connection: the request head, as sent.
#[derive(Clone, Debug)]
struct WsSeen {
    target: String,
    headers: Vec<(String, String)>,
}

impl WsSeen {
    fn is_upgrade(&self) -> bool {
        values(&self.headers, "upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// An HTTP/1.1 app that takes WebSocket upgrades (tungstenite's server handshake) and
/// echoes: it greets with `hello <x-forwarded-email values>`, answers a text message `t`
/// with `echo: t` and a binary message with its bytes reversed. A plain request gets the
/// JSON header echo (the login lands there). One request per connection.
struct WsApp {
    port: u16,
    /// TCP connections accepted.
    accepts: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<WsSeen>>>,
    stop: Arc<AtomicBool>,
}

/// A stream that first replays the bytes already read from it.
struct Replay {
    pre: std::io::Cursor<Vec<u8>>,
    s: TcpStream,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.pre.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.s.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

impl WsApp {
    fn start() -> WsApp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the WebSocket app");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let app = WsApp {
            port,
            accepts: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (accepts, seen, stop) = (app.accepts.clone(), app.seen.clone(), app.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepts.fetch_add(1, Ordering::SeqCst);
                        let seen = seen.clone();
                        std::thread::spawn(move || ws_conn(s, seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        app
    }
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
    fn seen(&self) -> Vec<WsSeen> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for WsApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn ws_conn(mut s: TcpStream, seen: Arc<Mutex<Vec<WsSeen>>>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    // The request head, as sent.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let req = WsSeen { target, headers };
    seen.lock().expect("lock").push(req.clone());

    if !req.is_upgrade() {
        let body = echo_json(&req.headers);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
        return;
    }
    // tungstenite's own server handshake checks the upgrade as any server would.
    let stream = Replay {
        pre: std::io::Cursor::new(buf),
        s,
    };
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    let hello = format!(
        "hello {}",
        values(&req.headers, "x-forwarded-email").join(",")
    );
    if ws.send(Message::text(hello)).is_err() {
        return;
    }
    loop {
        let reply = match ws.read() {
            Ok(Message::Text(t)) => Message::text(format!("echo: {}", t.as_str())),
            Ok(Message::Binary(b)) => Message::binary(b.iter().rev().copied().collect::<Vec<u8>>()),
            Ok(_) => continue,
            Err(_) => return,
        };
        if ws.send(reply).is_err() {
            return;
        }
    }
}

type Ws = tungstenite::WebSocket<TcpStream>;
type WsResponse = tungstenite::handshake::client::Response;

/// Open a WebSocket through Envoy at `path` with `headers` on the upgrade request. `Err` is
/// the answer when the upgrade was refused (anything but 101).
fn ws_open(
    st: &Stack,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, WsResponse), Box<WsResponse>> {
    let url = format!("ws://127.0.0.1:{}{path}", st.listen_port);
    let mut req = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|e| st.fail(&format!("{url}: {e}")));
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
        let value = http::HeaderValue::from_str(v).expect("header value");
        req.headers_mut().append(name, value);
    }
    let tcp = TcpStream::connect(("127.0.0.1", st.listen_port))
        .unwrap_or_else(|e| st.fail(&format!("connect to Envoy: {e}")));
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    tcp.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    match tungstenite::client(req, tcp) {
        Ok(pair) => Ok(pair),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(resp),
        Err(e) => st.fail(&format!("WebSocket upgrade at {path}: {e}")),
    }
}

fn ws_summary(r: &WsResponse) -> String {
    let body = r
        .body()
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    format!("{} {:?} body={body:?}", r.status(), r.headers())
}

/// Read the next data message (a failure is the test's failure).
fn ws_next(st: &Stack, ws: &mut Ws, ctx: &str) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(m) => return m,
            Err(e) => st.fail(&format!("{ctx}: reading from the WebSocket: {e}")),
        }
    }
}

// --------------------------------------------------------------- the gRPC app (tonic)

/// The messages of `wop.test.Identity/Whoami`, as prost would generate them from
///
/// ```proto
/// message WhoamiRequest { string note = 1; }
/// message Metadata { string name = 1; string value = 2; }
/// message WhoamiReply { string note = 1; repeated Metadata metadata = 2; }
/// ```
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoamiRequest {
    #[prost(string, tag = "1")]
    pub note: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoamiReply {
    /// The request's note, echoed.
    #[prost(string, tag = "1")]
    pub note: String,
    /// Every metadata entry the server received (`x-forwarded-email` and the rest).
    #[prost(message, repeated, tag = "2")]
    pub metadata: Vec<Metadata>,
}

impl WhoamiReply {
    fn headers(&self) -> Vec<(String, String)> {
        self.metadata
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect()
    }
}

const WHOAMI: &str = "/wop.test.Identity/Whoami";

/// Headers (or metadata) as received: name and value, in order, duplicates kept.
type Headers = Vec<(String, String)>;
/// The metadata of every call the gRPC server handled.
type Calls = Arc<Mutex<Vec<Headers>>>;
/// Path and headers of every request the gRPC app received.
type Requests = Arc<Mutex<Vec<(String, Headers)>>>;

/// What tonic-build generates for a service with the one unary method `Whoami`: a
/// `tower::Service` over HTTP requests that routes the method's path to
/// `tonic::server::Grpc::unary` and answers any other path UNIMPLEMENTED.
#[derive(Clone)]
struct IdentityServer {
    /// Metadata of every call the server handled.
    calls: Calls,
}

impl tonic::server::NamedService for IdentityServer {
    const NAME: &'static str = "wop.test.Identity";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The `Whoami` method itself.
struct Whoami(Calls);

impl tower_service::Service<tonic::Request<WhoamiRequest>> for Whoami {
    type Response = tonic::Response<WhoamiReply>;
    type Error = tonic::Status;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<WhoamiRequest>) -> Self::Future {
        let metadata: Vec<(String, String)> = req
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        self.0.lock().expect("lock").push(metadata.clone());
        let reply = WhoamiReply {
            note: req.into_inner().note,
            metadata: metadata
                .into_iter()
                .map(|(name, value)| Metadata { name, value })
                .collect(),
        };
        Box::pin(async move { Ok(tonic::Response::new(reply)) })
    }
}

impl<B> tower_service::Service<http::Request<B>> for IdentityServer
where
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == WHOAMI {
            let method = Whoami(self.calls.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, req).await)
            })
        } else {
            Box::pin(async move { Ok(tonic::Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// The gRPC app: an HTTP/2-only (h2c) hyper server in its own thread. gRPC requests go to
/// the `IdentityServer`; any other request (the browser's login lands here) gets the JSON
/// header echo and is recorded.
struct GrpcApp {
    port: u16,
    calls: Calls,
    /// Every request received: path and headers.
    requests: Requests,
    stop: Arc<AtomicBool>,
}

impl GrpcApp {
    fn start() -> GrpcApp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gRPC app");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let app = GrpcApp {
            port,
            calls: Arc::new(Mutex::new(Vec::new())),
            requests: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (calls, requests, stop) = (app.calls.clone(), app.requests.clone(), app.stop.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while !stop.load(Ordering::SeqCst) {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
                    let Ok(Ok((tcp, _))) = accepted else { continue };
                    let grpc = IdentityServer {
                        calls: calls.clone(),
                    };
                    let requests = requests.clone();
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let mut grpc = grpc.clone();
                            let requests = requests.clone();
                            async move { grpc_app_handle(&mut grpc, &requests, req).await }
                        },
                    );
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                    });
                }
            })
        });
        app
    }
    fn calls(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
    fn requests(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

impl Drop for GrpcApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn grpc_app_handle(
    grpc: &mut IdentityServer,
    requests: &Requests,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    requests
        .lock()
        .expect("lock")
        .push((req.uri().path().to_string(), headers.clone()));
    let is_grpc = values(&headers, "content-type")
        .iter()
        .any(|v| v.starts_with("application/grpc"));
    if is_grpc {
        return tower_service::Service::call(grpc, req).await;
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(echo_json(&headers)));
    let mut resp = http::Response::new(tonic::body::Body::new(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The client side's transport: one HTTP/2 (h2c) connection to Envoy, as a tower service.
#[derive(Clone)]
struct H2c(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2c {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// Call `Whoami` through Envoy with a tonic client, `metadata` added to the call.
fn whoami(st: &Stack, note: &str, metadata: &[(&str, &str)]) -> Result<WhoamiReply, tonic::Status> {
    let mut req = tonic::Request::new(WhoamiRequest { note: note.into() });
    for (k, v) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("metadata key");
        let value = tonic::metadata::MetadataValue::try_from(*v).expect("metadata value");
        req.metadata_mut().append(key, value);
    }
    let origin: http::Uri = st.base().parse().expect("origin");
    let port = st.listen_port;
    let call = async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| tonic::Status::unavailable(format!("test: connect: {e}")))?;
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .map_err(|e| tonic::Status::unavailable(format!("test: h2c handshake: {e}")))?;
        tokio::spawn(conn);
        let mut client = tonic::client::Grpc::with_origin(H2c(send), origin);
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("test: not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(WHOAMI);
        let codec = tonic_prost::ProstCodec::<WhoamiRequest, WhoamiReply>::default();
        client.unary(req, path, codec).await.map(|r| r.into_inner())
    };
    runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), call).await })
        .unwrap_or_else(|_| st.fail(&format!("gRPC call {note:?}: no answer within 20 s")))
}

/// A call that must reach the app: returns its reply and checks the server handled it once.
fn whoami_ok(st: &Stack, app: &GrpcApp, note: &str, metadata: &[(&str, &str)]) -> WhoamiReply {
    let n = app.calls();
    let reply = whoami(st, note, metadata)
        .unwrap_or_else(|s| st.fail(&format!("gRPC call {note:?} failed: {s:?}")));
    st.check(reply.note == note, || {
        format!("gRPC call {note:?}: the reply echoes {:?}", reply.note)
    });
    st.check(app.calls() == n + 1, || {
        format!(
            "gRPC call {note:?}: the server handled {} calls, want 1",
            app.calls() - n
        )
    });
    reply
}

/// A call the gate must refuse with `code` before the app: returns the status.
fn whoami_refused(
    st: &Stack,
    app: &GrpcApp,
    note: &str,
    metadata: &[(&str, &str)],
    code: tonic::Code,
) -> tonic::Status {
    let n = app.requests();
    let status = match whoami(st, note, metadata) {
        Ok(r) => st.fail(&format!(
            "gRPC call {note:?} succeeded, want {code:?}: {r:?}"
        )),
        Err(s) => s,
    };
    st.check(status.code() == code, || {
        format!("gRPC call {note:?}: got {status:?}, want {code:?}")
    });
    st.check(app.requests() == n, || {
        format!("gRPC call {note:?}: refused, yet the app received it")
    });
    status
}

/// One raw gRPC request over h2c (an empty message in one frame): what the gate answers, on
/// the wire, before any gRPC library interprets it.
fn grpc_raw(st: &Stack, headers: &[(&str, &str)]) -> Response {
    let mut hs: Vec<(String, String)> = vec![
        ("content-type".into(), "application/grpc".into()),
        ("te".into(), "trailers".into()),
    ];
    hs.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h2c_request(
        "POST",
        &st.url(WHOAMI),
        &hs,
        Some(&[0, 0, 0, 0, 0]),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| st.fail(&format!("raw gRPC request: {e}")))
}

/// `r` is the gate's trailers-only gRPC answer with `grpc-status: code`: HTTP 200, one
/// `content-type: application/grpc`, one `grpc-status`, one readable `grpc-message`, no body,
/// no redirect, no cookie. (Envoy turns any local reply to a gRPC request into a
/// trailers-only answer by itself, with the HTTP body as `grpc-message`: a JSON or HTML
/// message means the filter left its HTTP answer for Envoy to convert.)
fn expect_trailers_only(st: &Stack, ctx: &str, r: &Response, code: &str) {
    let message = r.headers_all("grpc-message");
    let readable = message.len() == 1
        && !message[0].is_empty()
        && !message[0].contains(['{', '<', '"'])
        && message[0].len() < 200;
    st.check(
        r.status == 200
            && r.headers_all("content-type") == ["application/grpc"]
            && r.headers_all("grpc-status") == [code]
            && readable
            && r.body.is_empty()
            && r.header("location").is_none()
            && r.header("set-cookie").is_none(),
        || {
            format!(
                "{ctx}: expected the gate's trailers-only gRPC answer (200, grpc-status {code}, a \
                 readable grpc-message), got {}",
                r.short()
            )
        },
    );
}

// ============================================================================ tests

/// W1: a WebSocket through the gate. With john's session the upgrade reaches a real
/// WebSocket app with john's identity (each header once, forged ones gone, the gate's
/// cookies stripped, the app's own kept), and text and binary messages flow both ways.
/// Without a session — even with `Accept: text/html` — the upgrade gets the gate's 401, not
/// a login redirect, and the app never sees a connection; the same request without
/// `Upgrade` is still sent to log in.
#[test]
fn w01_websocket_upgrade_is_authenticated() {
    let app = WsApp::start();
    let st = Stack::builder()
        .app(App::External { port: app.port })
        .start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let cookie = format!("{}; theme=dark", session_cookie(&st, &b));

    // 1. With the session (and forged identity headers): 101, and the app sees john.
    let mut hs = vec![
        ("Cookie", cookie.as_str()),
        HTML,
        ("Origin", "http://127.0.0.1"),
    ];
    hs.extend_from_slice(SPOOFS);
    let n = app.seen().len();
    let (mut ws, resp) = ws_open(&st, "/chat?room=1", &hs).unwrap_or_else(|r| {
        st.fail(&format!(
            "the upgrade with john's session was refused: {}",
            ws_summary(&r)
        ))
    });
    st.check(resp.status() == 101, || {
        format!("upgrade answer: {}", ws_summary(&resp))
    });
    let seen = app.seen();
    st.check(seen.len() == n + 1, || {
        format!(
            "the app must have received exactly the upgrade, got {:?}",
            &seen[n..]
        )
    });
    let up = &seen[n];
    st.check(up.is_upgrade() && up.target == "/chat?room=1", || {
        format!("the app received {up:?}, want the upgrade of /chat?room=1")
    });
    expect_john(&st, "WebSocket upgrade", &up.headers, Some("theme"));

    // 2. Messages both ways: the app's greeting, then text and binary echoes.
    let ctx = "WebSocket";
    match ws_next(&st, &mut ws, ctx) {
        Message::Text(t) => st.check(t.as_str() == "hello john@example.com", || {
            format!("the app's greeting: {:?}", t.as_str())
        }),
        m => st.fail(&format!("the app's greeting: {m:?}")),
    }
    for i in 0..3u8 {
        let text = format!("ping {i} \u{1F600}");
        ws.send(Message::text(text.clone()))
            .unwrap_or_else(|e| st.fail(&format!("send text: {e}")));
        match ws_next(&st, &mut ws, ctx) {
            Message::Text(t) => st.check(t.as_str() == format!("echo: {text}"), || {
                format!("echo of {text:?}: {:?}", t.as_str())
            }),
            m => st.fail(&format!("echo of {text:?}: {m:?}")),
        }
        // Binary, once large enough to span several frames and reads.
        let len = if i == 2 { 200_000 } else { 5 + i as usize };
        let data: Vec<u8> = (0..len).map(|j| (j * 7 + i as usize) as u8).collect();
        ws.send(Message::binary(data.clone()))
            .unwrap_or_else(|e| st.fail(&format!("send binary: {e}")));
        let want: Vec<u8> = data.iter().rev().copied().collect();
        match ws_next(&st, &mut ws, ctx) {
            Message::Binary(got) => st.check(got.as_ref() == want.as_slice(), || {
                format!("binary echo of {len} bytes: got {} bytes", got.len())
            }),
            m => st.fail(&format!("binary echo of {len} bytes: {m:?}")),
        }
    }
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    drop(ws);

    // 3. No session, a browser's Accept and forged identity headers: the gate's 401, no
    //    redirect; the app sees no connection at all.
    let (accepts, n) = (app.accepts(), app.seen().len());
    let mut hs = vec![HTML];
    hs.extend_from_slice(SPOOFS);
    for (ctx, hs) in [
        ("upgrade without a session", hs.clone()),
        (
            "upgrade with a forged session cookie",
            vec![HTML, ("Cookie", "_oauth2_proxy=forged.cookie.value")],
        ),
    ] {
        match ws_open(&st, "/chat?room=1", &hs) {
            Ok((_, r)) => st.fail(&format!(
                "{ctx}: the upgrade went through: {}",
                ws_summary(&r)
            )),
            Err(r) => st.check(
                r.status() == 401 && !r.headers().contains_key("location"),
                || {
                    format!(
                        "{ctx}: expected 401 without a redirect, got {}",
                        ws_summary(&r)
                    )
                },
            ),
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    st.check(app.accepts() == accepts && app.seen().len() == n, || {
        format!(
            "refused upgrades reached the app: {} connection(s): {:?}",
            app.accepts() - accepts,
            &app.seen()[n..]
        )
    });

    // 4. The same handshake as a plain request (no `Upgrade`): a page load, sent to log in.
    let r = raw_request(
        "GET",
        &st.url("/chat?room=1"),
        &[("Accept".into(), BROWSER_ACCEPT.into())],
        None,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| st.fail(&format!("GET /chat: {e}")));
    assert_login_redirect(&st, &r, &authz, "GET /chat without Upgrade or session");
}

/// G1: gRPC over h2c through the gate, with a real tonic client and server. Without a
/// credential, with a forged token, or with a user the rules refuse, the gate answers in
/// gRPC's own form (trailers-only, grpc-status 16 or 7) and the server is never called; with
/// john's ID token as bearer metadata or his session cookie as `cookie` metadata the call
/// reaches the server with john's identity and no forged metadata.
#[test]
fn g01_grpc_through_the_gate() {
    use tonic::Code;
    let app = GrpcApp::start();
    let mut st = Stack::builder()
        .app(App::External { port: app.port })
        .app_h2()
        .plugin("skip_jwt_bearer_tokens", json!(true))
        .start();

    // john logs in with a browser (HTTP/1.1 to Envoy, h2c to the app's plain handler), which
    // hands the app his ID token (`pass_authorization_header`).
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    let token = h["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_else(|| st.fail(&format!("the app got no Bearer ID token after login: {h}")))
        .to_string();
    st.check(
        jwt::payload(&token).is_some_and(|c| c["email"] == "john@example.com"),
        || format!("not john's ID token: {token}"),
    );
    let cookie = session_cookie(&st, &b);
    let bearer = format!("Bearer {token}");
    st.check(app.calls() == 0, || {
        "the login called the gRPC method".into()
    });

    // 1. No credential: UNAUTHENTICATED, also for a client that accepts HTML.
    whoami_refused(&st, &app, "anonymous", &[], Code::Unauthenticated);
    let n = app.requests();
    for hs in [
        vec![],
        vec![("accept", BROWSER_ACCEPT)],
        vec![("cookie", "_oauth2_proxy=forged.session.value")],
    ] {
        let r = grpc_raw(&st, &hs);
        expect_trailers_only(&st, &format!("no valid credential {hs:?}"), &r, "16");
    }
    st.check(app.requests() == n, || {
        "a refused gRPC call reached the app".into()
    });

    // 2. john's ID token as bearer metadata, with forged identity metadata: the server sees
    //    john, once per header.
    let mut md = vec![("authorization", bearer.as_str())];
    let spoofs: Vec<(String, &str)> = SPOOFS
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    md.extend(spoofs.iter().map(|(k, v)| (k.as_str(), *v)));
    let reply = whoami_ok(&st, &app, "bearer", &md);
    expect_john(&st, "gRPC with a bearer token", &reply.headers(), None);

    // 3. john's session cookie as `cookie` metadata (with an app cookie of its own).
    let with_app_cookie = format!("{cookie}; theme=dark");
    let reply = whoami_ok(&st, &app, "cookie", &[("cookie", &with_app_cookie)]);
    expect_john(
        &st,
        "gRPC with the session cookie",
        &reply.headers(),
        Some("theme"),
    );

    // 4. Forged tokens: john's token claiming to be admin (signature no longer matches), and
    //    john's token with a corrupted signature: UNAUTHENTICATED, `invalid token: …`.
    let mut claims = jwt::payload(&token).expect("claims");
    claims["email"] = json!("admin@example.com");
    let parts: Vec<&str> = token.split('.').collect();
    let as_admin = format!(
        "{}.{}.{}",
        parts[0],
        jwt::b64(claims.to_string().as_bytes()),
        parts[2]
    );
    for (ctx, forged) in [
        ("token claiming admin", as_admin),
        ("corrupted signature", jwt::corrupt_signature(&token)),
    ] {
        let authz = format!("Bearer {forged}");
        let s = whoami_refused(
            &st,
            &app,
            ctx,
            &[("authorization", &authz)],
            Code::Unauthenticated,
        );
        st.check(s.message().starts_with("invalid token"), || {
            format!(
                "{ctx}: grpc-message {:?} should start with `invalid token`",
                s.message()
            )
        });
        let r = grpc_raw(&st, &[("authorization", &authz)]);
        expect_trailers_only(&st, ctx, &r, "16");
    }

    // 5. Rules that refuse john (`allowed_groups: [nobody]`): his token and his session are
    //    still authentic, so PERMISSION_DENIED, not UNAUTHENTICATED.
    st.plugin_config["allowed_groups"] = json!(["nobody"]);
    st.restart_envoy();
    let n = app.requests();
    whoami_refused(
        &st,
        &app,
        "bearer, refused by the rules",
        &[("authorization", &bearer)],
        Code::PermissionDenied,
    );
    whoami_refused(
        &st,
        &app,
        "session, refused by the rules",
        &[("cookie", &cookie)],
        Code::PermissionDenied,
    );
    for (ctx, md) in [
        ("bearer", ("authorization", bearer.as_str())),
        ("session", ("cookie", cookie.as_str())),
    ] {
        let r = grpc_raw(&st, &[md]);
        expect_trailers_only(&st, &format!("{ctx} refused by the rules"), &r, "7");
    }
    whoami_refused(&st, &app, "anonymous, rules on", &[], Code::Unauthenticated);
    st.check(app.requests() == n, || {
        "a refused gRPC call reached the app".into()
    });
}

/// H1: the browser login of e2e a01 with every request to Envoy over HTTP/2 (h2c, prior
/// knowledge) — the IdP, another origin, stays HTTP/1.1. The login redirect, the callback
/// and its session cookie, the identity headers (once each, forged ones gone, the session
/// cookie stripped even when sent as separate `cookie` crumbs, as HTTP/2 browsers do),
/// `/oauth2/userinfo`, and the 401 of an API client without a session, all over h2.
#[test]
fn h01_login_over_h2c() {
    // No `redirect_url`: the filter derives the callback URL from the HTTP/2 request
    // (`:scheme`, `:authority`), which must be the one registered at the IdP.
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("redirect_url", Value::Null)
        .start();
    let rec = st.recorder.as_ref().expect("the Recorder app");
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    b.h2c_origins.push(st.origin());

    // 1. A page load without a session: 302 to the IdP, with the CSRF cookie.
    let r = b.get(&st.url("/headers?probe=1"));
    assert_login_redirect(&st, &r, &authz, "h2: GET /headers?probe=1 without session");
    let redirect_uri = r.location().and_then(|l| {
        l.query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
    });
    st.check(
        redirect_uri.as_deref() == Some(st.redirect_url().as_str()),
        || {
            format!(
                "h2: redirect_uri {redirect_uri:?}, want {}",
                st.redirect_url()
            )
        },
    );
    st.check(
        r.set_cookie(CSRF)
            .is_some_and(|c| c.http_only && !c.value.is_empty() && !c.is_deletion()),
        || format!("h2: the login redirect must set {CSRF}: {}", r.short()),
    );
    st.check(session_cookies_set(&r).is_empty(), || {
        format!("h2: a session cookie before login: {}", r.short())
    });

    // 2. Log in at the IdP (HTTP/1.1); the callback over h2 sets the session and returns.
    let n = rec.count();
    let (resp, hops) = st.login(&mut b, &st.url("/headers?probe=1"), "john", "john");
    st.check(
        resp.status == 200 && resp.url == st.url("/headers?probe=1"),
        || {
            format!(
                "h2: login did not return to /headers?probe=1:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    let cb = hops
        .iter()
        .find(|h| h.url.contains("/oauth2/callback"))
        .unwrap_or_else(|| st.fail(&format!("h2: no callback hop:\n{}", format_hops(&hops))));
    let sess: Vec<_> = cb
        .set_cookies
        .iter()
        .map(|s| crate::support::http::SetCookie::parse(s))
        .filter(|c| is_session_cookie_name(&c.name) && !c.is_deletion())
        .collect();
    st.check(
        cb.status == 302
            && cb
                .location
                .as_deref()
                .is_some_and(|l| l.ends_with("/headers?probe=1"))
            && sess.len() == 1
            && sess[0].name == SESSION
            && sess[0].http_only,
        || format!("h2: the callback must 302 back and set {SESSION}: {cb}"),
    );
    let envoy_hops = b
        .history
        .iter()
        .filter(|h| h.url.starts_with(&st.base()))
        .count();
    let idp_hops = b
        .history
        .iter()
        .filter(|h| h.url.starts_with(&st.issuer()))
        .count();
    st.check(b.h2c_sent == envoy_hops && idp_hops > 0, || {
        format!(
            "h2: {} requests over h2c, {envoy_hops} to Envoy, {idp_hops} to the IdP",
            b.h2c_sent
        )
    });

    // 3. The app (HTTP/1.1 behind Envoy) saw john's identity, each header once.
    let seen = rec.requests();
    st.check(seen.len() == n + 1, || {
        format!(
            "h2: the app received {} requests during login, want 1",
            seen.len() - n
        )
    });
    expect_john(&st, "h2 login", &seen[n].headers, None);

    // 4. Forged identity headers, and the cookies as separate crumbs (RFC 9113 8.2.3).
    let session = b.cookie(&st.origin(), SESSION).expect("session");
    let crumb = format!("{SESSION}={session}");
    let mut hs = vec![("cookie", "theme=dark"), ("cookie", crumb.as_str()), API];
    hs.extend_from_slice(SPOOFS);
    let n = rec.count();
    let r = b.send("GET", &st.url("/headers?crumbs=1"), &hs, None);
    st.check(r.status == 200 && rec.count() == n + 1, || {
        format!("h2: session in a cookie crumb: {}", r.short())
    });
    expect_john(
        &st,
        "h2 cookie crumbs",
        &rec.requests()[n].headers,
        Some("theme"),
    );

    // 5. /oauth2/userinfo over h2: john's JSON, answered by the gate.
    let n = rec.count();
    let r = b.get_with(&st.url("/oauth2/userinfo"), &[API]);
    st.check(
        r.status == 200 && r.json()["email"] == "john@example.com" && rec.count() == n,
        || format!("h2: /oauth2/userinfo: {}", r.short()),
    );

    // 6. No session, an API client over h2: the gate's 401, the app not called.
    let mut fresh = Browser::new();
    fresh.h2c_origins.push(st.origin());
    let r = fresh.get_with(&st.url("/headers?anon=1"), &[API]);
    assert_gate_401(&st, &r, "h2: API client without session");
    st.check(rec.count() == n && fresh.h2c_sent == 1, || {
        "h2: the 401 reached the app, or went over HTTP/1.1".into()
    });
}
