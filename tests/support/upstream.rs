//! A minimal threaded HTTP/1.1 server (keep-alive, Content-Length bodies) used by the
//! misbehaving OP, and a recording upstream that echoes like `demo/app.js` and remembers
//! every request it received (so tests can assert that the app never saw one).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct ServerRequest {
    pub method: String,
    /// request-target as received (path + query)
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ServerRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn query(&self) -> HashMap<String, String> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct ServerResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sleep this long before answering (slow IdP scenario).
    pub delay: Option<Duration>,
}

impl ServerResponse {
    pub fn json(status: u16, v: &Value) -> ServerResponse {
        ServerResponse {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: serde_json::to_vec(v).unwrap_or_default(),
            delay: None,
        }
    }
    pub fn redirect(location: &str) -> ServerResponse {
        ServerResponse {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
            delay: None,
        }
    }
    pub fn text(status: u16, s: &str) -> ServerResponse {
        ServerResponse {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: s.as_bytes().to_vec(),
            delay: None,
        }
    }
}

type Handler = Arc<dyn Fn(&ServerRequest) -> ServerResponse + Send + Sync>;

/// A running server; stops accepting on drop.
pub struct MiniServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl MiniServer {
    pub fn start(handler: Handler) -> MiniServer {
        Self::start_on(0, handler)
    }

    /// Listen on a given port (0 = any).
    pub fn start_on(port: u16, handler: Handler) -> MiniServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind mini server");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let h = handler.clone();
                        let st = stop2.clone();
                        std::thread::spawn(move || serve_conn(s, h, st));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        MiniServer { port, stop }
    }
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn serve_conn(s: TcpStream, h: Handler, stop: Arc<AtomicBool>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(s);
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let method = it.next().unwrap_or("").to_string();
        let target = it.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut hl = String::new();
            match r.read_line(&mut hl) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let hl = hl.trim_end();
            if hl.is_empty() {
                break;
            }
            if let Some(i) = hl.find(':') {
                headers.push((hl[..i].trim().to_string(), hl[i + 1..].trim().to_string()));
            }
        }
        let cl = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; cl];
        if cl > 0 && r.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let req = ServerRequest {
            method,
            target,
            headers,
            body,
        };
        let resp = h(&req);
        if let Some(d) = resp.delay {
            std::thread::sleep(d);
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        // RFC 9110 8.6: no Content-Length on a 204.
        if resp.status != 204 {
            out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        if w.write_all(&bytes).is_err() {
            return;
        }
        let _ = w.flush();
        if close {
            return;
        }
    }
}

/// Upstream app stand-in that records every request (and answers like demo/app.js).
pub struct Recorder {
    pub server: MiniServer,
    pub seen: Arc<Mutex<Vec<ServerRequest>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let seen: Arc<Mutex<Vec<ServerRequest>>> = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let server = MiniServer::start(Arc::new(move |req: &ServerRequest| {
            seen2.lock().expect("lock").push(req.clone());
            let mut obj = Map::new();
            for (k, v) in &req.headers {
                let k = k.to_ascii_lowercase();
                let nv = match obj.get(&k) {
                    Some(Value::String(old)) => format!("{old}, {v}"),
                    _ => v.clone(),
                };
                obj.insert(k, Value::String(nv));
            }
            if req.method == "GET" && req.path() == "/headers" {
                let raw: Vec<Value> = req.headers.iter().map(|(k, v)| json!([k, v])).collect();
                obj.insert("_raw".into(), Value::Array(raw));
                ServerResponse::json(200, &Value::Object(obj))
            } else {
                ServerResponse::json(
                    200,
                    &json!({"method": req.method, "path": req.target, "headers": Value::Object(obj)}),
                )
            }
        }));
        Recorder { server, seen }
    }
    pub fn port(&self) -> u16 {
        self.server.port
    }
    pub fn requests(&self) -> Vec<ServerRequest> {
        self.seen.lock().expect("lock").clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.target, r.headers))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
