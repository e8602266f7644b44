//! oauth2-proxy's informational endpoints: userinfo and auth.

use super::request::Request;
use super::respond::{
    bearer_refused, challenge, json, json_error, log_line, respond_step, text, unauthenticated,
};
use super::vocab::{Step, Who};
use crate::config::Config;
use crate::log::Level;
use crate::policy::Restrictions;
use crate::routing::headers;

/// oauth2-proxy's `/oauth2/userinfo`: who the session (or bearer token) is, as JSON.
pub(super) fn userinfo(config: &Config, req: &Request, who: Who) -> Step {
    match who {
        Who::Known(a) => match a.verdict {
            Ok(()) => respond_step(
                json(
                    200,
                    &serde_json::json!({
                        "user": a.session.user,
                        "email": a.session.email,
                        "preferredUsername": a.session.preferred_username,
                        "groups": a.session.groups,
                    }),
                ),
                None,
            ),
            Err(_) => respond_step(json_error(403, "forbidden"), None),
        },
        Who::Pause(step) => *step,
        Who::Nobody(Some(e)) => bearer_refused(req, e),
        Who::Nobody(None) => {
            unauthenticated(req, challenge(config, json_error(401, "unauthorized")))
        }
    }
}

/// oauth2-proxy's `/oauth2/auth` for nginx `auth_request` and Envoy `ext_authz`: 202 with
/// the identity headers for an admitted user, 401 without a valid credential, 403 when the
/// access rules or the caller's `allowed_groups` / `allowed_email_domains` /
/// `allowed_emails` query restrictions do not admit the user.
pub(super) fn auth(config: &Config, req: &Request, who: Who) -> Step {
    match who {
        Who::Known(a) => {
            let restrictions = Restrictions::from_query(|k| req.query(k));
            match a.verdict.and_then(|()| restrictions.admit(&a.session)) {
                Ok(()) => {
                    let mut r = text(202, "Accepted");
                    r.headers.extend(
                        headers::for_auth_response(config, &a.session)
                            .into_iter()
                            .map(|(n, v)| (n.to_string(), v)),
                    );
                    respond_step(r, None)
                }
                Err(denied) => respond_step(
                    text(403, "Forbidden"),
                    Some((
                        Level::Info,
                        log_line(
                            "forbidden",
                            req.path_only(),
                            &[("reason", denied.reason()), ("email", &a.session.email)],
                        ),
                    )),
                ),
            }
        }
        Who::Pause(step) => *step,
        Who::Nobody(Some(e)) => bearer_refused(req, e),
        Who::Nobody(None) => unauthenticated(req, challenge(config, text(401, "Unauthorized"))),
    }
}
