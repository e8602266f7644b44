//! Authorization parity with oauth2-proxy, row by row: for each provider and access option,
//! the rule as oauth2-proxy's documentation or source states it (cited on the row), a user it
//! admits or refuses, and the verdict the filter must reach on every credential path (login,
//! refresh, bearer token, `/oauth2/auth`, WebSocket upgrade, gRPC). Where a bearer token
//! cannot carry a fact (a membership only the provider's API confirms), the row says what it
//! gets instead: never an admission the login would refuse. Each row is also checked against
//! `support::parity::reference`, the rules written apart from the filter's code, which the
//! property target in `tests/properties.rs` compares with the gate on random users and rules.
//!
//! Native (no Envoy): `cargo test --test parity`.

mod support;

use serde_json::{json, Value};
use support::parity::{self, Facts, Idp, Path, Repo, Verdict, OTHER_TENANT, TENANT};

struct Row {
    /// Where the expectation comes from.
    source: &'static str,
    idp: Idp,
    rules: Value,
    facts: Facts,
    /// The verdict on login and every session path.
    expected: Verdict,
    /// A bearer token's, when it differs (it carries the token's claims only).
    bearer: Option<Verdict>,
}

fn ok() -> Verdict {
    Ok(())
}

fn no(reason: &str) -> Verdict {
    Err(reason.to_string())
}

fn user(email: &str) -> Facts {
    Facts {
        email: Some(email.to_string()),
        email_verified: Some(true),
        login: "octocat".into(),
        tid: Some(TENANT.into()),
        ..Facts::default()
    }
}

fn rows() -> Vec<Row> {
    let generic = "oauth2-proxy validator.go NewValidator / isEmailValidWithDomains";
    let mut rows = vec![
        Row {
            source: generic,
            idp: Idp::Oidc,
            rules: json!({"email_domains": ["example.com"]}),
            facts: user("alice@Example.COM"),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy validator.go: `.example.com` matches subdomains only",
            idp: Idp::Oidc,
            rules: json!({"email_domains": [".example.com"]}),
            facts: user("alice@example.com"),
            expected: no("email_not_allowed"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy validator.go: `*.example.com` matches subdomains",
            idp: Idp::Oidc,
            rules: json!({"email_domains": ["*.example.com"]}),
            facts: user("alice@eu.example.com"),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy GHSA-c5c4-8r6x-56w3 (CVE-2026-40574): one `@` only",
            idp: Idp::Oidc,
            rules: json!({"email_domains": ["example.com"]}),
            facts: user("evil@x.org@example.com"),
            expected: no("invalid_email"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy validator.go: authenticated_emails_file widens the domains",
            idp: Idp::Oidc,
            rules: json!({"email_domains": ["example.com"],
                          "authenticated_emails": ["Jane@Other.org"]}),
            facts: user("jane@other.org"),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy providers/provider_data.go buildSessionFromClaims: \
                     `email_verified: false` refused",
            idp: Idp::Oidc,
            rules: json!({}),
            facts: Facts {
                email_verified: Some(false),
                ..user("alice@example.com")
            },
            expected: no("email_not_verified"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy provider_data.go: insecure_oidc_allow_unverified_email",
            idp: Idp::Oidc,
            rules: json!({"insecure_oidc_allow_unverified_email": true}),
            facts: Facts {
                email_verified: Some(false),
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy providers/provider_default.go Authorize: exact group match",
            idp: Idp::Oidc,
            rules: json!({"allowed_groups": ["devs"]}),
            facts: Facts {
                groups: vec!["Devs".into(), "ops".into()],
                ..user("alice@example.com")
            },
            expected: no("group_not_allowed"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy provider_default.go Authorize: one allowed group admits",
            idp: Idp::Oidc,
            rules: json!({"allowed_groups": ["ops", "devs"]}),
            facts: Facts {
                groups: vec!["devs".into()],
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "ours (README: Differences): with `*`, an IdP that shares no email admits",
            idp: Idp::Oidc,
            rules: json!({}),
            facts: Facts {
                email: None,
                ..user("x@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy keycloak_oidc.go extractRoles: realm roles admit",
            idp: Idp::Keycloak,
            rules: json!({"allowed_roles": ["admin"]}),
            facts: Facts {
                realm_roles: vec!["admin".into()],
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy keycloak_oidc.go: client roles as `<client>:<role>`",
            idp: Idp::Keycloak,
            rules: json!({"allowed_roles": ["gate-client:viewer"]}),
            facts: Facts {
                client_roles: vec!["viewer".into()],
                realm_roles: vec!["viewer".into()],
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy keycloak_oidc.go: a realm role is not a client role",
            idp: Idp::Keycloak,
            rules: json!({"allowed_roles": ["gate-client:viewer"]}),
            facts: Facts {
                realm_roles: vec!["viewer".into()],
                groups: vec!["viewer".into()],
                ..user("alice@example.com")
            },
            expected: no("group_not_allowed"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy keycloak_oidc.go addAllowedRoles: roles widen allowed groups",
            idp: Idp::Keycloak,
            rules: json!({"allowed_roles": ["admin"], "allowed_groups": ["staff"]}),
            facts: Facts {
                groups: vec!["staff".into()],
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "ours (oauth2-proxy#2363 has no hd check): Google's `hd` claim \
                     (developers.google.com/identity/openid-connect: hd)",
            idp: Idp::Google,
            rules: json!({"google_hosted_domains": ["example.com"]}),
            facts: Facts {
                hd: Some("example.com".into()),
                ..user("alice@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "ours: a consumer Google account has no `hd`",
            idp: Idp::Google,
            rules: json!({"google_hosted_domains": ["example.com"]}),
            facts: user("alice@gmail.com"),
            expected: no("hosted_domain"),
            bearer: None,
        },
        Row {
            source: "ours: another Workspace's `hd`",
            idp: Idp::Google,
            rules: json!({"google_hosted_domains": ["example.com"]}),
            facts: Facts {
                hd: Some("other.example".into()),
                ..user("alice@example.com")
            },
            expected: no("hosted_domain"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy providers/gitlab.go EnrichSession: groups from userinfo",
            idp: Idp::GitLab,
            rules: json!({"gitlab_group": ["acme/platform"]}),
            facts: Facts {
                groups: vec!["acme/platform".into()],
                ..user("alice@example.com")
            },
            expected: ok(),
            // A GitLab ID token carries no `groups`: a bearer token cannot show the group.
            bearer: Some(no("gitlab_group_or_project")),
        },
        Row {
            source: "oauth2-proxy gitlab.go EnrichSession: userinfo must say email_verified",
            idp: Idp::GitLab,
            rules: json!({}),
            facts: Facts {
                email_verified: None,
                ..user("alice@example.com")
            },
            expected: no("email_not_verified"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy gitlab.go addProjectsToSession: access level ≥ the wanted one",
            idp: Idp::GitLab,
            rules: json!({"gitlab_projects": ["acme/app=30"]}),
            facts: Facts {
                projects: vec![("acme/app".into(), 30, false)],
                ..user("alice@example.com")
            },
            expected: ok(),
            // Only GitLab's API confirms a project: a bearer token never does.
            bearer: Some(no("gitlab_group_or_project")),
        },
        Row {
            source: "oauth2-proxy gitlab.go addProjectsToSession: a lower level is no access",
            idp: Idp::GitLab,
            rules: json!({"gitlab_projects": ["acme/app=30"]}),
            facts: Facts {
                projects: vec![("acme/app".into(), 20, false)],
                ..user("alice@example.com")
            },
            expected: no("gitlab_group_or_project"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy gitlab.go addProjectsToSession: archived projects are skipped",
            idp: Idp::GitLab,
            rules: json!({"gitlab_projects": ["acme/app"]}),
            facts: Facts {
                projects: vec![("acme/app".into(), 50, true)],
                ..user("alice@example.com")
            },
            expected: no("gitlab_group_or_project"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy providers/ms_entra_id.go ValidateSession: allowed tenants",
            idp: Idp::Entra,
            rules: json!({"entra_id_allowed_tenants": [TENANT]}),
            facts: user("alice@example.com"),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy ms_entra_id.go checkTenantMatchesTenantList",
            idp: Idp::Entra,
            rules: json!({"entra_id_allowed_tenants": [TENANT]}),
            facts: Facts {
                tid: Some(OTHER_TENANT.into()),
                ..user("alice@example.com")
            },
            expected: no("entra_tenant"),
            bearer: None,
        },
        Row {
            source: "ours (nOAuth; Microsoft: xms_edov, email domain owner verified): across \
                     tenants an email without xms_edov is no email",
            idp: Idp::Entra,
            rules: json!({"entra_id_allowed_tenants": ["*"], "email_domains": ["example.com"]}),
            facts: Facts {
                tid: Some(OTHER_TENANT.into()),
                ..user("ceo@example.com")
            },
            expected: no("no_email"),
            bearer: None,
        },
        Row {
            source: "ours: with xms_edov the email counts",
            idp: Idp::Entra,
            rules: json!({"entra_id_allowed_tenants": ["*"], "email_domains": ["example.com"]}),
            facts: Facts {
                tid: Some(OTHER_TENANT.into()),
                xms_edov: Some(true),
                ..user("ceo@example.com")
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy providers/github.go getEmail: only a verified primary \
                     address; validator.go refuses none even with `*`",
            idp: Idp::GitHub,
            rules: json!({}),
            facts: Facts {
                email_verified: Some(false),
                ..user("octocat@example.com")
            },
            expected: no("no_email"),
            bearer: None,
        },
    ];
    let gh = "oauth2-proxy providers/github.go hasRepoAccess: push, or pull on a private repo";
    for (repo, expected) in [
        (
            Repo {
                private: true,
                push: false,
                pull: true,
            },
            ok(),
        ),
        (
            Repo {
                private: true,
                push: true,
                pull: true,
            },
            ok(),
        ),
        // Every GitHub user can pull a public repository: that proves nothing.
        (
            Repo {
                private: false,
                push: false,
                pull: true,
            },
            no("github_repo"),
        ),
        (
            Repo {
                private: false,
                push: true,
                pull: true,
            },
            ok(),
        ),
    ] {
        rows.push(Row {
            source: gh,
            idp: Idp::GitHub,
            rules: json!({"github_repo": "acme/app", "scope": "user:email repo"}),
            facts: Facts {
                repo: Some(repo),
                ..user("octocat@example.com")
            },
            expected,
            bearer: None,
        });
    }
    let member = |orgs: &[&str], teams: &[(&str, &str)]| Facts {
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        teams: teams
            .iter()
            .map(|(o, t)| (o.to_string(), t.to_string()))
            .collect(),
        ..user("octocat@example.com")
    };
    rows.extend([
        Row {
            source: "oauth2-proxy github.go getOrgs / hasOrg",
            idp: Idp::GitHub,
            rules: json!({"github_org": "acme"}),
            facts: member(&["acme"], &[]),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go hasOrg: \"user is missing required organization\"",
            idp: Idp::GitHub,
            rules: json!({"github_org": "acme"}),
            facts: member(&["other"], &[]),
            expected: no("github_org"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go hasOrgAndTeam: one of the teams (EqualFold)",
            idp: Idp::GitHub,
            rules: json!({"github_org": "acme", "github_team": "core, ops"}),
            facts: member(&["acme"], &[("acme", "OPS")]),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go hasOrgAndTeam: \"user is missing required team\"",
            idp: Idp::GitHub,
            rules: json!({"github_org": "acme", "github_team": "core"}),
            facts: member(&["acme"], &[("acme", "docs"), ("other", "core")]),
            expected: no("github_team"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go checkRestrictions: a listed user skips the rest",
            idp: Idp::GitHub,
            rules: json!({"github_org": "acme", "github_users": ["octocat"]}),
            facts: member(&[], &[]),
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go checkUserRestriction: \"missing github user\"",
            idp: Idp::GitHub,
            rules: json!({"github_users": ["hubot"]}),
            facts: member(&["acme"], &[]),
            expected: no("github_user"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go isCollaborator: 204 with github_token",
            idp: Idp::GitHub,
            rules: json!({"github_repo": "acme/app", "github_token": "ghp_x"}),
            facts: Facts {
                collaborator: true,
                ..member(&[], &[])
            },
            expected: ok(),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go isCollaborator: anything but 204 is no access",
            idp: Idp::GitHub,
            rules: json!({"github_repo": "acme/app", "github_token": "ghp_x"}),
            facts: Facts {
                repo: Some(Repo {
                    private: false,
                    push: true,
                    pull: true,
                }),
                ..member(&[], &[])
            },
            expected: no("github_repo"),
            bearer: None,
        },
        Row {
            source: "oauth2-proxy github.go getTeams: `org:team` groups for allowed_groups",
            idp: Idp::GitHub,
            rules: json!({"allowed_groups": ["acme:ops"]}),
            facts: member(&["acme"], &[("acme", "ops")]),
            expected: ok(),
            bearer: None,
        },
    ]);
    rows
}

#[test]
fn every_row_holds_on_every_credential_path() {
    let mut failures = Vec::new();
    for row in rows() {
        let got = parity::verdicts(row.idp, &row.rules, &row.facts)
            .unwrap_or_else(|e| panic!("{}: {e}", row.source));
        for (path, verdict) in got {
            let want = match (path, &row.bearer) {
                (Path::Bearer, Some(b)) => b.clone(),
                _ => row.expected.clone(),
            };
            let reference = parity::reference(row.idp, &row.facts, path, &row.rules);
            if verdict != want || reference != want {
                failures.push(format!(
                    "{:?} {} {:?}: filter {verdict:?}, reference {reference:?}, row {want:?}\n  \
                     ({})",
                    row.idp, row.rules, path, row.source
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A bearer token can prove no GitHub membership, so bearer tokens and GitHub's API rules
/// are refused together at load (oauth2-proxy's GitHub provider has no bearer support at all:
/// providers/provider_default.go CreateSessionFromToken returns ErrNotImplemented).
#[test]
fn github_rules_and_bearer_tokens_are_refused_together() {
    for rule in [
        json!({"github_org": "acme"}),
        json!({"github_org": "acme", "github_team": "core"}),
        json!({"github_repo": "acme/app"}),
        json!({"github_users": ["octocat"]}),
    ] {
        let mut rules = rule.clone();
        rules["skip_jwt_bearer_tokens"] = true.into();
        let e = match parity::config(Idp::GitHub, &rules) {
            Err(e) => e,
            Ok(_) => panic!("{rule} with bearer tokens was accepted"),
        };
        assert!(e.contains("skip_jwt_bearer_tokens"), "{e}");
    }
    let mut rules = json!({"allowed_groups": ["acme"]});
    rules["skip_jwt_bearer_tokens"] = true.into();
    assert!(parity::config(Idp::GitHub, &rules).is_ok());
}
