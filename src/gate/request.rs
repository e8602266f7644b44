//! The request view the gate decides on, the injected clock and randomness, one request's
//! turn through the gate (the three together), and the local answer it may get.

use crate::routing::map::Headers;

/// A local answer: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The parts of an HTTP request the gate looks at: all headers, pseudo-headers included,
/// exactly as Envoy presents them (lowercase names).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Headers,
}

impl Request {
    /// Bytes held, for bounding the requests parked while metadata loads.
    pub fn weight(&self) -> usize {
        self.headers.weight() + 64
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.get_all(name)
    }

    pub(super) fn method(&self) -> &str {
        self.header(":method").unwrap_or("GET")
    }

    /// Path and query as sent.
    pub(super) fn path(&self) -> &str {
        self.header(":path").unwrap_or("/")
    }

    pub(super) fn path_only(&self) -> &str {
        let p = self.path();
        p.split_once('?').map_or(p, |(path, _)| path)
    }

    pub(super) fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.path().split_once('?')?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// The first value of an `X-Forwarded-*` header, when `reverse_proxy` says a proxy in
    /// front of us sets it; otherwise nothing is decided from such client-controlled headers.
    fn forwarded(&self, name: &str, trusted: bool) -> Option<&str> {
        if !trusted {
            return None;
        }
        self.header(name)
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// `host[:port]` the client asked for (`X-Forwarded-Host` behind a trusted proxy).
    pub(super) fn authority(&self, trusted: bool) -> &str {
        self.forwarded("x-forwarded-host", trusted)
            .or_else(|| self.header(":authority"))
            .or_else(|| self.header("host"))
            .unwrap_or("")
    }

    pub(super) fn host(&self, trusted: bool) -> &str {
        let a = self.authority(trusted);
        if a.starts_with('[') {
            return a
                .split_once(']')
                .map_or(a, |(h, _)| h.trim_start_matches('['));
        }
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    }

    pub(super) fn scheme(&self, trusted: bool) -> &str {
        self.forwarded("x-forwarded-proto", trusted)
            .or_else(|| self.header(":scheme"))
            .unwrap_or("http")
    }

    /// Path and query the client asked for (`X-Forwarded-Uri` behind a trusted proxy).
    pub(super) fn uri(&self, trusted: bool) -> &str {
        self.forwarded("x-forwarded-uri", trusted)
            .unwrap_or_else(|| self.path())
    }

    /// The token of the request's `Authorization: Bearer` header. `Some("")` when there is
    /// more than one `Authorization` header (ambiguous, so never valid) or the token is empty.
    pub(super) fn bearer_token(&self) -> Option<&str> {
        let mut all = self.all("authorization");
        let first = all.next()?.trim();
        let (scheme, token) = first.split_once(' ').unwrap_or((first, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        Some(if all.next().is_some() {
            ""
        } else {
            token.trim()
        })
    }

    /// Browsers get redirected to log in; API clients get a 401 they can act on. A WebSocket
    /// upgrade or a gRPC call is never a page navigation, whatever it accepts.
    pub(super) fn is_browser(&self) -> bool {
        self.header("x-requested-with").is_none()
            && self.header("upgrade").is_none()
            && !self.is_grpc()
            && self.all("accept").any(|a| a.contains("text/html"))
    }
}

impl Request {
    /// `application/grpc`, `application/grpc+proto`, … (not gRPC-Web, which Envoy's own
    /// grpc_web filter translates and whose clients read ordinary HTTP errors).
    pub fn is_grpc(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            // Compared in place: no allocation for a check on ordinary requests.
            let ct = ct.trim().as_bytes();
            let base = b"application/grpc";
            ct.get(..base.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(base))
                && matches!(ct.get(base.len()), None | Some(b'+') | Some(b';'))
        })
    }
}

/// One request's turn through the gate: its headers, the cookies they carry (parsed once),
/// and the clock and randomness it is decided with.
pub struct Incoming<'r, 'e> {
    pub req: &'r Request,
    pub cookies: Vec<(&'r str, &'r str)>,
    pub env: &'r mut Env<'e>,
}

impl<'r, 'e> Incoming<'r, 'e> {
    pub fn new(req: &'r Request, env: &'r mut Env<'e>) -> Incoming<'r, 'e> {
        Incoming {
            cookies: crate::session::cookie::parse(req.all("cookie")),
            req,
            env,
        }
    }

    pub fn now(&self) -> u64 {
        self.env.now
    }
}

/// Clock and randomness, injected so tests can pin both.
pub struct Env<'a> {
    /// Unix seconds.
    pub now: u64,
    /// Fills the buffer with secure random bytes; `false` if the source failed.
    pub random: &'a mut dyn FnMut(&mut [u8]) -> bool,
}

impl Env<'_> {
    pub fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        (self.random)(&mut b).then_some(b)
    }
}
