//! The one "is this name in that domain" check, for every list of domains the configuration
//! takes: `whitelist_domains` (see `redirect`), `cookie_domains` (see `cookie`) and
//! `email_domains` (see `policy`). Each caller keeps its own entry forms (`.d`, `*.d`, ports)
//! and only asks this module where a name stands relative to a bare domain.

/// Where `name` stands relative to the domain `base`, ASCII case ignored: `None` when it is
/// not in it; `Some(labels)` with the labels in front of `base` when it is (`Some("a.b")` for
/// `a.b.base`), and `Some("")` for `base` itself or the degenerate `.base`. A look-alike such
/// as `evilbase` is not in `base`: the match always ends at a label boundary.
pub fn labels_below<'a>(name: &'a str, base: &str) -> Option<&'a str> {
    let split = name.len().checked_sub(base.len())?;
    let (head, tail) = (name.get(..split)?, name.get(split..)?);
    if !tail.eq_ignore_ascii_case(base) {
        return None;
    }
    if head.is_empty() {
        return Some(head);
    }
    head.strip_suffix('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_boundaries_and_case() {
        assert_eq!(labels_below("example.com", "example.com"), Some(""));
        assert_eq!(labels_below("Example.COM", "example.com"), Some(""));
        assert_eq!(labels_below("a.example.com", "example.com"), Some("a"));
        assert_eq!(labels_below("a.b.EXAMPLE.com", "example.COM"), Some("a.b"));
        assert_eq!(labels_below(".example.com", "example.com"), Some(""));
        assert_eq!(labels_below("badexample.com", "example.com"), None);
        assert_eq!(labels_below("example.com.evil", "example.com"), None);
        assert_eq!(labels_below("com", "example.com"), None);
        assert_eq!(labels_below("", "example.com"), None);
        // A multi-byte name never matches by accident of byte offsets.
        assert_eq!(labels_below("é.com", "\u{a9}.com"), None);
        assert_eq!(labels_below("ü.example.com", "example.com"), Some("ü"));
    }
}
