//! The cheapest useful proxy-wasm HTTP filter: read one header, add one. Whatever this
//! costs per request is the price of entering Wasm at all, the floor for any filter. With
//! feature `hostcalls`, the host calls of the gate's hot path and nothing else; the plugin
//! configuration string then picks one of several host-call patterns for the same job
//! (`bench/floors.py` measures them side by side). An empty configuration is `a`, the
//! pattern of the gate today.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The host-call patterns of feature `hostcalls`, by plugin configuration string.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[cfg_attr(not(feature = "hostcalls"), allow(dead_code))]
enum Variant {
    /// `a` (or empty): get the whole map, read the clock, set the whole map back without
    /// the cookie and with four identity headers. The gate today.
    #[default]
    MapSet,
    /// `b`: get the whole map, read the clock, then per header: remove each owned name
    /// seen, remove/replace `cookie`, `replace` the four identity headers.
    Replace,
    /// `b_add`: as `b`, but `add` the four identity headers (their client copies are gone).
    ReplaceAdd,
    /// `c`: as `b_add` without the clock.
    AddNoClock,
    /// `d`: get only `cookie` by name, read the clock, remove it, `add` the four. Not
    /// correct (cannot see other spellings of owned names): what reading the map costs.
    CookieOnly,
    /// `map_get`: get the whole map and read the clock, write nothing.
    MapGet,
    /// `one_add`: get the whole map, read the clock, `add` one identity header. What the
    /// first write costs against `map_get`, and the other writes against `b`/`c`.
    OneAdd,
    /// `noop`: no host call at all: the price of entering Wasm.
    Noop,
}

#[cfg_attr(not(feature = "hostcalls"), allow(dead_code))]
impl Variant {
    fn parse(s: &str) -> Option<Variant> {
        Some(match s.trim() {
            "" | "a" => Variant::MapSet,
            "b" => Variant::Replace,
            "b_add" => Variant::ReplaceAdd,
            "c" => Variant::AddNoClock,
            "d" => Variant::CookieOnly,
            "map_get" => Variant::MapGet,
            "one_add" => Variant::OneAdd,
            "noop" => Variant::Noop,
            _ => return None,
        })
    }
}

#[derive(Default)]
struct Root {
    #[cfg_attr(not(feature = "hostcalls"), allow(dead_code))]
    variant: Variant,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Variant::parse(&String::from_utf8_lossy(&config)) {
            Some(v) => {
                self.variant = v;
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { variant: self.variant }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    #[cfg_attr(not(feature = "hostcalls"), allow(dead_code))]
    variant: Variant,
}

impl Context for Stream {}

#[cfg(not(feature = "hostcalls"))]
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Bytes, not String: the String API panics on non-UTF-8 values.
        let seen = self.get_http_request_header_bytes("x-bench").is_some();
        self.set_http_request_header("x-bench-seen", Some(if seen { "1" } else { "0" }));
        Action::Continue
    }
}

#[cfg(feature = "hostcalls")]
const IDENTITY: [(&str, &str); 4] = [
    ("x-forwarded-user", "john@example.com"),
    ("x-forwarded-email", "john@example.com"),
    ("x-forwarded-preferred-username", "john"),
    ("x-forwarded-groups", "developers"),
];

/// As the gate's `headers::OWNED`/`is_owned` (a shorter list; the cost is in the loop,
/// which finds nothing in the benchmark request).
#[cfg(feature = "hostcalls")]
fn is_owned(name: &str) -> bool {
    const OWNED: &[&str] = &[
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-forwarded-access-token",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "authorization",
        "gap-auth",
        "gap-signature",
    ];
    OWNED.iter().any(|o| {
        o.len() == name.len()
            && o.bytes().zip(name.bytes()).all(|(o, n)| {
                if n.is_ascii_alphanumeric() {
                    n.to_ascii_lowercase() == o
                } else {
                    o == b'-'
                }
            })
    })
}

/// The `Cookie` value without the gate's own cookies (`_oauth2_proxy*`); None when
/// nothing else is left (the benchmark request: the header is removed).
#[cfg(feature = "hostcalls")]
fn cookie_rest(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for part in value.split(|b| *b == b';') {
        let part = part.strip_prefix(b" ").unwrap_or(part);
        if part.is_empty() || part.starts_with(b"_oauth2_proxy") {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(part);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(feature = "hostcalls")]
impl Stream {
    fn rewrite_cookie(&self, value: &[u8]) {
        match cookie_rest(value) {
            Some(rest) => self.set_http_request_header_bytes("cookie", Some(&rest)),
            None => self.set_http_request_header("cookie", None),
        }
    }

    /// Per-header writes after reading the whole map: remove what must go, then set the
    /// identity headers with `replace` or `add`.
    fn per_header(&self, clock: bool, add: bool) {
        let headers = self.get_http_request_headers_bytes();
        if clock {
            let _now = self.get_current_time();
        }
        for (name, value) in &headers {
            if name == "cookie" {
                self.rewrite_cookie(value);
            } else if is_owned(name) {
                self.set_http_request_header(name, None);
            }
        }
        for (name, value) in IDENTITY {
            if add {
                self.add_http_request_header(name, value);
            } else {
                self.set_http_request_header(name, Some(value));
            }
        }
    }
}

/// The gate's hot path without its decisions, in the pattern the configuration picks.
#[cfg(feature = "hostcalls")]
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match self.variant {
            Variant::MapSet => {
                let headers = self.get_http_request_headers_bytes();
                let _now = self.get_current_time();
                let mut out: Vec<(&str, &[u8])> = headers
                    .iter()
                    .filter(|(n, _)| n != "cookie")
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect();
                out.extend(IDENTITY.iter().map(|(n, v)| (*n, v.as_bytes())));
                self.set_http_request_headers_bytes(out);
            }
            Variant::Replace => self.per_header(true, false),
            Variant::ReplaceAdd => self.per_header(true, true),
            Variant::AddNoClock => self.per_header(false, true),
            Variant::CookieOnly => {
                let cookie = self.get_http_request_header_bytes("cookie");
                let _now = self.get_current_time();
                if let Some(value) = cookie {
                    self.rewrite_cookie(&value);
                }
                for (name, value) in IDENTITY {
                    self.add_http_request_header(name, value);
                }
            }
            Variant::MapGet => {
                let _headers = self.get_http_request_headers_bytes();
                let _now = self.get_current_time();
            }
            Variant::OneAdd => {
                let _headers = self.get_http_request_headers_bytes();
                let _now = self.get_current_time();
                let (name, value) = IDENTITY[0];
                self.add_http_request_header(name, value);
            }
            Variant::Noop => {}
        }
        Action::Continue
    }
}
