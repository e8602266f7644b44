//! What the filter's own pages show, with oauth2-proxy's option names: `skip_provider_button`,
//! `custom_sign_in_logo`, `banner`, `footer` and `provider_display_name`. Every text is
//! shown escaped (oauth2-proxy passes `banner` and `footer` through as HTML; here they are
//! text). Nothing is fetched from elsewhere unless the logo is an `https://` URL.

use super::error::{err, ConfigError, Errors};
use super::reader::Reader;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub(super) const KEYS: &[&str] = &[
    "skip_provider_button",
    "custom_sign_in_logo",
    "banner",
    "footer",
    "provider_display_name",
];

/// A data URL logo is sent inline with every sign-in and error page.
pub const MAX_LOGO_BYTES: usize = 32 << 10;
/// `banner`, `footer`: a line or two of text.
pub const MAX_TEXT: usize = 512;
pub const MAX_NAME: usize = 64;

/// The image types a data URL logo may have.
const LOGO_TYPES: &[&str] = &["png", "jpeg", "gif", "webp", "svg+xml"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logo {
    /// `https://…`: the browser fetches it (the pages' CSP allows that origin only).
    Url { url: String, origin: String },
    /// `data:image/…;base64,…`, checked and at most [`MAX_LOGO_BYTES`] decoded.
    Data(String),
}

/// A text the pages show by default unless set, or not at all with `-`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Text {
    #[default]
    Default,
    Off,
    Custom(String),
}

#[derive(Debug, Clone, Default)]
pub struct Pages {
    /// `/oauth2/sign_in` goes straight to the IdP instead of showing its page.
    pub skip_provider_button: bool,
    pub logo: Option<Logo>,
    /// Above the sign-in button.
    pub banner: Text,
    /// At the bottom of every page.
    pub footer: Text,
    /// "Sign in with …" (default: the provider's own name).
    pub provider_display_name: Option<String>,
}

/// The pages group's validator.
pub(super) fn parse(r: &Reader) -> Result<Pages, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let pages = Pages {
        skip_provider_button: errs.or(r.bool("skip_provider_button", false), false),
        logo: errs.or(logo(r), None),
        banner: errs.or(text(r, "banner"), Text::Default),
        footer: errs.or(text(r, "footer"), Text::Default),
        provider_display_name: errs.or(name(r), None),
    };
    errs.done(pages)
}

fn text(r: &Reader, key: &str) -> Result<Text, ConfigError> {
    Ok(match r.string(key)?.as_deref() {
        None | Some("") => Text::Default,
        Some("-") => Text::Off,
        Some(t) if t.chars().count() > MAX_TEXT => {
            return Err(err(key, format!("at most {MAX_TEXT} characters")))
        }
        Some(t) if t.chars().any(char::is_control) => {
            return Err(err(key, "must be one line of text"))
        }
        Some(t) => Text::Custom(t.to_string()),
    })
}

fn name(r: &Reader) -> Result<Option<String>, ConfigError> {
    let key = "provider_display_name";
    match r.string(key)? {
        None => Ok(None),
        Some(n) if n.trim().is_empty() => Ok(None),
        Some(n) if n.chars().count() > MAX_NAME || n.chars().any(char::is_control) => Err(err(
            key,
            format!("one line of at most {MAX_NAME} characters"),
        )),
        Some(n) => Ok(Some(n)),
    }
}

fn logo(r: &Reader) -> Result<Option<Logo>, ConfigError> {
    let key = "custom_sign_in_logo";
    let Some(v) = r.string(key)? else {
        return Ok(None);
    };
    if v.is_empty() || v == "-" {
        return Ok(None);
    }
    if let Some(rest) = v.strip_prefix("data:image/") {
        return data_logo(key, &v, rest).map(Some);
    }
    let bad = || {
        err(
            key,
            "must be an https:// URL, or a data:image/…;base64,… URL (a file cannot be read \
             inside Envoy: inline it as a data URL), or `-`",
        )
    };
    let url = url::Url::parse(&v).map_err(|_| bad())?;
    let origin = match (url.scheme(), url.host_str()) {
        ("https", Some(h)) if url.username().is_empty() && url.password().is_none() => {
            match url.port() {
                Some(p) => format!("https://{h}:{p}"),
                None => format!("https://{h}"),
            }
        }
        _ => return Err(bad()),
    };
    if v.len() > 2048 {
        return Err(err(key, "at most 2048 characters"));
    }
    Ok(Some(Logo::Url {
        url: url.to_string(),
        origin,
    }))
}

fn data_logo(key: &str, whole: &str, rest: &str) -> Result<Logo, ConfigError> {
    let (kind, payload) = rest.split_once(";base64,").ok_or_else(|| {
        err(
            key,
            "a data URL logo must be data:image/<type>;base64,<data>",
        )
    })?;
    if !LOGO_TYPES.contains(&kind) {
        return Err(err(
            key,
            format!(
                "image type `{kind}` not supported: {}",
                LOGO_TYPES.join(", ")
            ),
        ));
    }
    let bytes = STANDARD
        .decode(payload)
        .map_err(|_| err(key, "the data URL's base64 does not decode"))?;
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(err(
            key,
            format!(
                "{} bytes: a logo sent with every page may be at most {MAX_LOGO_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(Logo::Data(whole.to_string()))
}
