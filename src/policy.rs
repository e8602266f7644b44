//! Who may enter: oauth2-proxy's `email_domains` and verified-email rule.

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    NoEmail,
    EmailNotVerified,
    DomainNotAllowed,
}

impl Denied {
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::NoEmail => "no_email",
            Denied::EmailNotVerified => "email_not_verified",
            Denied::DomainNotAllowed => "email_domain_not_allowed",
        }
    }
}

pub fn admit(
    config: &Config,
    email: Option<&str>,
    email_verified: Option<bool>,
) -> Result<(), Denied> {
    let any = config.email_domains.iter().any(|d| d == "*");
    let email = match email.filter(|e| !e.is_empty()) {
        Some(e) => e,
        // With "*" a provider that does not share emails can still be used (user = sub).
        None if any => return Ok(()),
        None => return Err(Denied::NoEmail),
    };
    // As oauth2-proxy: an IdP that says the address is unverified cannot vouch for it.
    if email_verified == Some(false) && !config.allow_unverified_email {
        return Err(Denied::EmailNotVerified);
    }
    if any {
        return Ok(());
    }
    let domain = match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            domain.to_ascii_lowercase()
        }
        _ => return Err(Denied::DomainNotAllowed),
    };
    let allowed = config.email_domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        match d.strip_prefix("*.") {
            Some(base) => domain.ends_with(&format!(".{base}")),
            None => domain == d,
        }
    });
    if allowed {
        Ok(())
    } else {
        Err(Denied::DomainNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::config;

    #[test]
    fn wildcard_admits_all_verified() {
        let c = config();
        assert_eq!(admit(&c, Some("a@b.c"), Some(true)), Ok(()));
        assert_eq!(admit(&c, None, None), Ok(()));
        assert_eq!(
            admit(&c, Some("a@b.c"), Some(false)),
            Err(Denied::EmailNotVerified)
        );
    }

    #[test]
    fn domains() {
        let mut c = config();
        c.email_domains = vec!["example.com".into(), "*.corp.net".into()];
        assert_eq!(admit(&c, Some("john@Example.COM"), None), Ok(()));
        assert_eq!(admit(&c, Some("a@x.corp.net"), None), Ok(()));
        assert_eq!(
            admit(&c, Some("a@corp.net"), None),
            Err(Denied::DomainNotAllowed)
        );
        assert_eq!(
            admit(&c, Some("jane@other.org"), None),
            Err(Denied::DomainNotAllowed)
        );
        assert_eq!(
            admit(&c, Some("x@example.com.evil.org"), None),
            Err(Denied::DomainNotAllowed)
        );
        assert_eq!(
            admit(&c, Some("example.com"), None),
            Err(Denied::DomainNotAllowed)
        );
        assert_eq!(admit(&c, None, None), Err(Denied::NoEmail));
        c.allow_unverified_email = true;
        assert_eq!(admit(&c, Some("john@example.com"), Some(false)), Ok(()));
    }
}
