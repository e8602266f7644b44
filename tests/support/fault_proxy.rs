//! A fault-injecting proxy in front of a real IdP, as the network and the IdP's own
//! failures look to Envoy: `FaultProxy` speaks HTTP/1.1 and forwards every request to the
//! IdP unless a fault is set for its path (an answer of our choosing — a 5xx, garbage, an
//! oversized or error document —, a delay, or a request that is never answered), and can go
//! down altogether (its port refuses connections, open ones are cut) and come back on the
//! same port. `TlsFront` is the same for an IdP that speaks TLS, at the TCP level: it passes
//! the bytes through, or presents a certificate of its own (an IdP certificate rotated to
//! one the cluster cannot verify).
//!
//! Every request that reaches `FaultProxy` is counted by path, faulted or not, so a test can
//! say how often the filter called (discovery, JWKS, token, revocation) during a fault.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::raw_request_target;
use super::stack::{Idp, Stack, StackBuilder};

/// Discovery, JWKS, token and revocation paths of `idp/server.js`.
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
pub const JWKS: &str = "/jwks";
pub const TOKEN: &str = "/token";
pub const REVOCATION: &str = "/token/revocation";

/// What the proxy does with a request for a faulted path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this instead of the IdP.
    Answer {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Hold the request this long, then forward it (the IdP does the work; a caller that
    /// gave up meanwhile never sees its answer).
    Delay(Duration),
    /// Read the request and never answer, until the fault is cleared or the proxy goes
    /// down (a partition between Envoy and the IdP: only the caller's timeout ends it).
    Hang,
}

impl Fault {
    pub fn status(status: u16, body: &str) -> Fault {
        Fault::Answer {
            status,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
        }
    }
    pub fn json(status: u16, body: &serde_json::Value) -> Fault {
        Fault::Answer {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
    /// A 200 whose body is not JSON, labelled as JSON (what a captive portal or a
    /// misrouted load balancer hands back).
    pub fn garbage() -> Fault {
        Fault::Answer {
            status: 200,
            content_type: "application/json",
            body: b"<html><body>502 Bad Gateway (not JSON)</body></html>".to_vec(),
        }
    }
}

#[derive(Default)]
struct State {
    backend: Option<u16>,
    faults: HashMap<String, Fault>,
    hits: HashMap<String, u64>,
    listener: Option<TcpListener>,
    /// Clones of the open client connections, cut when the proxy goes down.
    open: Vec<TcpStream>,
    /// Bumped on every change of faults or up/down, so a hanging request can notice.
    epoch: u64,
}

/// See the module documentation. Stops on drop.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Listening on a fresh port, with no IdP behind it yet (`set_backend`): until then
    /// every request is a 502.
    pub fn start() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(State {
            listener: Some(listener),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || accept_loop(st, sp));
        FaultProxy { port, state, stop }
    }

    pub fn set_backend(&self, port: u16) {
        lock(&self.state).backend = Some(port);
    }

    /// From now on, requests for exactly `path` get `fault`.
    pub fn fault(&self, path: &str, fault: Fault) {
        let mut s = lock(&self.state);
        s.faults.insert(path.to_string(), fault);
        s.epoch += 1;
    }

    pub fn clear(&self, path: &str) {
        let mut s = lock(&self.state);
        s.faults.remove(path);
        s.epoch += 1;
    }

    pub fn clear_all(&self) {
        let mut s = lock(&self.state);
        s.faults.clear();
        s.epoch += 1;
    }

    /// Stop listening and cut every open connection: the IdP is gone (connection refused)
    /// until `up`.
    pub fn down(&self) {
        let mut s = lock(&self.state);
        s.listener = None;
        for c in s.open.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        s.epoch += 1;
    }

    /// Listen again on the same port. Panics when the port cannot be had back within 10 s.
    pub fn up(&self) {
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("fault proxy: cannot listen on {} again: {e}", self.port),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let mut s = lock(&self.state);
        s.listener = Some(listener);
        s.epoch += 1;
    }

    /// Requests for `path` that reached the proxy so far (faulted or forwarded).
    pub fn hits(&self, path: &str) -> u64 {
        lock(&self.state).hits.get(path).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.down();
    }
}

fn accept_loop(state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let accepted = {
            let s = lock(&state);
            s.listener.as_ref().map(|l| l.accept())
        };
        match accepted {
            Some(Ok((conn, _))) => {
                if let Ok(c) = conn.try_clone() {
                    lock(&state).open.push(c);
                }
                let (st, sp) = (state.clone(), stop.clone());
                std::thread::spawn(move || serve(conn, st, sp));
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One HTTP/1.1 request with a Content-Length body (what Envoy's callouts and the suite's
/// browser send); `None` at the end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut it = line.split_whitespace();
    let method = it.next()?.to_string();
    let target = it.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn serve(conn: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let path = req.target.split('?').next().unwrap_or("").to_string();
        let (fault, backend, epoch) = {
            let mut s = lock(&state);
            *s.hits.entry(path.clone()).or_default() += 1;
            (s.faults.get(&path).cloned(), s.backend, s.epoch)
        };
        let answer = match fault {
            Some(Fault::Answer {
                status,
                content_type,
                body,
            }) => (
                status,
                vec![("Content-Type".into(), content_type.into())],
                body,
            ),
            Some(Fault::Hang) => {
                // Until the fault changes or the proxy goes down; then the connection is
                // closed without an answer.
                while !stop.load(Ordering::SeqCst) && lock(&state).epoch == epoch {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Delay(d)) => {
                std::thread::sleep(d);
                forward(&req, backend)
            }
            None => forward(&req, backend),
        };
        if write_response(&mut w, answer).is_err() {
            return;
        }
    }
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn forward(req: &Request, backend: Option<u16>) -> Answer {
    let Some(port) = backend else {
        return (
            502,
            Vec::new(),
            b"fault proxy: no IdP behind it yet".to_vec(),
        );
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            !["connection", "content-length", "keep-alive"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
        })
        .cloned()
        .collect();
    let body = (!req.body.is_empty() || req.method == "POST").then_some(req.body.as_slice());
    match raw_request_target(
        false,
        &req.method,
        "127.0.0.1",
        port,
        &req.target,
        &req.target,
        &headers,
        body,
        Duration::from_secs(60),
    ) {
        Ok(r) => {
            let hs = r
                .headers
                .into_iter()
                .filter(|(k, _)| {
                    ![
                        "connection",
                        "content-length",
                        "transfer-encoding",
                        "keep-alive",
                    ]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
                })
                .collect();
            (r.status, hs, r.body)
        }
        Err(e) => (502, Vec::new(), format!("fault proxy: {e}").into_bytes()),
    }
}

fn write_response(w: &mut TcpStream, (status, headers, body): Answer) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} Fault-Proxy\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    w.write_all(&bytes)?;
    w.flush()
}

/// The stack of `builder` with the real IdP behind `proxy` (`Idp::NodeBehind`): the proxy
/// is given the IdP's port before Envoy starts, so whatever state the test put the proxy in
/// (down, faults) is what Envoy's first metadata load meets.
pub fn proxied(builder: StackBuilder, proxy: &FaultProxy) -> Stack {
    let mut st = builder
        .idp(Idp::NodeBehind { front: proxy.port })
        .start_no_envoy();
    proxy.set_backend(
        st.idp_direct_port
            .unwrap_or_else(|| st.fail("Idp::NodeBehind left no direct port")),
    );
    if let Err(e) = st.start_envoy() {
        st.fail(&format!("envoy did not become ready: {e}"));
    }
    st
}

/// A TCP front for an IdP that speaks TLS: passes connections through to it, or, once
/// `present` is called, answers the TLS handshake itself with another certificate (so the
/// client's verification fails as it would after the IdP rotated to a certificate the client
/// does not trust). `pass_through` goes back. Stops on drop.
pub struct TlsFront {
    pub port: u16,
    own: Arc<Mutex<Option<Arc<rustls::ServerConfig>>>>,
    /// Client sides of the connections passed through, cut by `present`.
    piped: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    /// Handshakes answered with our own certificate.
    pub intercepted: Arc<Mutex<u64>>,
}

impl TlsFront {
    /// Listening on `port` (0: a fresh one), passing through to 127.0.0.1:`backend`.
    pub fn start(port: u16, backend: u16) -> TlsFront {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind TLS front");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let own: Arc<Mutex<Option<Arc<rustls::ServerConfig>>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let intercepted = Arc::new(Mutex::new(0));
        let piped: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (o, s, n, p) = (
            own.clone(),
            stop.clone(),
            intercepted.clone(),
            piped.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let cfg = o.lock().unwrap_or_else(|e| e.into_inner()).clone();
                match cfg {
                    Some(cfg) => {
                        *n.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        std::thread::spawn(move || handshake_only(conn, cfg));
                    }
                    None => {
                        if let Ok(c) = conn.try_clone() {
                            p.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                        }
                        std::thread::spawn(move || pipe(conn, backend));
                    }
                }
            }
        });
        TlsFront {
            port,
            own,
            piped,
            stop,
            intercepted,
        }
    }

    /// From now on connections get a TLS server with this certificate chain and key instead
    /// of the IdP. The connections passed through so far are cut: a rotated IdP's clients
    /// meet the new certificate on their next connection, and Envoy's pool would otherwise
    /// keep using the old ones for as long as they stay open.
    pub fn present(&self, cert_pem: &std::path::Path, key_pem: &std::path::Path) {
        let certs = rustls_pemfile(cert_pem, "CERTIFICATE");
        let key = rustls_pemfile(key_pem, "PRIVATE KEY")
            .into_iter()
            .next()
            .expect("a private key");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.to_vec()).expect("key DER");
        let certs = certs
            .into_iter()
            .map(|c| rustls::pki_types::CertificateDer::from(c.to_vec()))
            .collect();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        *self.own.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(cfg));
        for c in self
            .piped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn pass_through(&self) {
        *self.own.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn intercepted(&self) -> u64 {
        *self.intercepted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The DER blocks labelled `label` (`CERTIFICATE`, `PRIVATE KEY`) of a PEM file.
fn rustls_pemfile(path: &std::path::Path, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).expect("read PEM");
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(&begin) {
        let after = &rest[i + begin.len()..];
        let Some(j) = after.find(&end) else { break };
        let b64: String = after[..j].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("PEM base64"),
        );
        rest = &after[j + end.len()..];
    }
    out
}

/// Completes (or fails) the handshake with our certificate, then closes: the client never
/// gets to the IdP.
fn handshake_only(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut b = [0u8; 1024];
    let _ = s.read(&mut b);
}

/// Copies bytes both ways between the client and 127.0.0.1:`backend` until either side
/// closes.
fn pipe(client: TcpStream, backend: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (mut c, mut s) = (client, server);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
}
