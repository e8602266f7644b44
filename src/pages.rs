//! The few HTML pages the filter serves itself: sign-in and errors, with the branding of
//! `config::pages` (logo, banner, footer, the provider's display name). Self-contained: no
//! external asset but a configured `https://` logo, every interpolated value escaped, and
//! laid out for a phone's width as well as a desktop's.

use crate::config::{Logo, Pages, Text};
use crate::policy::Denied;

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

/// The pages' `Content-Security-Policy`: nothing but inline style, and the logo's origin
/// (or `data:`) for images when one is configured.
pub fn csp(p: &Pages) -> String {
    let img = match &p.logo {
        Some(Logo::Url { origin, .. }) => format!("; img-src {origin}"),
        Some(Logo::Data(_)) => "; img-src data:".to_string(),
        None => String::new(),
    };
    format!(
        "default-src 'none'; style-src 'unsafe-inline'{img}; form-action 'none'; base-uri 'none'"
    )
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330;\
margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;\
justify-content:center;padding:1rem}\
main{background:#fff;border-radius:10px;box-shadow:0 1px 4px #0002;padding:2rem 1.5rem;\
width:100%;max-width:26rem;text-align:center;overflow-wrap:anywhere}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}\
p{line-height:1.5;margin:.6rem 0}\
.logo img{max-width:100%;max-height:5rem;margin-bottom:.8rem}\
a.button{display:block;background:#2f5fd0;color:#fff;padding:.85rem 1rem;border-radius:6px;\
text-decoration:none;font-weight:600;margin-top:1.2rem}\
.id{color:#5b6270;font-size:.85rem}\
code{font-family:ui-monospace,monospace;background:#f0f1f4;padding:.1rem .3rem;border-radius:3px}\
footer{color:#5b6270;font-size:.8rem;margin-top:1.2rem;max-width:26rem;text-align:center;\
overflow-wrap:anywhere}";

fn page(p: &Pages, title: &str, body: &str) -> String {
    let logo = match &p.logo {
        Some(Logo::Url { url, .. }) => logo_img(url),
        Some(Logo::Data(data)) => logo_img(data),
        None => String::new(),
    };
    let footer = match &p.footer {
        Text::Off => String::new(),
        Text::Default => "<footer>Secured with wasm-oauth2-proxy</footer>".to_string(),
        Text::Custom(t) => format!("<footer>{}</footer>", escape(t)),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{}</title><style>{STYLE}</style></head>\
<body><main>{logo}{body}</main>{footer}</body></html>\n",
        escape(title),
    )
}

fn logo_img(src: &str) -> String {
    format!(
        "<div class=\"logo\"><img src=\"{}\" alt=\"Logo\"></div>",
        escape(src)
    )
}

/// oauth2-proxy's sign-in page: the banner, and one button that starts the login, named for
/// the provider (`Sign in with GitHub`) or its `provider_display_name`.
pub fn sign_in(p: &Pages, start_url: &str, provider: &str) -> String {
    let banner = match &p.banner {
        Text::Off => String::new(),
        Text::Default => "<p>You need to sign in to continue.</p>".to_string(),
        Text::Custom(t) => format!("<p>{}</p>", escape(t)),
    };
    let name = p.provider_display_name.as_deref().unwrap_or(provider);
    page(
        p,
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{banner}<a class=\"button\" href=\"{}\">Sign in with {}</a>",
            escape(start_url),
            escape(name)
        ),
    )
}

/// An error page. `message` is a fixed, user-facing sentence (details go to the log);
/// `request_id` is Envoy's `x-request-id`, for the user to quote to support.
pub fn error(
    p: &Pages,
    status: u16,
    message: &str,
    sign_in_url: &str,
    request_id: Option<&str>,
) -> String {
    let id = request_id.map_or(String::new(), |id| {
        format!(
            "<p class=\"id\">Request ID: <code>{}</code></p>",
            escape(id)
        )
    });
    page(
        p,
        &format!("{status} {}", reason(status)),
        &format!(
            "<h1>{status} {}</h1><p>{}</p>{id}<a class=\"button\" href=\"{}\">Sign in again</a>",
            escape(reason(status)),
            escape(message),
            escape(sign_in_url)
        ),
    )
}

/// What the 403 page says for a refusal: that access is refused, and which rule refused, in
/// words a user can act on, but never the rule's contents (which groups, domains or users it
/// allows).
pub fn refusal(d: Denied) -> String {
    format!(
        "You are not allowed to access this application. {}",
        rule(d)
    )
}

fn rule(d: Denied) -> &'static str {
    match d {
        Denied::NoEmail => "Your account has no email address this application can use.",
        Denied::InvalidEmail => "Your account's email address is not one this application can use.",
        Denied::EmailNotVerified => {
            "Your email address has not been verified with your identity provider."
        }
        Denied::EmailNotAllowed => "Your email address is not allowed to use this application.",
        Denied::GroupNotAllowed => {
            "Your account is not in a group or role allowed to use this application."
        }
        Denied::HostedDomain => {
            "Your account is not in the organization's domain this application requires."
        }
        Denied::Tenant => {
            "Your account's directory (tenant) is not allowed to use this application."
        }
        Denied::GitHubUser => "Your GitHub account is not allowed to use this application.",
        Denied::GitHubOrg => {
            "You are not a member of the GitHub organization this application requires."
        }
        Denied::GitHubTeam => "You are not a member of the GitHub team this application requires.",
        Denied::GitHubRepo => {
            "Your GitHub account lacks the repository access this application requires."
        }
        Denied::GitLabGroupOrProject => {
            "You are not a member of the GitLab group or project this application requires."
        }
    }
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

    fn branded() -> Pages {
        Pages {
            logo: Some(Logo::Url {
                url: "https://cdn.example.com/logo.png?a=1&b=\"2\"".into(),
                origin: "https://cdn.example.com".into(),
            }),
            banner: Text::Custom("<b>ACME</b> staff only".into()),
            footer: Text::Custom("Help: <a href=x>it</a>".into()),
            provider_display_name: Some("ACME <SSO>".into()),
            ..Pages::default()
        }
    }

    #[test]
    fn escapes_everything_interpolated() {
        let p = sign_in(
            &Pages::default(),
            "/oauth2/start?rd=\"><script>",
            "GitHub<b>",
        );
        assert!(!p.contains("<script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"));
        assert!(p.contains("Sign in with GitHub&lt;b&gt;"));
        let e = error(&Pages::default(), 403, "<b>", "/x'y", Some("<id>"));
        assert!(e.contains("&lt;b&gt;") && e.contains("/x&#39;y"));
        assert!(e.contains("403 Forbidden"));
        assert!(e.contains("Request ID: <code>&lt;id&gt;</code>"));
        let b = branded();
        let s = sign_in(&b, "/oauth2/start", "OpenID Connect");
        for raw in ["<b>ACME", "<a href=x>", "<SSO>", "b=\"2\""] {
            assert!(!s.contains(raw), "{raw} unescaped");
        }
        assert!(s.contains("&lt;b&gt;ACME&lt;/b&gt; staff only"));
        assert!(s.contains("Sign in with ACME &lt;SSO&gt;"));
        assert!(s.contains("src=\"https://cdn.example.com/logo.png?a=1&amp;b=&quot;2&quot;\""));
        assert!(s.contains("<footer>Help: &lt;a href=x&gt;it&lt;/a&gt;</footer>"));
    }

    #[test]
    fn defaults_and_dashes_as_oauth2_proxy() {
        let d = sign_in(&Pages::default(), "/s", "GitHub");
        assert!(d.contains("You need to sign in") && d.contains("<footer>"));
        assert!(!d.contains("<img"));
        let off = Pages {
            banner: Text::Off,
            footer: Text::Off,
            ..Pages::default()
        };
        let s = sign_in(&off, "/s", "GitHub");
        assert!(!s.contains("You need to sign in") && !s.contains("<footer>"));
        assert!(!error(&off, 500, "m", "/", None).contains("Request ID"));
    }

    #[test]
    fn a_refusal_names_its_rule_not_its_contents() {
        let all = [
            Denied::NoEmail,
            Denied::InvalidEmail,
            Denied::EmailNotVerified,
            Denied::EmailNotAllowed,
            Denied::GroupNotAllowed,
            Denied::HostedDomain,
            Denied::Tenant,
            Denied::GitHubUser,
            Denied::GitHubOrg,
            Denied::GitHubTeam,
            Denied::GitHubRepo,
            Denied::GitLabGroupOrProject,
        ];
        let mut seen = std::collections::HashSet::new();
        for d in all {
            let r = refusal(d);
            assert!(r.starts_with("You are not allowed to access this application. "));
            assert!(
                seen.insert(rule(d)),
                "{d:?} shares its words with another rule"
            );
        }
    }

    #[test]
    fn images_are_allowed_only_from_the_logo() {
        assert!(!csp(&Pages::default()).contains("img-src"));
        assert!(csp(&branded()).contains("img-src https://cdn.example.com;"));
        let data = Pages {
            logo: Some(Logo::Data("data:image/png;base64,AAAA".into())),
            ..Pages::default()
        };
        assert!(csp(&data).contains("img-src data:;"));
        assert!(csp(&data).starts_with("default-src 'none'"));
    }
}
