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

use super::profile::{call_provider, done, get_with, json_body, Cx, Next, Profile, MAX_PAGES};
use super::provider::Provider;
use crate::callout::Callout;
use crate::config::error::{err, ConfigError};
use crate::config::reader::{check_url, Reader};
use crate::oidc::{ClientAuth, Discovery};
use crate::policy::{self, GitHubRules, ProviderRules};
use serde_json::Value;

const ACCEPT: &str = "application/vnd.github+json";
const PER_PAGE: usize = 100;
const LOGIN: &str = "https://github.com/login/oauth/authorize";
const REDEEM: &str = "https://github.com/login/oauth/access_token";
const API: &str = "https://api.github.com";

pub(super) const KEYS: &[&str] = &[
    "validate_url",
    "github_org",
    "github_team",
    "github_repo",
    "github_token",
    "github_token_env",
    "github_users",
];

#[derive(Debug, Clone, Default)]
pub struct GitHub {
    pub org: Option<String>,
    pub teams: Vec<String>,
    pub repo: Option<String>,
    /// `github_token`: a token that may list the repository's collaborators.
    pub token: Option<String>,
    pub users: Vec<String>,
    /// The REST API's base URL (`validate_url`), without a trailing `/`.
    pub api: String,
    /// The web endpoints: github.com's, or GitHub Enterprise's (`login_url`, `redeem_url`).
    pub endpoints: Discovery,
}

impl GitHub {
    pub(super) fn parse(
        r: &Reader,
        env: &dyn Fn(&str) -> Option<String>,
        login_url: Option<String>,
        redeem_url: Option<String>,
    ) -> Result<GitHub, ConfigError> {
        let validate_url = r.string("validate_url")?.filter(|s| !s.is_empty());
        if let Some(u) = &validate_url {
            check_url("validate_url", u)?;
        }
        let token = match (r.string("github_token")?, r.string("github_token_env")?) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "github_token",
                    "set either `github_token` or `github_token_env`, not both",
                ))
            }
            (Some(t), None) => Some(t).filter(|t| !t.is_empty()),
            (None, Some(var)) => Some(env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                err(
                    "github_token_env",
                    format!("environment variable `{var}` is not set or empty"),
                )
            })?),
            (None, None) => None,
        };
        let gh = GitHub {
            org: r.string("github_org")?.filter(|s| !s.is_empty()),
            teams: r.string_list("github_team")?.unwrap_or_default(),
            repo: r.string("github_repo")?.filter(|s| !s.is_empty()),
            token,
            users: r.string_list("github_users")?.unwrap_or_default(),
            api: validate_url
                .unwrap_or_else(|| API.into())
                .trim_end_matches('/')
                .to_string(),
            endpoints: Discovery {
                authorization_endpoint: login_url.unwrap_or_else(|| LOGIN.into()),
                token_endpoint: redeem_url.unwrap_or_else(|| REDEEM.into()),
                ..Discovery::default()
            },
        };
        if !gh.teams.is_empty() && gh.org.is_none() {
            return Err(err("github_team", "needs `github_org`"));
        }
        if let Some(repo) = &gh.repo {
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                return Err(err("github_repo", "must be `owner/repository`"));
            }
        }
        Ok(gh)
    }

    fn api_get(&self, p: &Profile, path: &str) -> Option<Callout> {
        get_with(
            &format!("{}{path}", self.api),
            &format!("Bearer {}", p.access_token),
            ACCEPT,
        )
    }
}

/// What each of the provider's calls asks, as the profile's stage number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    User = 0,
    Emails = 1,
    Orgs = 2,
    Teams = 3,
    Repo = 4,
    Collaborator = 5,
}

impl Stage {
    fn of(n: u32) -> Option<Stage> {
        [
            Stage::User,
            Stage::Emails,
            Stage::Orgs,
            Stage::Teams,
            Stage::Repo,
            Stage::Collaborator,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }
}

fn call(c: Option<Callout>, p: Profile, stage: Stage) -> Next {
    call_provider(c, p, stage as u32)
}

fn page_query(page: u32) -> String {
    format!("?per_page={PER_PAGE}&page={}", page + 1)
}

impl Provider for GitHub {
    fn display_name(&self) -> &'static str {
        "GitHub"
    }

    fn has_id_token(&self) -> bool {
        false
    }

    fn default_scope(&self, groups_wanted: bool) -> &'static str {
        if self.org.is_some() || groups_wanted {
            "user:email read:org"
        } else {
            "user:email"
        }
    }

    /// GitHub documents the client credentials as form parameters only.
    fn default_client_auth(&self) -> ClientAuth {
        ClientAuth::Post
    }

    fn endpoints(&self) -> Option<&Discovery> {
        Some(&self.endpoints)
    }

    fn calls(&self, _groups_wanted: bool) -> Vec<(&'static str, String)> {
        vec![("validate_url", format!("{}/", self.api))]
    }

    fn rules(&self) -> ProviderRules {
        ProviderRules::GitHub(GitHubRules {
            users: self.users.clone(),
            org: self.org.clone(),
            teams: self.teams.clone(),
            repo: self.repo.clone(),
        })
    }

    fn advance(&self, cx: &Cx, p: Profile) -> Next {
        self.next_call(cx, p)
    }

    fn on_answer(&self, cx: &Cx, p: Profile, stage: u32, answer: Option<(u16, &[u8])>) -> Next {
        match Stage::of(stage) {
            Some(stage) => self.answered(cx, p, stage, answer),
            None => Next::Failed("unexpected_answer".into()),
        }
    }
}

impl GitHub {
    /// What to ask next, given what the profile holds.
    fn next_call(&self, cx: &Cx, p: Profile) -> Next {
        let gh = self;
        let groups_wanted = cx.groups_wanted;
        if p.sub.is_empty() {
            let c = gh.api_get(&p, "/user");
            return call(c, p, Stage::User);
        }
        if p.identity.email.is_none() && !p.finished("emails") {
            let c = gh.api_get(&p, &format!("/user/emails{}", page_query(p.page)));
            return call(c, p, Stage::Emails);
        }
        if (gh.org.is_some() || groups_wanted) && !p.finished("orgs") {
            let c = gh.api_get(&p, &format!("/user/orgs{}", page_query(p.page)));
            return call(c, p, Stage::Orgs);
        }
        if (!gh.teams.is_empty() || groups_wanted) && !p.finished("teams") {
            let c = gh.api_get(&p, &format!("/user/teams{}", page_query(p.page)));
            return call(c, p, Stage::Teams);
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
                    call(c, p, Stage::Collaborator)
                }
                None => {
                    let c = gh.api_get(&p, &format!("/repos/{repo}"));
                    call(c, p, Stage::Repo)
                }
            },
            _ => done(p),
        }
    }

    fn answered(
        &self,
        cx: &Cx,
        mut p: Profile,
        stage: Stage,
        answer: Option<(u16, &[u8])>,
    ) -> Next {
        if stage == Stage::Collaborator {
            match answer {
                Some((204, _)) => self.confirm_repo(&mut p),
                // Not a collaborator: nothing confirmed.
                Some((404, _)) => {}
                other => return refused(other, "collaborator"),
            }
            p.finish("repo");
            return self.next_call(cx, p);
        }
        let body = match answer {
            Some((200, _)) => match json_body(answer, "github") {
                Ok(v) => v,
                Err(next) => return next,
            },
            // GitHub answers 404 for a private repository the user cannot see: no access.
            Some((404, _)) if stage == Stage::Repo => {
                p.finish("repo");
                return self.next_call(cx, p);
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
                    self.confirm_repo(&mut p);
                }
                p.finish("repo");
            }
            Stage::Collaborator => return Next::Failed("unexpected_answer".into()),
        }
        self.next_call(cx, p)
    }
}

impl GitHub {
    fn confirm_repo(&self, p: &mut Profile) {
        if let Some(repo) = &self.repo {
            p.identity.proven.push(policy::github_repo(repo));
        }
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
