//! Who may enter: oauth2-proxy's rules (`email_domains`, `authenticated_emails`,
//! `allowed_groups`, `allowed_roles`, the verified-email rule) and each provider's own
//! (GitHub organisations, teams, repositories and users; GitLab groups and projects; Entra
//! tenants; Google's hosted domain). [`admit`] is the one function every credential path
//! asks — login, refresh, bearer token, `/oauth2/auth`, WebSocket upgrade, gRPC — so no path
//! admits an identity another would refuse. It reads only the session's facts: claims the
//! IdP signed, and memberships its API confirmed at login (`Session::proven`); a rule whose
//! facts a path cannot have (a bearer token proves no GitHub membership) refuses there.
//! The verdict is cached with the opened session, and a configuration change reaches
//! existing sessions.

use crate::session::Session;

/// The access rules of the configuration, normalised at load (lower-case emails and domains).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `*`, `example.com` (exactly), `.example.com` or `*.example.com` (its subdomains only).
    pub email_domains: Vec<String>,
    pub authenticated_emails: Vec<String>,
    pub allowed_groups: Vec<String>,
    /// Realm roles as `role`, client roles as `client:role`.
    pub allowed_roles: Vec<String>,
    pub allow_unverified_email: bool,
    pub provider: ProviderRules,
}

/// A provider's own options, as oauth2-proxy names them.
#[derive(Debug, Clone, Default)]
pub enum ProviderRules {
    /// `oidc`, `keycloak-oidc`: the generic rules only.
    #[default]
    None,
    /// `google_hosted_domains` (ours): `hd` must be one of them (when any are set).
    Google {
        hosted_domains: Vec<String>,
    },
    /// `gitlab_group` / `gitlab_projects`: in one of the groups (userinfo's `groups`), or a
    /// project access confirmed at login. GitLab also requires a verified email.
    GitLab {
        groups: Vec<String>,
        projects: Vec<String>,
    },
    /// `entra_id_allowed_tenants`: `tid` must be one of them (`*`, or none set: any).
    Entra {
        tenants: Vec<String>,
    },
    GitHub(GitHubRules),
}

#[derive(Debug, Clone, Default)]
pub struct GitHubRules {
    pub users: Vec<String>,
    pub org: Option<String>,
    pub teams: Vec<String>,
    pub repo: Option<String>,
}

impl GitHubRules {
    /// Whether any rule needs a membership only GitHub's API can confirm.
    pub fn any(&self) -> bool {
        !self.users.is_empty() || self.org.is_some() || self.repo.is_some()
    }
}

/// What `Session::proven` holds when GitHub's API confirmed it at login (compared without
/// regard to case: GitHub logins, organisations, team slugs and repositories are
/// case-insensitive).
pub fn github_user(login: &str) -> String {
    format!("github:user:{login}")
}
pub fn github_org(org: &str) -> String {
    format!("github:org:{org}")
}
pub fn github_team(org: &str, slug: &str) -> String {
    format!("github:team:{org}:{slug}")
}
pub fn github_repo(repo: &str) -> String {
    format!("github:repo:{repo}")
}
/// A `gitlab_projects` entry the user has the configured access to (exact, as configured).
pub fn gitlab_project(path: &str) -> String {
    format!("gitlab:project:{path}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoEmail,
    InvalidEmail,
    EmailNotVerified,
    EmailNotAllowed,
    GroupNotAllowed,
    HostedDomain,
    Tenant,
    GitHubUser,
    GitHubOrg,
    GitHubTeam,
    GitHubRepo,
    GitLabGroupOrProject,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::NoEmail => "no_email",
            Denied::InvalidEmail => "invalid_email",
            Denied::EmailNotVerified => "email_not_verified",
            Denied::EmailNotAllowed => "email_not_allowed",
            Denied::GroupNotAllowed => "group_not_allowed",
            Denied::HostedDomain => "hosted_domain",
            Denied::Tenant => "entra_tenant",
            Denied::GitHubUser => "github_user",
            Denied::GitHubOrg => "github_org",
            Denied::GitHubTeam => "github_team",
            Denied::GitHubRepo => "github_repo",
            Denied::GitLabGroupOrProject => "gitlab_group_or_project",
        }
    }
}

/// An address any rule may look at: one `@`, a non-empty local part and domain, and no
/// whitespace or control characters. Anything else is refused before a rule sees it: with
/// two `@`, `evil@x.org@example.com` would pass a domain check on its last part while a
/// mail system delivers it elsewhere.
pub fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The domain part of a valid address, lower-cased.
fn domain_of(email: &str) -> Option<String> {
    email
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
}

/// oauth2-proxy's `email_domains` entry forms.
pub fn domain_matches(entry: &str, domain: &str) -> bool {
    if entry == "*" {
        return true;
    }
    match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
        // Subdomains only: at least one label in front of the base.
        Some(base) => {
            crate::routing::domain::labels_below(domain, base).is_some_and(|l| !l.is_empty())
        }
        None => domain == entry,
    }
}

fn email_in(list: &[String], email: &str) -> bool {
    list.iter().any(|e| e.eq_ignore_ascii_case(email))
}

pub fn admit(rules: &Rules, s: &Session) -> Result<(), Denied> {
    let any_domain = rules.email_domains.iter().any(|d| d == "*");
    // GitHub, as oauth2-proxy: a user without a verified primary address is refused even
    // with `*`.
    let email_required = matches!(rules.provider, ProviderRules::GitHub(_));
    if s.email.is_empty() {
        // With "*" an IdP that shares no email can still be used (the user is then its id).
        if !any_domain || email_required {
            return Err(Denied::NoEmail);
        }
    } else {
        if !valid_email(&s.email) {
            return Err(Denied::InvalidEmail);
        }
        // As oauth2-proxy: an IdP that says the address is unverified cannot vouch for it;
        // GitLab's must say it is verified.
        let must_say_verified = matches!(rules.provider, ProviderRules::GitLab { .. });
        let unverified = s.email_verified == Some(false)
            || (must_say_verified && s.email_verified != Some(true));
        if unverified && !rules.allow_unverified_email {
            return Err(Denied::EmailNotVerified);
        }
        let domain = domain_of(&s.email).unwrap_or_default();
        let allowed = rules
            .email_domains
            .iter()
            .any(|d| domain_matches(d, &domain))
            || email_in(&rules.authenticated_emails, &s.email);
        if !allowed {
            return Err(Denied::EmailNotAllowed);
        }
    }
    provider_admits(&rules.provider, s)?;
    in_groups(rules, s)
}

fn proven(s: &Session, fact: &str) -> bool {
    s.proven.iter().any(|p| p.eq_ignore_ascii_case(fact))
}

fn provider_admits(rules: &ProviderRules, s: &Session) -> Result<(), Denied> {
    let one_of = |list: &[String], v: &str| list.iter().any(|x| x.eq_ignore_ascii_case(v));
    match rules {
        ProviderRules::None => Ok(()),
        ProviderRules::Google { hosted_domains } => {
            if hosted_domains.is_empty() || one_of(hosted_domains, &s.hosted_domain) {
                Ok(())
            } else {
                Err(Denied::HostedDomain)
            }
        }
        ProviderRules::Entra { tenants } => {
            let any = tenants.is_empty() || tenants.iter().any(|t| t == "*");
            if any || (!s.tenant.is_empty() && one_of(tenants, &s.tenant)) {
                Ok(())
            } else {
                Err(Denied::Tenant)
            }
        }
        ProviderRules::GitLab { groups, projects } => {
            if groups.is_empty() && projects.is_empty() {
                return Ok(());
            }
            let in_group = s.groups.iter().any(|g| groups.contains(g));
            let in_project = projects
                .iter()
                .any(|p| s.proven.iter().any(|f| *f == gitlab_project(p)));
            if in_group || in_project {
                Ok(())
            } else {
                Err(Denied::GitLabGroupOrProject)
            }
        }
        ProviderRules::GitHub(gh) => github_admits(gh, s),
    }
}

/// oauth2-proxy's `checkRestrictions`: a listed user is admitted whatever else is set;
/// otherwise the organisation (and one of its teams), or without an organisation the
/// repository, or without either the user list decides.
fn github_admits(gh: &GitHubRules, s: &Session) -> Result<(), Denied> {
    if gh.users.iter().any(|u| proven(s, &github_user(u))) {
        return Ok(());
    }
    match (&gh.org, &gh.repo) {
        (Some(org), _) if gh.teams.is_empty() => proven(s, &github_org(org))
            .then_some(())
            .ok_or(Denied::GitHubOrg),
        (Some(org), _) => {
            if gh.teams.iter().any(|t| proven(s, &github_team(org, t))) {
                Ok(())
            } else if proven(s, &github_org(org)) {
                Err(Denied::GitHubTeam)
            } else {
                Err(Denied::GitHubOrg)
            }
        }
        (None, Some(repo)) => proven(s, &github_repo(repo))
            .then_some(())
            .ok_or(Denied::GitHubRepo),
        (None, None) if !gh.users.is_empty() => Err(Denied::GitHubUser),
        (None, None) => Ok(()),
    }
}

fn in_groups(rules: &Rules, s: &Session) -> Result<(), Denied> {
    if rules.allowed_groups.is_empty() && rules.allowed_roles.is_empty() {
        return Ok(());
    }
    // As oauth2-proxy's keycloak-oidc: allowed roles widen the allowed groups.
    let by_group = s.groups.iter().any(|g| rules.allowed_groups.contains(g));
    let by_role = s.roles.iter().any(|r| rules.allowed_roles.contains(r));
    if by_group || by_role {
        Ok(())
    } else {
        Err(Denied::GroupNotAllowed)
    }
}

/// The restrictions an nginx `auth_request` caller adds to `/oauth2/auth` in its query, as
/// oauth2-proxy reads them: each present list must admit the user.
#[derive(Debug, Default)]
pub struct Restrictions {
    pub groups: Option<Vec<String>>,
    pub email_domains: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
}

impl Restrictions {
    /// From the comma-separated query parameters (`None` when a parameter is absent).
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> Restrictions {
        let list = |key: &str| {
            get(key).map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        Restrictions {
            groups: list("allowed_groups"),
            email_domains: list("allowed_email_domains")
                .map(|l| l.into_iter().map(|d| d.to_ascii_lowercase()).collect()),
            emails: list("allowed_emails"),
        }
    }

    pub fn admit(&self, s: &Session) -> Result<(), Denied> {
        if let Some(groups) = &self.groups {
            if !s.groups.iter().any(|g| groups.contains(g)) {
                return Err(Denied::GroupNotAllowed);
            }
        }
        let email_ok = |ok: &dyn Fn(&str) -> bool| valid_email(&s.email) && ok(&s.email);
        if let Some(domains) = &self.email_domains {
            let domain = domain_of(&s.email).unwrap_or_default();
            if !email_ok(&|_| domains.iter().any(|d| domain_matches(d, &domain))) {
                return Err(Denied::EmailNotAllowed);
            }
        }
        if let Some(emails) = &self.emails {
            if !email_ok(&|e| email_in(emails, e)) {
                return Err(Denied::EmailNotAllowed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(email: &str) -> Session {
        Session {
            user: "u".into(),
            email: email.into(),
            preferred_username: String::new(),
            email_verified: None,
            groups: vec!["developers".into()],
            roles: vec!["reader".into(), "app:admin".into()],
            access_token: String::new(),
            id_token: String::new(),
            refresh_token: String::new(),
            created_at: 0,
            expires_at: 1,
            ..Default::default()
        }
    }

    fn rules(domains: &[&str]) -> Rules {
        Rules {
            email_domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Rules::default()
        }
    }

    #[test]
    fn malformed_emails_are_refused_before_any_rule() {
        for bad in [
            "evil@x.org@example.com",
            "a@@example.com",
            "@example.com",
            "john@",
            "john",
            "john @example.com",
            "john@example.com ",
            "john\t@example.com",
            "john@exa\nmple.com",
            "john\0@example.com",
            "jo\u{85}hn@example.com",
            "john@example.com\u{2028}",
            "john\u{a0}@example.com",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
            for r in [rules(&["*"]), rules(&["example.com"])] {
                assert_eq!(
                    admit(&r, &session(bad)),
                    Err(Denied::InvalidEmail),
                    "{bad:?}"
                );
            }
        }
        assert!(valid_email("john.doe+tag@sub.example.com"));
    }

    #[test]
    fn wildcard_admits_all_verified() {
        let r = rules(&["*"]);
        assert_eq!(admit(&r, &session("a@b.c")), Ok(()));
        assert_eq!(admit(&r, &session("")), Ok(()));
        let mut s = session("a@b.c");
        s.email_verified = Some(false);
        assert_eq!(admit(&r, &s), Err(Denied::EmailNotVerified));
        let r = Rules {
            allow_unverified_email: true,
            ..r
        };
        assert_eq!(admit(&r, &s), Ok(()));
    }

    #[test]
    fn domain_forms() {
        let r = rules(&["example.com", "*.corp.net", ".sub.org"]);
        for (email, ok) in [
            ("john@Example.COM", true),
            ("john@example.com", true),
            ("a@x.corp.net", true),
            ("a@x.y.corp.net", true),
            ("a@corp.net", false),
            ("a@evilcorp.net", false),
            ("a@x.sub.org", true),
            ("a@sub.org", false),
            ("a@xsub.org", false),
            ("jane@other.org", false),
            ("x@example.com.evil.org", false),
            ("x@evil-example.com", false),
            ("x@sub.example.com", false),
        ] {
            let got = admit(&r, &session(email));
            assert_eq!(got.is_ok(), ok, "{email}: {got:?}");
        }
        assert_eq!(admit(&r, &session("")), Err(Denied::NoEmail));
    }

    #[test]
    fn authenticated_emails_widen_the_domains() {
        let r = Rules {
            authenticated_emails: vec!["jane@other.org".into()],
            ..rules(&["example.com"])
        };
        assert_eq!(admit(&r, &session("Jane@Other.org")), Ok(()));
        assert_eq!(admit(&r, &session("john@example.com")), Ok(()));
        assert_eq!(
            admit(&r, &session("joe@other.org")),
            Err(Denied::EmailNotAllowed)
        );
        let only = Rules {
            authenticated_emails: vec!["jane@other.org".into()],
            ..Rules::default()
        };
        assert_eq!(admit(&only, &session("jane@other.org")), Ok(()));
        assert_eq!(
            admit(&only, &session("john@example.com")),
            Err(Denied::EmailNotAllowed)
        );
        assert_eq!(admit(&only, &session("")), Err(Denied::NoEmail));
    }

    #[test]
    fn groups_and_roles() {
        let mut r = rules(&["*"]);
        r.allowed_groups = vec!["admins".into()];
        assert_eq!(admit(&r, &session("a@b.c")), Err(Denied::GroupNotAllowed));
        r.allowed_groups.push("developers".into());
        assert_eq!(admit(&r, &session("a@b.c")), Ok(()));
        let mut r = rules(&["*"]);
        r.allowed_roles = vec!["admin".into()];
        assert_eq!(
            admit(&r, &session("a@b.c")),
            Err(Denied::GroupNotAllowed),
            "a client role is not a realm role"
        );
        r.allowed_roles = vec!["app:admin".into()];
        assert_eq!(admit(&r, &session("a@b.c")), Ok(()));
        r.allowed_roles = vec!["other".into()];
        r.allowed_groups = vec!["developers".into()];
        assert_eq!(admit(&r, &session("a@b.c")), Ok(()));
    }

    #[test]
    fn auth_endpoint_restrictions() {
        let q = |pairs: &'static [(&'static str, &'static str)]| {
            Restrictions::from_query(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let s = session("john@example.com");
        assert_eq!(q(&[]).admit(&s), Ok(()));
        assert_eq!(
            q(&[("allowed_groups", "ops, developers")]).admit(&s),
            Ok(())
        );
        assert_eq!(
            q(&[("allowed_groups", "ops")]).admit(&s),
            Err(Denied::GroupNotAllowed)
        );
        assert_eq!(
            q(&[("allowed_email_domains", "Example.com")]).admit(&s),
            Ok(())
        );
        assert_eq!(
            q(&[("allowed_email_domains", "other.org,*.example.com")]).admit(&s),
            Err(Denied::EmailNotAllowed)
        );
        assert_eq!(
            q(&[("allowed_emails", "jane@other.org,JOHN@example.com")]).admit(&s),
            Ok(())
        );
        assert_eq!(
            q(&[("allowed_emails", "jane@other.org")]).admit(&s),
            Err(Denied::EmailNotAllowed)
        );
        let odd = session("evil@x.org@example.com");
        assert_eq!(
            q(&[("allowed_email_domains", "example.com")]).admit(&odd),
            Err(Denied::EmailNotAllowed)
        );
        assert_eq!(
            q(&[("allowed_groups", "")]).admit(&s),
            Err(Denied::GroupNotAllowed),
            "an empty list admits nobody"
        );
    }
}
