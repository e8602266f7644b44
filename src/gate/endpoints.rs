//! oauth2-proxy's informational endpoints: sign-out, userinfo and auth.

use super::login::{return_to, target};
use super::respond::{
    json, json_error, log_line, redirect_to, respond_step, text, unauthenticated,
};
use super::*;

pub(super) fn sign_out(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    let config = cx.config;
    if let Some(value) = cookie::read_joined(cookies, &config.cookie.name) {
        cx.sessions.remove(&value);
    }
    let t = target(req, env.now);
    let mut set_cookies = cookie::clear_all(&config.cookie, &t, cookies, &config.cookie.name);
    set_cookies.push(cookie::clear_cookie(
        &config.cookie,
        &t,
        &config.cookie.csrf_name(),
    ));
    let location = return_to(config, req, req.query("rd").as_deref());
    respond_step(
        redirect_to(&location, set_cookies),
        Some((Level::Info, log_line("sign_out", req.path_only(), &[]))),
    )
}

pub(super) fn userinfo(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    match current_session(cx, cookies, env.now) {
        Some(a) => respond_step(
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
        None => unauthenticated(req, json_error(401, "unauthorized")),
    }
}

pub(super) fn auth(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    let config = cx.config;
    match current_session(cx, cookies, env.now) {
        Some(s) => {
            let mut r = text(202, "Accepted");
            r.headers.extend(
                headers::for_auth_response(config, &s.session)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v)),
            );
            respond_step(r, None)
        }
        None => unauthenticated(req, text(401, "Unauthorized")),
    }
}
