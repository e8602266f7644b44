//! A tiny HTTP/1.1 client over `std::net` (full control over header order, case and
//! duplicates, which a higher-level client would normalise away) and a browser built on it:
//! a cookie jar per host:port (Path, Max-Age, Expires honoured) and redirect following across
//! hosts (Envoy <-> IdP), always sending `Accept: text/html` like a browser.
//!
//! No redirect is ever followed implicitly: `Browser::send` shows every 3xx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use url::Url;

pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[derive(Clone, Debug)]
pub struct Response {
    /// The URL this response answered.
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response from {} ({}) is not JSON ({e}): {}",
                self.url,
                self.status,
                self.short()
            )
        })
    }
    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
    /// The Location header resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        let l = self.header("location")?;
        Url::parse(&self.url).ok()?.join(l).ok()
    }
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers_all("set-cookie")
            .into_iter()
            .map(SetCookie::parse)
            .collect()
    }
    /// The Set-Cookie for `name`, if any (last one wins).
    pub fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies()
            .into_iter()
            .rev()
            .find(|c| c.name == name)
    }
    /// One-line summary for assertion messages.
    pub fn short(&self) -> String {
        let mut body = self.text();
        if body.len() > 400 {
            let cut = body
                .char_indices()
                .nth(400)
                .map(|(i, _)| i)
                .unwrap_or(body.len());
            body.truncate(cut);
            body.push('…');
        }
        let hdrs: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if v.len() > 160 {
                    format!("{k}: {}…({} bytes)", &v[..160], v.len())
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        format!(
            "{} {} [{}] body={:?}",
            self.status,
            self.url,
            hdrs.join(" | "),
            body
        )
    }
}

/// A parsed Set-Cookie header.
#[derive(Clone, Debug)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub max_age: Option<i64>,
    pub expires: Option<i64>,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: Option<String>,
    pub domain: Option<String>,
}

impl SetCookie {
    pub fn parse(raw: &str) -> SetCookie {
        let mut parts = raw.split(';');
        let first = parts.next().unwrap_or("");
        let (name, value) = match first.find('=') {
            Some(i) => (
                first[..i].trim().to_string(),
                first[i + 1..].trim().to_string(),
            ),
            None => (String::new(), first.trim().to_string()),
        };
        let mut c = SetCookie {
            raw: raw.to_string(),
            name,
            value,
            path: None,
            max_age: None,
            expires: None,
            http_only: false,
            secure: false,
            same_site: None,
            domain: None,
        };
        for p in parts {
            let p = p.trim();
            let (k, v) = match p.find('=') {
                Some(i) => (
                    p[..i].trim().to_ascii_lowercase(),
                    p[i + 1..].trim().to_string(),
                ),
                None => (p.to_ascii_lowercase(), String::new()),
            };
            match k.as_str() {
                "path" => c.path = Some(v),
                "max-age" => c.max_age = Some(v.parse::<i64>().unwrap_or(0)),
                "expires" => c.expires = parse_http_date(&v),
                "httponly" => c.http_only = true,
                "secure" => c.secure = true,
                "samesite" => c.same_site = Some(v),
                "domain" => c.domain = Some(v),
                _ => {}
            }
        }
        c
    }

    /// Does this Set-Cookie delete the cookie (Max-Age <= 0 or an Expires in the past)?
    pub fn is_deletion(&self) -> bool {
        if let Some(ma) = self.max_age {
            return ma <= 0;
        }
        if let Some(exp) = self.expires {
            return exp <= crate::support::now() as i64;
        }
        false
    }
}

/// Parse an IMF-fixdate (`Thu, 01 Jan 1970 00:00:00 GMT`) or the RFC 850-ish dashed form.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.replace('-', " ");
    let toks: Vec<&str> = s.split_whitespace().collect();
    // [Thu,, 01, Jan, 1970, 00:00:00, GMT]
    let toks: Vec<&str> = if toks.first().map(|t| t.ends_with(',')).unwrap_or(false) {
        toks[1..].to_vec()
    } else {
        toks
    };
    if toks.len() < 4 {
        return None;
    }
    let day: i64 = toks[0].parse().ok()?;
    let mon = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| toks[1].to_ascii_lowercase().starts_with(m))? as i64
        + 1;
    let mut year: i64 = toks[2].parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<i64> = toks[3].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y = if mon <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (mon + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Send one request and read the whole response (`Connection: close`). Headers are sent
/// exactly as given (order, case, duplicates); `Host`, `Connection` and `Content-Length`
/// are added unless present.
pub fn raw_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let u = Url::parse(url).map_err(|e| std::io::Error::other(format!("bad url {url}: {e}")))?;
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let tls = u.scheme() == "https";
    raw_request_target(
        tls, method, &host, port, &target, url, headers, body, timeout,
    )
}

/// Like `raw_request` but with a raw request-target (lets tests send paths such as
/// `/oauth2/start?rd=/\evil.example` byte-exactly, without URL normalisation), over TLS when
/// `tls` is set.
#[allow(clippy::too_many_arguments)]
pub fn raw_request_target(
    tls: bool,
    method: &str,
    host: &str,
    port: u16,
    target: &str,
    url_for_record: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Response> {
    // Everything the suite runs listens on 127.0.0.1; `localhost` is the name on its TLS
    // certificates.
    let ip = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let addr = format!("{ip}:{port}");
    let sockaddr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad addr {addr}: {e}")))?;
    let tcp = TcpStream::connect_timeout(&sockaddr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut s: Box<dyn super::tls::Conn> = if tls {
        super::tls::connect(tcp, host)?
    } else {
        Box::new(tcp)
    };
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("connection") {
        req.push_str("Connection: close\r\n");
    }
    if let Some(b) = body {
        if !has("content-length") {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes)?;
    s.flush()?;
    let mut buf = Vec::new();
    // Read until EOF, or until a complete response has arrived.
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if response_complete(&buf, method) {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) && !buf.is_empty() =>
            {
                break
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "{method} {url_for_record}: read failed after {} bytes: {e}",
                        buf.len()
                    ),
                ))
            }
        }
    }
    parse_response(&buf, url_for_record, method)
}

/// One request over HTTP/2 without TLS, with prior knowledge (h2c, RFC 9113 section 3.3), on
/// a fresh connection driven by a current-thread tokio runtime. Headers keep their order and
/// duplicates (names go lowercase: HTTP/2 has no other case); `Host` and the
/// connection-specific headers HTTP/2 forbids are left out (the URL's authority becomes
/// `:authority`).
pub fn h2c_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Response> {
    use http_body_util::{BodyExt, Full};
    let err = |e: &dyn std::fmt::Display| std::io::Error::other(format!("h2c {method} {url}: {e}"));
    let u = Url::parse(url).map_err(|e| err(&e))?;
    let host = match u.host_str() {
        Some("localhost") | None => "127.0.0.1",
        Some(h) => h,
    };
    let addr = format!("{host}:{}", u.port_or_known_default().unwrap_or(80));
    const CONNECTION_SPECIFIC: &[&str] = &[
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ];
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        if !CONNECTION_SPECIFIC.contains(&k.to_ascii_lowercase().as_str()) {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let body = bytes::Bytes::copy_from_slice(body.unwrap_or_default());
    let req = req.body(Full::new(body)).map_err(|e| err(&e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await?;
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .map_err(|e| err(&e))?;
        tokio::spawn(conn);
        let resp = send.send_request(req).await.map_err(|e| err(&e))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| err(&e))?.to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        Ok(Response {
            url: url.to_string(),
            status: parts.status.as_u16(),
            headers,
            body: body.to_vec(),
        })
    };
    rt.block_on(async { tokio::time::timeout(timeout, exchange).await })
        .map_err(|_| err(&format!("no answer within {timeout:?}")))?
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn response_complete(buf: &[u8], method: &str) -> bool {
    let Some(he) = find_header_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
    let body = &buf[he + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            if let Ok(n) = v.trim().parse::<usize>() {
                return body.len() >= n;
            }
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

fn parse_response(buf: &[u8], url: &str, method: &str) -> std::io::Result<Response> {
    let he = find_header_end(buf).ok_or_else(|| {
        std::io::Error::other(format!(
            "{method} {url}: incomplete response ({} bytes): {:?}",
            buf.len(),
            String::from_utf8_lossy(buf)
        ))
    })?;
    let head = String::from_utf8_lossy(&buf[..he]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for l in lines {
        if let Some(i) = l.find(':') {
            headers.push((l[..i].trim().to_string(), l[i + 1..].trim().to_string()));
        }
    }
    let raw_body = &buf[he + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        raw_body[..n.min(raw_body.len())].to_vec()
    } else {
        raw_body.to_vec()
    };
    Ok(Response {
        url: url.to_string(),
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(le) = b.windows(2).position(|w| w == b"\r\n") {
        let size_s = String::from_utf8_lossy(&b[..le]);
        let size =
            usize::from_str_radix(size_s.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        b = &b[le + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// One cookie held by the browser.
#[derive(Clone, Debug)]
pub struct Cookie {
    /// host:port
    pub origin: String,
    pub name: String,
    pub value: String,
    pub path: String,
    pub http_only: bool,
}

/// One step of a redirect chain.
#[derive(Clone, Debug)]
pub struct Hop {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.url, self.status)?;
        if let Some(l) = &self.location {
            write!(f, " Location: {l}")?;
        }
        for c in &self.set_cookies {
            let c = if c.len() > 120 {
                format!("{}…", &c[..120])
            } else {
                c.clone()
            };
            write!(f, " Set-Cookie: {c}")?;
        }
        Ok(())
    }
}

pub fn format_hops(h: &[Hop]) -> String {
    h.iter()
        .map(|h| format!("  {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn origin_of(u: &Url) -> String {
    format!(
        "{}:{}",
        u.host_str().unwrap_or(""),
        u.port_or_known_default().unwrap_or(80)
    )
}

/// A browser: cookie jar + redirect following.
#[derive(Clone, Debug, Default)]
pub struct Browser {
    pub jar: Vec<Cookie>,
    /// Every request/response this browser made, in order.
    pub history: Vec<Hop>,
    pub timeout_secs: u64,
    /// `follow` stops (returning the redirect) before requesting a URL containing this.
    pub pause_before: Option<String>,
    /// Origins (`127.0.0.1:port`) this browser reaches over HTTP/2 without TLS (h2c with
    /// prior knowledge, [`h2c_request`]); every other origin over HTTP/1.1.
    pub h2c_origins: Vec<String>,
    /// How many requests went over h2c.
    pub h2c_sent: usize,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            jar: Vec::new(),
            history: Vec::new(),
            timeout_secs: 30,
            pause_before: None,
            h2c_origins: Vec::new(),
            h2c_sent: 0,
        }
    }

    fn default_path(u: &Url) -> String {
        let p = u.path();
        match p.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => p[..i].to_string(),
        }
    }

    fn path_matches(cookie_path: &str, req_path: &str) -> bool {
        req_path == cookie_path
            || (req_path.starts_with(cookie_path)
                && (cookie_path.ends_with('/')
                    || req_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
    }

    /// Cookie header value for a URL (longest paths first), or None.
    pub fn cookie_header(&self, u: &Url) -> Option<String> {
        let origin = origin_of(u);
        let mut cs: Vec<&Cookie> = self
            .jar
            .iter()
            .filter(|c| c.origin == origin && Self::path_matches(&c.path, u.path()))
            .collect();
        cs.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        if cs.is_empty() {
            None
        } else {
            Some(
                cs.iter()
                    .map(|c| format!("{}={}", c.name, c.value))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
    }

    /// Apply a response's Set-Cookie headers to the jar.
    pub fn store(&mut self, u: &Url, resp: &Response) {
        let origin = origin_of(u);
        for sc in resp.set_cookies() {
            if sc.name.is_empty() {
                continue;
            }
            let path = match &sc.path {
                Some(p) if p.starts_with('/') => p.clone(),
                _ => Self::default_path(u),
            };
            self.jar
                .retain(|c| !(c.origin == origin && c.name == sc.name && c.path == path));
            if !sc.is_deletion() {
                self.jar.push(Cookie {
                    origin: origin.clone(),
                    name: sc.name.clone(),
                    value: sc.value.clone(),
                    path,
                    http_only: sc.http_only,
                });
            }
        }
    }

    /// Cookies held for an origin (`127.0.0.1:port`).
    pub fn cookies(&self, origin: &str) -> Vec<&Cookie> {
        self.jar.iter().filter(|c| c.origin == origin).collect()
    }
    pub fn cookie(&self, origin: &str, name: &str) -> Option<String> {
        self.jar
            .iter()
            .find(|c| c.origin == origin && c.name == name)
            .map(|c| c.value.clone())
    }
    pub fn set(&mut self, origin: &str, name: &str, value: &str) {
        self.jar.retain(|c| !(c.origin == origin && c.name == name));
        self.jar.push(Cookie {
            origin: origin.to_string(),
            name: name.to_string(),
            value: value.to_string(),
            path: "/".to_string(),
            http_only: false,
        });
    }
    pub fn remove(&mut self, origin: &str, name: &str) {
        self.jar.retain(|c| !(c.origin == origin && c.name == name));
    }
    pub fn clear(&mut self) {
        self.jar.clear();
    }

    /// One request, no redirect following. Sends the jar's cookies (unless `headers` has a
    /// Cookie header already) and `Accept: text/html…` (unless `headers` has an Accept).
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let u = Url::parse(url).unwrap_or_else(|e| panic!("bad url {url}: {e}"));
        let mut hs: Vec<(String, String)> = Vec::new();
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("accept") {
            hs.push(("Accept".into(), BROWSER_ACCEPT.into()));
        }
        hs.push(("User-Agent".into(), "wop-e2e-browser/1".into()));
        if !has("cookie") {
            if let Some(c) = self.cookie_header(&u) {
                hs.push(("Cookie".into(), c));
            }
        }
        for (k, v) in headers {
            hs.push((k.to_string(), v.to_string()));
        }
        let timeout = Duration::from_secs(self.timeout_secs);
        let resp = if self.h2c_origins.contains(&origin_of(&u)) {
            self.h2c_sent += 1;
            h2c_request(method, url, &hs, body, timeout)
        } else {
            raw_request(method, url, &hs, body, timeout)
        }
        .unwrap_or_else(|e| panic!("request {method} {url} failed: {e}"));
        self.store(&u, &resp);
        self.history.push(Hop {
            method: method.to_string(),
            url: url.to_string(),
            status: resp.status,
            location: resp.header("location").map(|s| s.to_string()),
            set_cookies: resp
                .headers_all("set-cookie")
                .iter()
                .map(|s| s.to_string())
                .collect(),
        });
        resp
    }

    pub fn get(&mut self, url: &str) -> Response {
        self.send("GET", url, &[], None)
    }

    pub fn get_with(&mut self, url: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", url, headers, None)
    }

    /// Send a request and follow redirects (any host) up to 20 hops. `headers` go on the
    /// first request only. Returns the final response and the chain of hops.
    pub fn follow(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (Response, Vec<Hop>) {
        let start = self.history.len();
        let mut resp = self.send(method, url, headers, body);
        let mut method = method.to_string();
        let mut body: Option<Vec<u8>> = body.map(|b| b.to_vec());
        let mut extra_ct: Option<String> = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_string());
        for _ in 0..20 {
            if !resp.is_redirect() {
                break;
            }
            let Some(next) = resp.location() else { break };
            // A test browser only ever talks to 127.0.0.1: a redirect anywhere else is
            // returned to the caller (the open-redirect tests look at it).
            if !matches!(next.host_str(), Some("127.0.0.1") | Some("localhost")) {
                break;
            }
            if let Some(p) = &self.pause_before {
                if next.as_str().contains(p.as_str()) {
                    break;
                }
            }
            if !matches!(resp.status, 307 | 308) {
                method = "GET".into();
                body = None;
                extra_ct = None;
            }
            let hs: Vec<(&str, &str)> = match &extra_ct {
                Some(ct) => vec![("Content-Type", ct.as_str())],
                None => vec![],
            };
            resp = self.send(&method, next.as_str(), &hs, body.as_deref());
        }
        (resp, self.history[start..].to_vec())
    }

    pub fn follow_get(&mut self, url: &str) -> (Response, Vec<Hop>) {
        self.follow("GET", url, &[], None)
    }

    /// POST an application/x-www-form-urlencoded form and follow redirects.
    pub fn submit_form(
        &mut self,
        action: &str,
        fields: &[(String, String)],
    ) -> (Response, Vec<Hop>) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        self.follow(
            "POST",
            action,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
    }
}

/// GETs sent all at once: one thread and one connection each, released together by a
/// barrier. Answers in the order of `requests` (URL, headers).
pub fn burst(
    requests: &[(String, Vec<(String, String)>)],
    timeout: Duration,
) -> Vec<std::io::Result<Response>> {
    let barrier = std::sync::Barrier::new(requests.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(url, headers)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    raw_request("GET", url, headers, None, timeout)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("request thread panicked")))
            })
            .collect()
    })
}

/// GETs of `urls` (all on one host:port, plain HTTP) one after the other on a single
/// keep-alive connection, so that they all reach the same Envoy worker. `headers` go on
/// every request.
pub fn get_on_one_connection(
    urls: &[String],
    headers: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<Vec<Response>> {
    let first = urls
        .first()
        .ok_or_else(|| std::io::Error::other("no URLs"))?;
    let u =
        Url::parse(first).map_err(|e| std::io::Error::other(format!("bad url {first}: {e}")))?;
    let addr = format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port_or_known_default().unwrap_or(80)
    );
    let mut s = TcpStream::connect(&addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut out = Vec::new();
    for url in urls {
        let u =
            Url::parse(url).map_err(|e| std::io::Error::other(format!("bad url {url}: {e}")))?;
        if format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(80)
        ) != addr
        {
            return Err(std::io::Error::other(format!("{url} is not on {addr}")));
        }
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: keep-alive\r\n\r\n");
        s.write_all(req.as_bytes())?;
        s.flush()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        while !response_complete(&buf, "GET") {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "GET {url}: connection closed after {} bytes (request {} on the connection)",
                    buf.len(),
                    out.len() + 1
                )));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        out.push(parse_response(&buf, url, "GET")?);
    }
    Ok(out)
}
