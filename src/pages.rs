//! The few HTML pages the filter serves itself: sign-in and errors. Self-contained (no
//! external assets) and every interpolated value escaped.

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>\
body{{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding-top:12vh;margin:0}}\
main{{background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002;padding:2rem 2.5rem;max-width:28rem;text-align:center}}\
a.button{{display:inline-block;background:#2f5fd0;color:#fff;padding:.7rem 1.4rem;border-radius:6px;text-decoration:none}}\
</style></head><body><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// oauth2-proxy's sign-in page: one button that starts the login.
/// The sign-in page: one button, named for the provider (`Sign in with GitHub`).
pub fn sign_in(start_url: &str, provider: &str) -> String {
    page(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>You need to sign in to continue.</p>\
<p><a class=\"button\" href=\"{}\">Sign in with {}</a></p>",
            escape(start_url),
            escape(provider)
        ),
    )
}

/// An error page. `message` is a fixed, user-facing sentence; details go to the log.
pub fn error(status: u16, message: &str, sign_in_url: &str) -> String {
    page(
        &format!("{status} {}", reason(status)),
        &format!(
            "<h1>{status} {}</h1><p>{}</p><p><a href=\"{}\">Sign in again</a></p>",
            escape(reason(status)),
            escape(message),
            escape(sign_in_url)
        ),
    )
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_interpolated() {
        let p = sign_in("/oauth2/start?rd=\"><script>", "GitHub<b>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"));
        let e = error(403, "<b>", "/x'y");
        assert!(e.contains("&lt;b&gt;") && e.contains("/x&#39;y"));
        assert!(e.contains("403 Forbidden"));
    }
}
