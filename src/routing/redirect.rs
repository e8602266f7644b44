//! The one place that decides whether a return URL (`rd`) is safe to redirect to.
//! Everything that sends the browser somewhere it asked to go must pass through here.

use crate::oidc;
use crate::routing::domain;

/// `Some(url)` when `rd` stays on this site (or a `whitelist_domains` entry), else `None`.
/// `host` is the request's own authority (`host[:port]`).
pub fn allowed(rd: &str, host: &str, whitelist: &[String]) -> Option<String> {
    // Browsers drop tabs and newlines and treat `\` as `/`, so `/\evil` or "/\t/evil" would
    // become a protocol-relative URL to another site.
    if rd.is_empty() || rd.bytes().any(|b| b < 0x21 || b == 0x7f || b == b'\\') {
        return None;
    }
    if rd.starts_with('/') {
        return (!rd.starts_with("//")).then(|| rd.to_string());
    }
    let url = oidc::http_url(rd, oidc::Credentials::Refused)?;
    let target_host = url.host_str()?.to_ascii_lowercase();
    let target = match url.port() {
        Some(p) => format!("{target_host}:{p}"),
        None => target_host.clone(),
    };
    let same_site = target == host.to_ascii_lowercase();
    let listed = whitelist
        .iter()
        .any(|w| whitelisted(w, &target_host, url.port()));
    (same_site || listed).then(|| url.to_string())
}

/// oauth2-proxy's `whitelist_domains`: `example.com` exact, `.example.com` for the domain
/// and its subdomains, optional `:port` or `:*`.
fn whitelisted(entry: &str, host: &str, port: Option<u16>) -> bool {
    let entry = entry.to_ascii_lowercase();
    let (domain, port_rule) = match entry.rsplit_once(':') {
        Some((d, p)) => (d.to_string(), Some(p.to_string())),
        None => (entry, None),
    };
    let port_ok = match port_rule.as_deref() {
        None => port.is_none(),
        Some("*") => true,
        Some(p) => port.map(|n| n.to_string()).as_deref() == Some(p),
    };
    let host_ok = match domain.strip_prefix('.') {
        Some(base) => domain::labels_below(host, base).is_some(),
        None => host == domain,
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "app.example.com";

    #[test]
    fn local_paths_pass() {
        assert_eq!(allowed("/", HOST, &[]).as_deref(), Some("/"));
        assert_eq!(
            allowed("/a/b?c=d#e", HOST, &[]).as_deref(),
            Some("/a/b?c=d#e")
        );
        assert_eq!(
            allowed("https://app.example.com/x", HOST, &[]).as_deref(),
            Some("https://app.example.com/x")
        );
    }

    #[test]
    fn open_redirects_are_refused() {
        for rd in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example/",
            "http://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "https://user:pw@app.example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.example",
            "",
            "https:evil.example",
            "https://app.example.com:8443/",
        ] {
            assert_eq!(allowed(rd, HOST, &[]), None, "{rd:?}");
        }
    }

    /// The build has no Unicode IDNA back end (Cargo.toml pins `idna_adapter` 1.0): a return
    /// URL whose host is not ASCII does not parse, so it is refused even when its Unicode
    /// form would map onto this host or a whitelisted domain (fullwidth letters, the
    /// ideographic full stop). A punycode host is plain ASCII and is judged as such.
    #[test]
    fn non_ascii_hosts_are_refused() {
        let wl = vec![".example.org".to_string()];
        for rd in [
            "https://b\u{fc}cher.example.org/",
            "https://\u{ff41}pp.example.com/",
            "https://app\u{3002}example\u{3002}com/",
            "https://app.example.com\u{3002}/",
            "https://APP.EXAMPLE.\u{ff43}om/x",
            "https://\u{440}\u{430}\u{443}\u{440}\u{430}\u{43b}.example.org/",
            "http://b\u{fc}cher.example.org:8080/",
        ] {
            assert_eq!(allowed(rd, HOST, &wl), None, "{rd:?}");
            assert_eq!(allowed(rd, "b\u{fc}cher.example.org", &wl), None, "{rd:?}");
        }
        assert_eq!(
            allowed("https://xn--bcher-kva.example.org/", HOST, &wl).as_deref(),
            Some("https://xn--bcher-kva.example.org/")
        );
        assert_eq!(
            allowed("https://xn--bcher-kva.example.net/", HOST, &wl),
            None
        );
    }

    #[test]
    fn whitelist_rules() {
        let wl = vec![
            ".example.org".to_string(),
            "exact.net".to_string(),
            "ports.io:*".to_string(),
            "p.io:8443".to_string(),
        ];
        assert!(allowed("https://a.b.example.org/", HOST, &wl).is_some());
        assert!(allowed("https://example.org/", HOST, &wl).is_some());
        assert!(allowed("https://badexample.org/", HOST, &wl).is_none());
        assert!(allowed("https://exact.net/", HOST, &wl).is_some());
        assert!(allowed("https://sub.exact.net/", HOST, &wl).is_none());
        assert!(allowed("https://exact.net:444/", HOST, &wl).is_none());
        assert!(allowed("https://ports.io:9999/", HOST, &wl).is_some());
        assert!(allowed("https://p.io:8443/", HOST, &wl).is_some());
        assert!(allowed("https://p.io:8444/", HOST, &wl).is_none());
    }
}
