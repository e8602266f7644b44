//! GitHub (OAuth2, no ID token), as oauth2-proxy's `github` provider: the user from
//! `GET /user`, the primary verified email from `GET /user/emails`, the user's organisations
//! (`GET /user/orgs`) and teams (`GET /user/teams`) when `github_org` or `allowed_groups`
//! needs them (they become the groups, `org` and `org:team`), and without an organisation,
//! access to `github_repo`: `GET /repos/{repo}` with the user's token, or with
//! `github_token` whether the user is a collaborator. The user header is the login.
//!
//! What the API confirms goes into `Identity::proven`; `crate::policy` decides. Lists are
//! read 100 a page, at most `MAX_PAGES` pages; a short page is the last. A 401, 403 or 429
//! (revoked token, missing scope, rate limit) is a failure with its reason, never a retry.

use super::{call, done, get_with, json_body, Next, Profile, Stage as Any, MAX_PAGES};
use crate::config::Config;
use crate::oidc::Discovery;
use crate::policy;
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
pub(super) fn advance(config: &Config, _d: &Discovery, p: Profile) -> Next {
    let gh = &config.provider.github;
    let groups_wanted = !config.rules.allowed_groups.is_empty();
    if p.sub.is_empty() {
        let c = api_get(config, &p, "/user");
        return call(c, p, Any::GitHub(Stage::User));
    }
    if p.identity.email.is_none() && !p.finished("emails") {
        let c = api_get(config, &p, &format!("/user/emails{}", page_query(p.page)));
        return call(c, p, Any::GitHub(Stage::Emails));
    }
    if (gh.org.is_some() || groups_wanted) && !p.finished("orgs") {
        let c = api_get(config, &p, &format!("/user/orgs{}", page_query(p.page)));
        return call(c, p, Any::GitHub(Stage::Orgs));
    }
    if (!gh.teams.is_empty() || groups_wanted) && !p.finished("teams") {
        let c = api_get(config, &p, &format!("/user/teams{}", page_query(p.page)));
        return call(c, p, Any::GitHub(Stage::Teams));
    }
    // oauth2-proxy reads the repository only without an organisation, and not for a user
    // `github_users` admits anyway.
    let login = p.identity.user.clone();
    let listed = gh.users.iter().any(|u| u.eq_ignore_ascii_case(&login));
    match (&gh.org, &gh.repo) {
        (None, Some(repo)) if !listed && !p.finished("repo") => match &gh.token {
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
        _ => done(config, p),
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
        match answer {
            Some((204, _)) => confirm_repo(config, &mut p),
            // Not a collaborator: nothing confirmed.
            Some((404, _)) => {}
            other => return refused(other, "collaborator"),
        }
        p.finish("repo");
        return advance(config, d, p);
    }
    let body = match answer {
        Some((200, _)) => match json_body(answer, "github") {
            Ok(v) => v,
            Err(next) => return next,
        },
        // GitHub answers 404 for a private repository the user cannot see: no access.
        Some((404, _)) if stage == Stage::Repo => {
            p.finish("repo");
            return advance(config, d, p);
        }
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
            p.identity.proven.push(policy::github_user(login));
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
                p.finish("emails");
            } else if last_page(emails.len(), p.page) {
                // No verified primary address: the rules refuse the user.
                p.finish("emails");
            } else {
                p.page += 1;
            }
        }
        Stage::Orgs | Stage::Teams => {
            let Value::Array(items) = &body else {
                return Next::Failed("github_membership_malformed".into());
            };
            for item in items {
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                if stage == Stage::Orgs {
                    if let Some(org) = text(item.get("login")) {
                        p.identity.proven.push(policy::github_org(&org));
                        p.identity.groups.push(org);
                    }
                } else {
                    let org = text(item.get("organization").and_then(|o| o.get("login")));
                    if let (Some(org), Some(slug)) = (org, text(item.get("slug"))) {
                        p.identity.proven.push(policy::github_team(&org, &slug));
                        // As oauth2-proxy, every `org:team` is a group.
                        p.identity.groups.push(format!("{org}:{slug}"));
                    }
                }
            }
            if last_page(items.len(), p.page) {
                p.finish(stage_name(&stage));
            } else {
                p.page += 1;
            }
        }
        Stage::Repo => {
            let flag = |v: Option<&Value>| v.and_then(Value::as_bool) == Some(true);
            let perms = body.get("permissions");
            let can = |k: &str| flag(perms.and_then(|x| x.get(k)));
            // oauth2-proxy's hasRepoAccess: "Every user can implicitly pull from a public repo,
            // so only grant access if they have push access or the repo is private and they
            // can pull." A `private` GitHub did not send counts as public (Go's zero value).
            if can("push") || (flag(body.get("private")) && can("pull")) {
                confirm_repo(config, &mut p);
            }
            p.finish("repo");
        }
        Stage::Collaborator => return Next::Failed("unexpected_answer".into()),
    }
    let _ = gh;
    advance(config, d, p)
}

fn confirm_repo(config: &Config, p: &mut Profile) {
    if let Some(repo) = &config.provider.github.repo {
        p.identity.proven.push(policy::github_repo(repo));
    }
}

/// A short page is the last; so is the last page we read.
fn last_page(len: usize, page: u32) -> bool {
    len < PER_PAGE || page + 1 >= MAX_PAGES
}

fn stage_name(stage: &Stage) -> &'static str {
    match stage {
        Stage::User => "user",
        Stage::Emails => "emails",
        Stage::Orgs => "orgs",
        Stage::Teams => "teams",
        Stage::Repo => "repo",
        Stage::Collaborator => "collaborator",
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
