//! GitHub (OAuth2, no ID token), as oauth2-proxy's `github` provider: the user from
//! `GET /user`, the primary verified email from `GET /user/emails`, then (when configured)
//! organisation and team membership, or repository access, unless the login is one of
//! `github_users`. The user header is the login (`octocat`).
//!
//! Lists are read 100 a page, at most `MAX_PAGES` pages; a short page is the last. A 403 or
//! 429 (rate limit, missing scope) is a failure with its reason, never a retry.

use super::{call, done, get_with, json_body, Next, Profile, Stage as Any, MAX_PAGES};
use crate::config::Config;
use crate::oidc::Discovery;
use serde_json::Value;

const ACCEPT: &str = "application/vnd.github+json";
const PER_PAGE: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    User,
    Emails,
    Orgs,
    Teams,
    Repo,
    Collaborator,
    /// Everything needed is known.
    Checked,
}

fn api_get(config: &Config, p: &Profile, path: &str) -> Option<crate::callout::Callout> {
    get_with(
        &format!("{}{path}", config.provider.github.api),
        &format!("Bearer {}", p.access_token),
        ACCEPT,
    )
}

fn page_query(page: u32) -> String {
    format!("?per_page={PER_PAGE}&page={}", page + 1)
}

/// What to ask next, given what the profile holds.
pub(super) fn advance(config: &Config, _d: &Discovery, mut p: Profile) -> Next {
    let gh = &config.provider.github;
    if p.sub.is_empty() {
        let c = api_get(config, &p, "/user");
        return call(c, p, Any::GitHub(Stage::User));
    }
    if p.identity.email.is_none() {
        let c = api_get(config, &p, &format!("/user/emails{}", page_query(p.page)));
        return call(c, p, Any::GitHub(Stage::Emails));
    }
    let login = p.identity.user.clone();
    if gh.users.iter().any(|u| u.eq_ignore_ascii_case(&login)) {
        return done(config, p);
    }
    match (&gh.org, gh.teams.is_empty(), &gh.repo) {
        (Some(_), true, _) => {
            let c = api_get(config, &p, &format!("/user/orgs{}", page_query(p.page)));
            call(c, p, Any::GitHub(Stage::Orgs))
        }
        (Some(_), false, _) => {
            let c = api_get(config, &p, &format!("/user/teams{}", page_query(p.page)));
            call(c, p, Any::GitHub(Stage::Teams))
        }
        (None, _, Some(repo)) => match &gh.token {
            // With `github_token`: is the user a collaborator (204) or not (404)?
            Some(token) => {
                let url = format!("{}/repos/{repo}/collaborators/{login}", gh.api);
                let c = get_with(&url, &format!("Bearer {token}"), ACCEPT);
                call(c, p, Any::GitHub(Stage::Collaborator))
            }
            None => {
                let c = api_get(config, &p, &format!("/repos/{repo}"));
                call(c, p, Any::GitHub(Stage::Repo))
            }
        },
        (None, _, None) if !gh.users.is_empty() => Next::Denied("github_user".into()),
        (None, _, None) => {
            p.stage = Any::GitHub(Stage::Checked);
            done(config, p)
        }
    }
}

pub(super) fn on_answer(
    config: &Config,
    d: &Discovery,
    mut p: Profile,
    stage: Stage,
    answer: Option<(u16, &[u8])>,
) -> Next {
    let gh = &config.provider.github;
    if stage == Stage::Collaborator {
        return match answer {
            Some((204, _)) => done(config, p),
            Some((404, _)) => Next::Denied("github_repo_collaborator".into()),
            other => refused(other, "collaborator"),
        };
    }
    let body = match answer {
        Some((200, _)) => match json_body(answer, "github") {
            Ok(v) => v,
            Err(next) => return next,
        },
        // GitHub answers 404 for a private repository the user cannot see.
        Some((404, _)) if stage == Stage::Repo => return Next::Denied("github_repo".into()),
        other => return refused(other, stage_name(&stage)),
    };
    match stage {
        Stage::User => {
            let login = body.get("login").and_then(Value::as_str).unwrap_or("");
            let id = body.get("id").and_then(Value::as_u64);
            let (Some(id), false) = (id, login.is_empty()) else {
                return Next::Failed("github_user_malformed".into());
            };
            p.sub = id.to_string();
            p.identity.user = login.to_string();
            p.identity.preferred_username = Some(login.to_string());
            p.page = 0;
        }
        Stage::Emails => {
            let Value::Array(emails) = &body else {
                return Next::Failed("github_emails_malformed".into());
            };
            let primary = emails.iter().find(|e| {
                e.get("primary").and_then(Value::as_bool) == Some(true)
                    && e.get("verified").and_then(Value::as_bool) == Some(true)
            });
            if let Some(email) = primary.and_then(|e| e.get("email")).and_then(Value::as_str) {
                p.identity.email = Some(email.to_string());
                p.identity.email_verified = Some(true);
                p.page = 0;
            } else if emails.len() < PER_PAGE || p.page + 1 >= MAX_PAGES {
                return Next::Denied("github_no_verified_primary_email".into());
            } else {
                p.page += 1;
            }
        }
        Stage::Orgs | Stage::Teams => {
            let Value::Array(items) = &body else {
                return Next::Failed("github_membership_malformed".into());
            };
            let org = gh.org.as_deref().unwrap_or("");
            let same = |v: Option<&Value>, want: &str| {
                v.and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case(want))
            };
            let member = items.iter().find_map(|item| {
                if stage == Stage::Orgs {
                    same(item.get("login"), org).then(|| org.to_string())
                } else {
                    let in_org = same(item.get("organization").and_then(|o| o.get("login")), org);
                    let slug = item.get("slug").and_then(Value::as_str)?;
                    (in_org && gh.teams.iter().any(|t| t.eq_ignore_ascii_case(slug)))
                        .then(|| format!("{org}:{slug}"))
                }
            });
            if let Some(group) = member {
                // As oauth2-proxy, the membership that admitted the user is a group.
                p.identity.groups = vec![org.to_string(), group];
                p.identity.groups.dedup();
                return done(config, p);
            }
            if items.len() < PER_PAGE || p.page + 1 >= MAX_PAGES {
                return Next::Denied(format!("github_{}", stage_name(&stage)));
            }
            p.page += 1;
        }
        Stage::Repo => {
            let perm = |k: &str| {
                body.get("permissions")
                    .and_then(|x| x.get(k))
                    .and_then(Value::as_bool)
                    == Some(true)
            };
            let private = body.get("private").and_then(Value::as_bool) != Some(false);
            return if perm("push") || (!private && perm("pull")) {
                done(config, p)
            } else {
                Next::Denied("github_repo".into())
            };
        }
        Stage::Collaborator | Stage::Checked => return Next::Failed("unexpected_answer".into()),
    }
    advance(config, d, p)
}

fn stage_name(stage: &Stage) -> &'static str {
    match stage {
        Stage::User => "user",
        Stage::Emails => "emails",
        Stage::Orgs => "org",
        Stage::Teams => "team",
        Stage::Repo => "repo",
        Stage::Collaborator => "collaborator",
        Stage::Checked => "checked",
    }
}

/// A non-200 answer: a revoked token, a missing scope, a rate limit.
fn refused(answer: Option<(u16, &[u8])>, what: &str) -> Next {
    match answer {
        Some((401, _)) => Next::Failed(format!("github_{what}_token_refused")),
        Some((403 | 429, _)) => Next::Failed(format!("github_{what}_rate_limited_or_forbidden")),
        Some((status, _)) => Next::Failed(format!("github_{what}_status_{status}")),
        None => Next::Failed(format!("github_{what}_unreachable")),
    }
}
