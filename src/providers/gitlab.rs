//! `gitlab`, as oauth2-proxy's `providers/gitlab.go`: OpenID Connect whose groups and
//! `email_verified` come from userinfo (read at every login), and for each of
//! `gitlab_projects` the user's access from `GET /api/v4/projects/<path>` with the user's
//! token. A project the user has at least the configured access to (and that is not
//! archived) is confirmed (`Identity::proven`) and added to the groups as `project:<path>`;
//! `crate::policy` decides whether a group or a project admits.

use super::profile::{call_provider, done, get, Cx, Next, Profile};
use super::provider::Provider;
use crate::config::error::{err, ConfigError};
use crate::config::reader::Reader;
use crate::oidc::Identity;
use crate::policy::{self, ProviderRules};
use serde_json::Value;

pub(super) const KEYS: &[&str] = &["gitlab_group", "gitlab_projects"];

#[derive(Debug, Clone, Default)]
pub struct GitLab {
    pub groups: Vec<String>,
    /// `group/project` and the minimum access level (GitLab's numbers: 10 guest … 50 owner).
    pub projects: Vec<(String, u8)>,
    /// The REST API's base URL: the issuer's `/api/v4`.
    pub api: String,
}

impl GitLab {
    pub(super) fn parse(r: &Reader, issuer: Option<&str>) -> Result<GitLab, ConfigError> {
        let projects = r.string_list("gitlab_projects")?.unwrap_or_default();
        Ok(GitLab {
            groups: r.string_list("gitlab_group")?.unwrap_or_default(),
            projects: projects
                .iter()
                .map(|p| project(p))
                .collect::<Result<_, _>>()
                .map_err(|e| err("gitlab_projects", e))?,
            api: format!(
                "{}/api/v4",
                issuer.unwrap_or_default().trim_end_matches('/')
            ),
        })
    }
}

/// oauth2-proxy's `gitlab_projects` entry: `group/project` or `group/project=<level>`
/// (default 20, reporter).
fn project(entry: &str) -> Result<(String, u8), String> {
    let (path, level) = match entry.rsplit_once('=') {
        Some((p, l)) => (
            p,
            l.parse::<u8>()
                .map_err(|_| format!("`{entry}`: bad access level"))?,
        ),
        None => (entry, 20),
    };
    if !path.contains('/') || path.starts_with('/') || path.ends_with('/') {
        return Err(format!("`{entry}` is not `group/project`"));
    }
    if ![10, 20, 30, 40, 50].contains(&level) {
        return Err(format!(
            "`{entry}`: access level must be 10, 20, 30, 40 or 50"
        ));
    }
    Ok((path.to_string(), level))
}

impl Provider for GitLab {
    fn display_name(&self) -> &'static str {
        "GitLab"
    }

    fn default_scope(&self, _groups_wanted: bool) -> &'static str {
        // Project access is read through the API (oauth2-proxy's setProjectScope).
        if self.projects.is_empty() {
            "openid email"
        } else {
            "openid email read_api"
        }
    }

    fn rules(&self) -> ProviderRules {
        ProviderRules::GitLab {
            groups: self.groups.clone(),
            projects: self.projects.iter().map(|(p, _)| p.clone()).collect(),
        }
    }

    /// GitLab's groups and its `email_verified` are userinfo's: oauth2-proxy always asks.
    fn wants_userinfo(&self, _cx: &Cx, _id: &Identity) -> bool {
        true
    }

    fn kept_groups(&self, old: &[String]) -> Vec<String> {
        old.iter()
            .filter(|g| g.starts_with("project:"))
            .cloned()
            .collect()
    }

    fn advance(&self, _cx: &Cx, p: Profile) -> Next {
        self.project(p, 0)
    }

    fn on_answer(&self, _cx: &Cx, mut p: Profile, i: u32, answer: Option<(u16, &[u8])>) -> Next {
        let i = i as usize;
        let Some((path, wanted)) = self.projects.get(i) else {
            return Next::Failed("unexpected_answer".into());
        };
        match answer {
            Some((200, body)) => {
                let v: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return Next::Failed("gitlab_project_malformed".into()),
                };
                let level = |kind: &str| {
                    v.get("permissions")
                        .and_then(|p| p.get(kind))
                        .and_then(|a| a.get("access_level"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                // GitLab's effective access is the higher of the direct and the inherited one.
                let access = level("project_access").max(level("group_access"));
                // As oauth2-proxy: an archived project admits nobody.
                let archived = v.get("archived").and_then(Value::as_bool) == Some(true);
                if !archived && access >= u64::from(*wanted) {
                    p.identity.proven.push(policy::gitlab_project(path));
                    p.identity.groups.push(format!("project:{path}"));
                }
                self.project(p, i + 1)
            }
            // A token without `read_api` cannot look: a misconfiguration, not a refusal.
            Some((403, body)) if String::from_utf8_lossy(body).contains("insufficient_scope") => {
                Next::Failed("gitlab_project_insufficient_scope".into())
            }
            // Not visible to this user: not a member.
            Some((403 | 404, _)) => self.project(p, i + 1),
            Some((status, _)) => Next::Failed(format!("gitlab_project_status_{status}")),
            None => Next::Failed("gitlab_project_unreachable".into()),
        }
    }
}

impl GitLab {
    /// Asks about project `i` and the ones after it, or ends when there are no more.
    fn project(&self, p: Profile, i: usize) -> Next {
        let Some((path, _)) = self.projects.get(i) else {
            return done(p);
        };
        let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let c = get(&format!("{}/projects/{encoded}", self.api), &p.access_token);
        call_provider(c, p, u32::try_from(i).unwrap_or(u32::MAX))
    }
}
