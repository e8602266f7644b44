//! GitLab, as oauth2-proxy's `gitlab` provider: OIDC with groups and `email_verified` from
//! userinfo, and for each of `gitlab_projects` the user's access read from
//! `GET /api/v4/projects/<path>` with the user's token. A project the user has at least the
//! configured access to (not archived) is confirmed (`Identity::proven`) and added to the
//! groups as `project:<path>`; `crate::policy` decides whether a group or a project admits.

use super::{call, done, get, Next, Profile, Stage as Any};
use crate::config::Config;
use crate::oidc::Discovery;
use crate::policy;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    /// Index into `gitlab_projects`.
    Project(usize),
}

pub(super) fn advance(config: &Config, _d: &Discovery, p: Profile) -> Next {
    project(config, p, 0)
}

/// Asks about project `i` and the ones after it, or ends when there are no more.
fn project(config: &Config, p: Profile, i: usize) -> Next {
    let Some((path, _)) = config.provider.gitlab.projects.get(i) else {
        return done(config, p);
    };
    let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let url = format!("{}/projects/{encoded}", config.provider.gitlab.api);
    let c = get(&url, &p.access_token);
    call(c, p, Any::GitLab(Stage::Project(i)))
}

pub(super) fn on_answer(
    config: &Config,
    _d: &Discovery,
    mut p: Profile,
    stage: Stage,
    answer: Option<(u16, &[u8])>,
) -> Next {
    let Stage::Project(i) = stage;
    let Some((path, wanted)) = config.provider.gitlab.projects.get(i) else {
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
            project(config, p, i + 1)
        }
        // A token without `read_api` cannot look: a misconfiguration, not a refusal.
        Some((403, body)) if String::from_utf8_lossy(body).contains("insufficient_scope") => {
            Next::Failed("gitlab_project_insufficient_scope".into())
        }
        // Not visible to this user: not a member.
        Some((403 | 404, _)) => project(config, p, i + 1),
        Some((status, _)) => Next::Failed(format!("gitlab_project_status_{status}")),
        None => Next::Failed("gitlab_project_unreachable".into()),
    }
}
