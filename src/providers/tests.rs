//! The profile state machine with hand-built answers: every call it asks for, in order, and
//! how each provider's answers end it (`Done`, `Denied`, `Failed`).

use super::{Next, Profile, MAX_PAGES};
use crate::callout::Callout;
use crate::config::tests_support::base;
use crate::config::Config;
use crate::oidc::{Discovery, Verified};
use serde_json::{json, Value};

/// The profile machine as the gate starts it, for `c` and the issuer `d`.
fn start(
    c: &Config,
    d: &Discovery,
    access_token: &str,
    verified: Option<&Verified>,
    access: Option<&Verified>,
) -> Next {
    let cx = c.provider_cx(d.userinfo_endpoint.as_deref());
    super::start(c.provider.get(), &cx, access_token, verified, access)
}

/// The issuer an Entra ID token must name (`Provider::expected_issuer`).
fn expected_issuer(discovered: &str, token: &str) -> String {
    use super::provider::Provider;
    super::entra::Entra::default().expected_issuer(discovered, token)
}

fn resume(c: &Config, d: &Discovery, p: Profile, answer: Option<(u16, &[u8])>) -> Next {
    super::resume(
        c.provider.get(),
        &c.provider_cx(d.userinfo_endpoint.as_deref()),
        p,
        answer,
    )
}

const AT: &str = "access-token-1";
const SUB: &str = "sub-1";

/// `tests_support::base()` with `extra` on top (`null` removes a key), parsed.
fn config(extra: Value) -> Config {
    let mut v = base();
    let all = v.as_object_mut().unwrap();
    for (k, val) in extra.as_object().unwrap() {
        if val.is_null() {
            all.remove(k);
        } else {
            all.insert(k.clone(), val.clone());
        }
    }
    match Config::parse(v.to_string().as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A discovery document on `issuer`'s host, with a userinfo endpoint when `userinfo`.
fn discovery(issuer: &str, userinfo: bool) -> Discovery {
    Discovery {
        issuer: issuer.into(),
        authorization_endpoint: format!("{issuer}/authorize"),
        token_endpoint: format!("{issuer}/token"),
        jwks_uri: format!("{issuer}/jwks"),
        userinfo_endpoint: userinfo.then(|| format!("{issuer}/userinfo")),
        end_session_endpoint: None,
        revocation_endpoint: None,
        token_endpoint_auth_methods_supported: Vec::new(),
        code_challenge_methods_supported: Vec::new(),
        id_token_signing_alg_values_supported: Vec::new(),
    }
}

fn idp() -> Discovery {
    discovery("https://idp.example.com", true)
}

fn verified(claims: Value) -> Verified {
    Verified {
        sub: SUB.into(),
        exp: 0,
        claims: claims.as_object().unwrap().clone(),
    }
}

fn start_with(c: &Config, d: &Discovery, claims: Value) -> Next {
    start(c, d, AT, Some(&verified(claims)), None)
}

#[track_caller]
fn called(next: Next) -> (Callout, Profile) {
    match next {
        Next::Call(c, p) => (c, *p),
        other => panic!("expected a call, got {other:?}"),
    }
}

#[track_caller]
fn finished(next: Next) -> Profile {
    match next {
        Next::Done(p) => *p,
        other => panic!("expected the end, got {other:?}"),
    }
}

/// The rules' verdict on where the profile ended: the reason `crate::policy` refuses it.
#[track_caller]
fn denied(c: &Config, next: Next) -> String {
    let p = finished(next);
    let s = crate::session::Session::default().with_identity(p.identity);
    match crate::policy::admit(&c.rules, &s) {
        Err(d) => d.reason().to_string(),
        Ok(()) => panic!("expected a refusal, the rules admit {s:?}"),
    }
}

/// Whether the rules admit where the profile ended.
#[track_caller]
fn admitted(c: &Config, next: Next) -> Profile {
    let p = finished(next);
    let s = crate::session::Session::default().with_identity(p.identity.clone());
    if let Err(d) = crate::policy::admit(&c.rules, &s) {
        panic!("expected the rules to admit, refused: {}", d.reason());
    }
    p
}

#[track_caller]
fn failed(next: Next) -> String {
    match next {
        Next::Failed(reason) => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn header<'a>(c: &'a Callout, name: &str) -> Option<&'a str> {
    c.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A GET with no body to `authority` + `path`.
#[track_caller]
fn assert_get(c: &Callout, authority: &str, path: &str) {
    assert_eq!(
        (c.method, c.authority.as_str(), c.path.as_str()),
        ("GET", authority, path)
    );
    assert!(c.body.is_empty());
}

/// The answer `status` with `body` as JSON.
fn reply(c: &Config, d: &Discovery, p: Profile, status: u16, body: Value) -> Next {
    let bytes = body.to_string();
    resume(c, d, p, Some((status, bytes.as_bytes())))
}

// 1. OpenID Connect: userinfo when the ID token lacks what is needed.

#[test]
fn userinfo_fills_a_missing_email_with_one_bearer_call() {
    let c = config(json!({}));
    let d = idp();
    let (call, p) = called(start_with(&c, &d, json!({"sub": SUB, "name": "Alice"})));
    assert_get(&call, "idp.example.com", "/userinfo");
    assert_eq!(
        header(&call, "authorization"),
        Some(format!("Bearer {AT}").as_str())
    );
    assert_eq!(header(&call, "accept"), Some("application/json"));
    let p = finished(reply(
        &c,
        &d,
        p,
        200,
        json!({"sub": SUB, "email": "alice@example.com", "email_verified": true, "groups": ["devs"]}),
    ));
    assert_eq!(p.identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(p.identity.email_verified, Some(true));
    // `user_id_claim` defaults to the email: read again from the merged claims.
    assert_eq!(p.identity.user, "alice@example.com");
    assert_eq!(p.identity.groups, ["devs"]);
    assert_eq!(p.sub, SUB);
    assert_eq!(p.claims["name"], "Alice", "the ID token's claims stay");
}

#[test]
fn userinfo_about_another_subject_fails() {
    let c = config(json!({}));
    let d = idp();
    for answer in [
        json!({"sub": "someone-else", "email": "mallory@example.com"}),
        json!({"email": "mallory@example.com"}),
        json!({"sub": 1, "email": "mallory@example.com"}),
    ] {
        let (_, p) = called(start_with(&c, &d, json!({"sub": SUB})));
        assert_eq!(
            failed(reply(&c, &d, p, 200, answer.clone())),
            "userinfo_sub_mismatch",
            "{answer}"
        );
    }
}

#[test]
fn userinfo_is_asked_once_even_when_it_lacks_the_email_too() {
    let c = config(json!({"allowed_groups": ["devs"]}));
    let d = idp();
    let (_, p) = called(start_with(&c, &d, json!({"sub": SUB})));
    // Neither email nor groups: no second call, the policy decides on what is known.
    let p = finished(reply(&c, &d, p, 200, json!({"sub": SUB, "name": "A"})));
    assert_eq!(p.identity.email, None);
    assert!(p.identity.groups.is_empty());
    assert_eq!(p.identity.user, SUB);
}

#[test]
fn userinfo_is_not_asked_when_the_id_token_says_enough() {
    let d = idp();
    // Email present, groups not needed (no `allowed_groups`): no call.
    let c = config(json!({}));
    let p = finished(start_with(
        &c,
        &d,
        json!({"sub": SUB, "email": "alice@example.com"}),
    ));
    assert_eq!(p.identity.email.as_deref(), Some("alice@example.com"));
    // Email and groups present with `allowed_groups`: no call either.
    let c = config(json!({"allowed_groups": ["devs"]}));
    finished(start_with(
        &c,
        &d,
        json!({"sub": SUB, "email": "alice@example.com", "groups": ["devs"]}),
    ));
    // Groups needed and missing: the call.
    let (call, _) = called(start_with(
        &c,
        &d,
        json!({"sub": SUB, "email": "alice@example.com"}),
    ));
    assert_get(&call, "idp.example.com", "/userinfo");
    // No userinfo endpoint: nothing to ask.
    let c = config(json!({}));
    let p = finished(start_with(
        &c,
        &discovery("https://idp.example.com", false),
        json!({"sub": SUB}),
    ));
    assert_eq!(p.identity.email, None);
}

#[test]
fn the_id_token_wins_over_userinfo() {
    let c = config(json!({"allowed_groups": ["devs"]}));
    let d = idp();
    let (_, p) = called(start_with(
        &c,
        &d,
        json!({"sub": SUB, "email": "alice@example.com", "email_verified": true}),
    ));
    let p = finished(reply(
        &c,
        &d,
        p,
        200,
        json!({"sub": SUB, "email": "mallory@example.com", "email_verified": false, "groups": ["devs"]}),
    ));
    assert_eq!(p.identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(p.identity.email_verified, Some(true));
    assert_eq!(p.identity.groups, ["devs"]);
}

#[test]
fn a_userinfo_that_fails_fails_the_login() {
    let c = config(json!({}));
    let d = idp();
    for (answer, reason) in [
        (Some((401, &b"{}"[..])), "userinfo_status_401"),
        (Some((500, &b""[..])), "userinfo_status_500"),
        (Some((200, &b"not json"[..])), "userinfo_malformed"),
        (Some((200, &b"[1]"[..])), "userinfo_malformed"),
        (None, "userinfo_unreachable"),
    ] {
        let (_, p) = called(start_with(&c, &d, json!({"sub": SUB})));
        assert_eq!(failed(resume(&c, &d, p, answer)), reason);
    }
}

#[test]
fn a_profile_with_nothing_in_flight_refuses_an_answer() {
    let c = config(json!({}));
    let d = idp();
    let p = finished(start_with(&c, &d, json!({"sub": SUB, "email": "a@b.c"})));
    assert_eq!(
        failed(reply(&c, &d, p, 200, json!({"sub": SUB}))),
        "unexpected_answer"
    );
}

#[test]
fn prefer_email_to_user_makes_the_email_the_user() {
    let d = idp();
    let claims = json!({"sub": SUB, "email": "alice@example.com", "preferred_username": "alice"});
    let c = config(json!({"user_id_claim": "preferred_username"}));
    assert_eq!(
        finished(start_with(&c, &d, claims.clone())).identity.user,
        "alice"
    );
    let c = config(json!({"user_id_claim": "preferred_username", "prefer_email_to_user": true}));
    assert_eq!(
        finished(start_with(&c, &d, claims)).identity.user,
        "alice@example.com"
    );
    // No email: the user stays what the claims say.
    let p = finished(start_with(
        &c,
        &discovery("https://idp.example.com", false),
        json!({"sub": SUB, "preferred_username": "alice"}),
    ));
    assert_eq!(p.identity.user, "alice");
}

// 2. Keycloak and Google.

#[test]
fn keycloak_roles_are_passed_as_groups() {
    let c = config(json!({"provider": "keycloak-oidc"}));
    let p = finished(start_with(
        &c,
        &idp(),
        json!({
            "sub": SUB,
            "email": "alice@example.com",
            "groups": ["devs"],
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"app": {"roles": ["viewer"]}},
        }),
    ));
    assert_eq!(p.identity.groups, ["devs", "role:admin", "role:app:viewer"]);
    assert_eq!(p.identity.roles, ["admin", "app:viewer"]);
    // Plain `oidc` leaves the groups alone.
    let c = config(json!({}));
    let p = finished(start_with(
        &c,
        &idp(),
        json!({"sub": SUB, "email": "a@b.c", "groups": ["devs"], "realm_access": {"roles": ["admin"]}}),
    ));
    assert_eq!(p.identity.groups, ["devs"]);
}

#[test]
fn google_hosted_domains_check_hd() {
    let google = |extra: Value| {
        let mut v = json!({
            "provider": "google",
            "oidc_issuer_url": "https://accounts.google.com",
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config(v)
    };
    let d = discovery("https://accounts.google.com", false);
    let claims = |hd: Option<&str>| {
        let mut c = json!({"sub": SUB, "email": "alice@corp.example", "email_verified": true});
        if let Some(hd) = hd {
            c["hd"] = hd.into();
        }
        c
    };
    let c = google(json!({"google_hosted_domains": ["corp.example", "Other.Example"]}));
    finished(start_with(&c, &d, claims(Some("corp.example"))));
    finished(start_with(&c, &d, claims(Some("other.example"))));
    finished(start_with(&c, &d, claims(Some("CORP.example"))));
    assert_eq!(
        denied(&c, start_with(&c, &d, claims(Some("evil.example")))),
        "hosted_domain"
    );
    // A consumer (gmail) account has no `hd`.
    assert_eq!(
        denied(&c, start_with(&c, &d, claims(None))),
        "hosted_domain"
    );
    assert_eq!(
        denied(&c, start_with(&c, &d, claims(Some("")))),
        "hosted_domain"
    );
    // Without `google_hosted_domains` any account is the policy's to judge.
    let c = google(json!({}));
    finished(start_with(&c, &d, claims(None)));
}

// 3. GitLab.

fn gitlab(extra: Value) -> Config {
    let mut v = json!({
        "provider": "gitlab",
        "oidc_issuer_url": "https://gitlab.example.com",
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config(v)
}

/// GitLab's ID token claims carry no `groups` (docs.gitlab.com/integration/
/// openid_connect_provider: `groups_direct` in the ID token, `groups` from userinfo).
fn gitlab_id_token() -> Value {
    json!({"sub": SUB, "email": "alice@example.com", "groups_direct": ["team-a"]})
}

/// GitLab's userinfo answer (docs.gitlab.com/integration/openid_connect_provider: `sub`,
/// `email`, `email_verified`, `groups` as full paths).
fn gitlab_userinfo(groups: &[&str], verified: bool) -> Value {
    json!({"sub": SUB, "email": "alice@example.com", "email_verified": verified,
           "nickname": "alice", "groups": groups})
}

/// The login up to its first project call: the ID token, then userinfo (oauth2-proxy's
/// gitlab `EnrichSession` always reads userinfo: groups and `email_verified` are there).
fn gitlab_after_userinfo(c: &Config, groups: &[&str]) -> Next {
    let d = discovery("https://gitlab.example.com", true);
    let (call, p) = called(start_with(c, &d, gitlab_id_token()));
    assert_get(&call, "gitlab.example.com", "/userinfo");
    reply(c, &d, p, 200, gitlab_userinfo(groups, true))
}

#[test]
fn gitlab_groups_and_email_verification_come_from_userinfo() {
    // oauth2-proxy providers/gitlab.go EnrichSession: `if !p.AllowUnverifiedEmail &&
    // !userinfo.EmailVerified { return fmt.Errorf("user email is not verified") }`, and
    // `s.Groups = userinfo.Groups`; Authorize matches them exactly against gitlab_group.
    let c = gitlab(json!({"gitlab_group": ["team-a", "team-b"]}));
    let d = discovery("https://gitlab.example.com", true);
    let p = admitted(&c, gitlab_after_userinfo(&c, &["other", "team-b"]));
    assert_eq!(p.identity.groups, ["other", "team-b"]);
    assert_eq!(
        denied(&c, gitlab_after_userinfo(&c, &["Team-B", "team"])),
        "gitlab_group_or_project"
    );
    let (_, p) = called(start_with(&c, &d, gitlab_id_token()));
    assert_eq!(
        denied(
            &c,
            reply(&c, &d, p, 200, gitlab_userinfo(&["team-a"], false))
        ),
        "email_not_verified"
    );
    // A userinfo that does not say the email is verified does not vouch for it either.
    let (_, p) = called(start_with(&c, &d, gitlab_id_token()));
    let mut info = gitlab_userinfo(&["team-a"], true);
    info.as_object_mut().unwrap().remove("email_verified");
    assert_eq!(
        denied(&c, reply(&c, &d, p, 200, info)),
        "email_not_verified"
    );
    // Neither groups nor projects configured: anyone with a verified email.
    let c = gitlab(json!({}));
    admitted(&c, gitlab_after_userinfo(&c, &["x"]));
}

#[test]
fn gitlab_projects_are_all_asked_in_order() {
    // oauth2-proxy providers/gitlab.go addProjectsToSession: every configured project is
    // read (`GET /api/v4/projects/<url.QueryEscape(name)>`), and each the user has the
    // access level for is added to the groups as `project:<name>`.
    let c = gitlab(json!({
        "gitlab_group": ["team-a"],
        "gitlab_projects": ["grp/one=30", "grp/sub/two", "grp/three"],
    }));
    let d = discovery("https://gitlab.example.com", true);
    let (call, p) = called(gitlab_after_userinfo(&c, &["other"]));
    assert_get(&call, "gitlab.example.com", "/api/v4/projects/grp%2Fone");
    assert_eq!(
        header(&call, "authorization"),
        Some(format!("Bearer {AT}").as_str())
    );
    // Not visible to the user: not a member of that one.
    let (call, p) = called(reply(
        &c,
        &d,
        p,
        404,
        json!({"message": "404 Project Not Found"}),
    ));
    assert_get(
        &call,
        "gitlab.example.com",
        "/api/v4/projects/grp%2Fsub%2Ftwo",
    );
    // Reporter (20) through the group, the default level wanted.
    let (call, p) = called(reply(
        &c,
        &d,
        p,
        200,
        json!({"id": 2, "permissions": {"project_access": null, "group_access": {"access_level": 20}}}),
    ));
    assert_get(&call, "gitlab.example.com", "/api/v4/projects/grp%2Fthree");
    // An archived project admits nobody (oauth2-proxy: `if projectInfo.Archived { continue }`).
    let next = reply(
        &c,
        &d,
        p,
        200,
        json!({"archived": true, "permissions": {"project_access": {"access_level": 50}}}),
    );
    let p = admitted(&c, next);
    assert_eq!(p.identity.groups, ["other", "project:grp/sub/two"]);
    assert_eq!(p.identity.proven, ["gitlab:project:grp/sub/two"]);
}

#[test]
fn gitlab_access_levels_are_compared_with_the_wanted_one() {
    let c = gitlab(json!({"gitlab_projects": ["grp/one=30", "grp/two=40"]}));
    let d = discovery("https://gitlab.example.com", true);
    let (_, p) = called(gitlab_after_userinfo(&c, &["other"]));
    // Reporter where Developer is wanted: not that one.
    let (call, p) = called(reply(
        &c,
        &d,
        p,
        200,
        json!({"permissions": {"project_access": {"access_level": 20}, "group_access": null}}),
    ));
    assert_get(&call, "gitlab.example.com", "/api/v4/projects/grp%2Ftwo");
    // Maintainer through the group while Guest on the project itself: GitLab's effective
    // access is the higher one (ours; oauth2-proxy reads `project_access` alone when present).
    let p = admitted(
        &c,
        reply(
            &c,
            &d,
            p,
            200,
            json!({"permissions": {"project_access": {"access_level": 10}, "group_access": {"access_level": 40}}}),
        ),
    );
    assert_eq!(p.identity.groups, ["other", "project:grp/two"]);
}

#[test]
fn gitlab_without_any_group_or_project_is_refused() {
    let c =
        gitlab(json!({"gitlab_group": ["team-a"], "gitlab_projects": ["grp/one", "grp/two=50"]}));
    let d = discovery("https://gitlab.example.com", true);
    let (_, p) = called(gitlab_after_userinfo(&c, &["other"]));
    let (_, p) = called(reply(&c, &d, p, 404, json!({})));
    assert_eq!(
        denied(
            &c,
            reply(
                &c,
                &d,
                p,
                200,
                json!({"permissions": {"project_access": {"access_level": 40}}}),
            )
        ),
        "gitlab_group_or_project"
    );
    // Forbidden reads as not a member, too.
    let (_, p) = called(gitlab_after_userinfo(&c, &["other"]));
    let (_, p) = called(reply(&c, &d, p, 403, json!({})));
    assert_eq!(
        denied(&c, reply(&c, &d, p, 404, json!({}))),
        "gitlab_group_or_project"
    );
    // A group named like a project is not a project access (only the API confirms those).
    let c = gitlab(json!({"gitlab_projects": ["grp/one"]}));
    let (_, p) = called(gitlab_after_userinfo(&c, &["project:grp/one"]));
    assert_eq!(
        denied(&c, reply(&c, &d, p, 404, json!({}))),
        "gitlab_group_or_project"
    );
}

#[test]
fn gitlab_api_failures_fail_the_login() {
    let c = gitlab(json!({"gitlab_projects": ["grp/one", "grp/two"]}));
    let d = discovery("https://gitlab.example.com", true);
    for (answer, reason) in [
        (Some((401, &b"{}"[..])), "gitlab_project_status_401"),
        (Some((500, &b""[..])), "gitlab_project_status_500"),
        (Some((200, &b"<html>"[..])), "gitlab_project_malformed"),
        (None, "gitlab_project_unreachable"),
        // A token without `read_api`: the configuration is wrong, the user is not refused.
        (
            Some((403, &br#"{"error":"insufficient_scope"}"#[..])),
            "gitlab_project_insufficient_scope",
        ),
    ] {
        let (_, p) = called(gitlab_after_userinfo(&c, &["other"]));
        assert_eq!(failed(resume(&c, &d, p, answer)), reason);
    }
}

// 4. Microsoft Entra ID.

const ENTRA: &str = "https://login.microsoftonline.com/common/v2.0";
const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const GRAPH_HOST: &str = "graph.microsoft.com";
const GROUPS_PATH: &str = "/v1.0/me/transitiveMemberOf?$select=id&$top=999";

fn entra(extra: Value) -> Config {
    let mut v = json!({
        "provider": "ms-entra-id",
        "oidc_issuer_url": ENTRA,
        "entra_id_allowed_tenants": [TENANT],
        "idp_clusters": {GRAPH_HOST: "graph"},
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config(v)
}

fn entra_d() -> Discovery {
    discovery("https://login.microsoftonline.com/{tenantid}/v2.0", false)
}

fn entra_claims(tid: Option<&str>) -> Value {
    let mut c = json!({"sub": SUB, "email": "alice@example.com", "groups": ["g0"]});
    if let Some(tid) = tid {
        c["tid"] = tid.into();
    }
    c
}

fn overage_claims() -> Value {
    json!({
        "sub": SUB,
        "tid": TENANT,
        "email": "alice@example.com",
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}},
    })
}

#[test]
fn entra_tenants_are_checked() {
    let d = entra_d();
    let c = entra(json!({}));
    finished(start_with(&c, &d, entra_claims(Some(TENANT))));
    finished(start_with(
        &c,
        &d,
        entra_claims(Some(&TENANT.to_uppercase())),
    ));
    assert_eq!(
        denied(
            &c,
            start_with(
                &c,
                &d,
                entra_claims(Some("00000000-0000-0000-0000-000000000001"))
            )
        ),
        "entra_tenant"
    );
    assert_eq!(
        denied(&c, start_with(&c, &d, entra_claims(None))),
        "entra_tenant"
    );
    // `*`: any tenant.
    let c = entra(json!({"entra_id_allowed_tenants": ["*"]}));
    finished(start_with(
        &c,
        &d,
        entra_claims(Some("00000000-0000-0000-0000-000000000001")),
    ));
}

#[test]
fn entra_group_overage_is_read_from_graph_with_pagination() {
    let c = entra(json!({"allowed_groups": ["g2"]}));
    let d = entra_d();
    let (call, p) = called(start_with(&c, &d, overage_claims()));
    assert_get(&call, GRAPH_HOST, GROUPS_PATH);
    assert_eq!(
        header(&call, "authorization"),
        Some(format!("Bearer {AT}").as_str())
    );
    let next =
        "https://graph.microsoft.com/v1.0/me/transitiveMemberOf?$select=id&$top=999&$skiptoken=X1";
    let (call, p) = called(reply(
        &c,
        &d,
        p,
        200,
        json!({"value": [{"id": "g1"}, {"@odata.type": "#microsoft.graph.directoryRole"}], "@odata.nextLink": next}),
    ));
    assert_get(
        &call,
        GRAPH_HOST,
        &next["https://graph.microsoft.com".len()..],
    );
    assert_eq!(
        header(&call, "authorization"),
        Some(format!("Bearer {AT}").as_str())
    );
    let p = finished(reply(&c, &d, p, 200, json!({"value": [{"id": "g2"}]})));
    assert_eq!(p.identity.groups, ["g1", "g2"]);
}

#[test]
fn entra_overage_without_allowed_groups_needs_no_call() {
    let c = entra(json!({}));
    let p = finished(start_with(&c, &entra_d(), overage_claims()));
    assert!(p.identity.groups.is_empty());
}

#[test]
fn entra_graph_next_links_stay_on_graph() {
    let c = entra(json!({"allowed_groups": ["g2"]}));
    let d = entra_d();
    for foreign in [
        "https://evil.example/v1.0/me/transitiveMemberOf",
        "https://graph.microsoft.com.evil.example/v1.0/x",
        "http://graph.microsoft.com/v1.0/x",
        "https://graph.microsoft.com@evil.example/v1.0/x",
    ] {
        let (_, p) = called(start_with(&c, &d, overage_claims()));
        let next = reply(
            &c,
            &d,
            p,
            200,
            json!({"value": [{"id": "g1"}], "@odata.nextLink": foreign}),
        );
        assert_eq!(failed(next), "graph_next_link_foreign", "{foreign}");
    }
}

#[test]
fn entra_graph_pages_are_bounded() {
    let c = entra(json!({"allowed_groups": ["g2"]}));
    let d = entra_d();
    let (_, mut p) = called(start_with(&c, &d, overage_claims()));
    let page = json!({
        "value": [{"id": "g"}],
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/transitiveMemberOf?$skiptoken=more",
    });
    let mut calls = 1;
    let end = loop {
        match reply(&c, &d, p, 200, page.clone()) {
            Next::Call(call, next) => {
                assert_get(
                    &call,
                    GRAPH_HOST,
                    "/v1.0/me/transitiveMemberOf?$skiptoken=more",
                );
                calls += 1;
                assert!(calls <= MAX_PAGES, "more than MAX_PAGES calls");
                p = *next;
            }
            other => break other,
        }
    };
    assert_eq!(calls, MAX_PAGES);
    assert_eq!(failed(end), "graph_groups_too_many_pages");
}

#[test]
fn entra_graph_failures_fail_the_login() {
    let c = entra(json!({"allowed_groups": ["g2"]}));
    let d = entra_d();
    for (answer, reason) in [
        (Some((403, &b"{}"[..])), "graph_groups_status_403"),
        (Some((200, &b"{}"[..])), "graph_groups_malformed"),
        (
            Some((200, &b"{\"value\": 3}"[..])),
            "graph_groups_malformed",
        ),
        (None, "graph_groups_unreachable"),
    ] {
        let (_, p) = called(start_with(&c, &d, overage_claims()));
        assert_eq!(failed(resume(&c, &d, p, answer)), reason);
    }
}

fn jwt(claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!("{}.{}.c2ln", b64(&json!({"alg": "RS256"})), b64(&claims))
}

#[test]
fn expected_issuer_fills_the_tenant_template_from_tid() {
    let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
    assert_eq!(
        expected_issuer(template, &jwt(json!({"tid": TENANT}))),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    // Without a template the discovered issuer is the one.
    let plain = "https://idp.example.com";
    assert_eq!(expected_issuer(plain, &jwt(json!({"tid": TENANT}))), plain);
    // No usable tid: the template itself, which no token names.
    for token in [
        jwt(json!({"tid": "evil.example/x"})),
        jwt(json!({"tid": "../common"})),
        jwt(json!({"tid": ""})),
        jwt(json!({"tid": 7})),
        jwt(json!({"tid": "a".repeat(65)})),
        jwt(json!({})),
        "not-a-jwt".to_string(),
        "a.%%%.c".to_string(),
        String::new(),
    ] {
        assert_eq!(expected_issuer(template, &token), template, "{token}");
    }
}

// 5. GitHub.

const API: &str = "api.github.com";

fn github(extra: Value) -> Config {
    let mut v = json!({
        "provider": "github",
        "oidc_issuer_url": null,
        "idp_clusters": {API: "github_api"},
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config(v)
}

fn github_d(c: &Config) -> Discovery {
    c.provider.endpoints().cloned().unwrap()
}

/// A GitHub API call: a GET with the user's (or `token`) bearer, GitHub's media type and a
/// user agent.
#[track_caller]
fn assert_api(c: &Callout, path: &str, token: &str) {
    assert_get(c, API, path);
    assert_eq!(
        header(c, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(header(c, "accept"), Some("application/vnd.github+json"));
    assert!(header(c, "user-agent").is_some_and(|u| !u.is_empty()));
}

const EMAILS: &str = "/user/emails?per_page=100&page=1";

fn octocat() -> Value {
    json!({"login": "octocat", "id": 583231, "name": "The Octocat", "email": null})
}

fn emails() -> Value {
    json!([
        {"email": "octocat@users.noreply.github.com", "primary": false, "verified": true},
        {"email": "octocat@github.com", "primary": true, "verified": true, "visibility": "public"},
    ])
}

/// Starts a GitHub profile and answers `/user` and `/user/emails` as octocat.
fn github_user(c: &Config, d: &Discovery) -> Next {
    let (call, p) = called(start(c, d, AT, None, None));
    assert_api(&call, "/user", AT);
    let (call, p) = called(reply(c, d, p, 200, octocat()));
    assert_api(&call, EMAILS, AT);
    reply(c, d, p, 200, emails())
}

#[test]
fn github_user_and_primary_verified_email() {
    let c = github(json!({}));
    let d = github_d(&c);
    let p = finished(github_user(&c, &d));
    assert_eq!(p.identity.user, "octocat");
    assert_eq!(p.identity.preferred_username.as_deref(), Some("octocat"));
    assert_eq!(p.identity.email.as_deref(), Some("octocat@github.com"));
    assert_eq!(p.identity.email_verified, Some(true));
    assert_eq!(p.sub, "583231");
    assert!(p.identity.groups.is_empty());
}

#[test]
fn github_prefer_email_to_user() {
    let c = github(json!({"prefer_email_to_user": true}));
    let d = github_d(&c);
    let p = finished(github_user(&c, &d));
    assert_eq!(p.identity.user, "octocat@github.com");
    assert_eq!(p.identity.preferred_username.as_deref(), Some("octocat"));
}

#[test]
fn github_user_answers_that_do_not_say_who() {
    let c = github(json!({}));
    let d = github_d(&c);
    for body in [
        json!({"id": 1}),
        json!({"login": "octocat"}),
        json!({"login": "", "id": 1}),
        json!({"login": "octocat", "id": "1"}),
        json!([]),
    ] {
        let (_, p) = called(start(&c, &d, AT, None, None));
        assert_eq!(
            failed(reply(&c, &d, p, 200, body.clone())),
            "github_user_malformed",
            "{body}"
        );
    }
}

#[test]
fn github_emails_need_a_verified_primary() {
    // oauth2-proxy providers/github.go getEmail: `if email.Verified { if email.Primary {
    // s.Email = email.Email ...` and nothing otherwise; validator.go then refuses an empty
    // email even with `email_domains = *` (`if email == "" { return }`).
    let c = github(json!({}));
    let d = github_d(&c);
    for body in [
        json!([{"email": "o@github.com", "primary": true, "verified": false}]),
        json!([{"email": "o@github.com", "primary": false, "verified": true}]),
        json!([]),
    ] {
        let (_, p) = called(start(&c, &d, AT, None, None));
        let (_, p) = called(reply(&c, &d, p, 200, octocat()));
        assert_eq!(
            denied(&c, reply(&c, &d, p, 200, body.clone())),
            "no_email",
            "{body}"
        );
    }
    let (_, p) = called(start(&c, &d, AT, None, None));
    let (_, p) = called(reply(&c, &d, p, 200, octocat()));
    assert_eq!(
        failed(reply(&c, &d, p, 200, json!({"email": "o@github.com"}))),
        "github_emails_malformed"
    );
}

fn full_page(make: impl Fn(usize) -> Value) -> Value {
    Value::Array((0..100).map(make).collect())
}

#[test]
fn github_emails_are_paged_while_pages_are_full() {
    let c = github(json!({}));
    let d = github_d(&c);
    let (_, p) = called(start(&c, &d, AT, None, None));
    let (_, p) = called(reply(&c, &d, p, 200, octocat()));
    let secondary = full_page(
        |i| json!({"email": format!("o{i}@example.com"), "primary": false, "verified": true}),
    );
    let (call, p) = called(reply(&c, &d, p, 200, secondary.clone()));
    assert_api(&call, "/user/emails?per_page=100&page=2", AT);
    let p = admitted(&c, reply(&c, &d, p, 200, emails()));
    assert_eq!(p.identity.email.as_deref(), Some("octocat@github.com"));
    // Full pages without one, at most MAX_PAGES of them.
    let (_, p) = called(start(&c, &d, AT, None, None));
    let (_, mut p) = called(reply(&c, &d, p, 200, octocat()));
    let mut pages = 1;
    let end = loop {
        match reply(&c, &d, p, 200, secondary.clone()) {
            Next::Call(call, next) => {
                pages += 1;
                assert!(pages <= MAX_PAGES, "more than MAX_PAGES pages");
                assert_api(
                    &call,
                    &format!("/user/emails?per_page=100&page={pages}"),
                    AT,
                );
                p = *next;
            }
            other => break other,
        }
    };
    assert_eq!(pages, MAX_PAGES);
    assert_eq!(denied(&c, end), "no_email");
}

#[test]
fn github_refusals_fail_without_retrying() {
    let c = github(json!({"github_org": "acme"}));
    let d = github_d(&c);
    for (status, reason) in [
        (401, "github_user_token_refused"),
        (403, "github_user_rate_limited_or_forbidden"),
        (429, "github_user_rate_limited_or_forbidden"),
        (500, "github_user_status_500"),
        (404, "github_user_status_404"),
    ] {
        let (_, p) = called(start(&c, &d, AT, None, None));
        assert_eq!(
            failed(reply(
                &c,
                &d,
                p,
                status,
                json!({"message": "API rate limit exceeded"})
            )),
            reason
        );
    }
    let (_, p) = called(start(&c, &d, AT, None, None));
    assert_eq!(failed(resume(&c, &d, p, None)), "github_user_unreachable");
    // Later stages alike.
    let (_, p) = called(start(&c, &d, AT, None, None));
    let (_, p) = called(reply(&c, &d, p, 200, octocat()));
    assert_eq!(
        failed(reply(&c, &d, p, 403, json!({}))),
        "github_emails_rate_limited_or_forbidden"
    );
    let (_, p) = called(start(&c, &d, AT, None, None));
    let (_, p) = called(reply(&c, &d, p, 200, octocat()));
    let (_, p) = called(reply(&c, &d, p, 200, emails()));
    assert_eq!(
        failed(reply(&c, &d, p, 429, json!({}))),
        "github_orgs_rate_limited_or_forbidden"
    );
}

/// The calls up to the end, answering each organisation and team call with `orgs` and
/// `teams` (single pages).
fn github_with(c: &Config, orgs: Value, teams: Value) -> Next {
    let d = github_d(c);
    let mut next = github_user(c, &d);
    loop {
        let (call, p) = match next {
            Next::Call(call, p) => (call, *p),
            other => return other,
        };
        let body = if call.path.starts_with("/user/orgs") {
            orgs.clone()
        } else if call.path.starts_with("/user/teams") {
            teams.clone()
        } else {
            panic!("unexpected call {}", call.path);
        };
        next = reply(c, &d, p, 200, body);
    }
}

#[test]
fn github_users_are_admitted_whatever_else_is_set() {
    // oauth2-proxy providers/github.go checkRestrictions: "If a user is verified by username
    // options, skip the following restrictions"; checkUserRestriction: with no org and no
    // repo, a login not listed is refused ("missing github user").
    let c = github(json!({"github_org": "acme", "github_users": ["OctoCat", "hubot"]}));
    let p = admitted(&c, github_with(&c, json!([]), json!([])));
    assert_eq!(p.identity.user, "octocat");
    assert!(p
        .identity
        .proven
        .contains(&"github:user:octocat".to_string()));
    // Not listed: the organisation decides.
    let c = github(json!({"github_org": "acme", "github_users": ["hubot"]}));
    assert_eq!(
        denied(&c, github_with(&c, json!([]), json!([]))),
        "github_org"
    );
    // Not listed and nothing else configured: refused.
    let c = github(json!({"github_users": ["hubot"]}));
    let d = github_d(&c);
    assert_eq!(denied(&c, github_user(&c, &d)), "github_user");
    // A listed user needs no repository call.
    let c = github(json!({"github_repo": "acme/app", "github_users": ["octocat"]}));
    admitted(&c, github_user(&c, &d));
}

#[test]
fn github_org_membership() {
    // oauth2-proxy providers/github.go getOrgs: `GET /user/orgs?per_page=100&page=N`, every
    // `login` becomes a group; hasOrg: the organisation must be among them.
    let c = github(json!({"github_org": "acme"}));
    assert_eq!(c.scope, "user:email read:org");
    let d = github_d(&c);
    let (call, p) = called(github_user(&c, &d));
    assert_api(&call, "/user/orgs?per_page=100&page=1", AT);
    let p = admitted(
        &c,
        reply(
            &c,
            &d,
            p,
            200,
            json!([{"login": "other", "id": 1}, {"login": "ACME", "id": 2}]),
        ),
    );
    assert_eq!(p.identity.groups, ["other", "ACME"]);
    // Not a member.
    let (_, p) = called(github_user(&c, &d));
    assert_eq!(
        denied(&c, reply(&c, &d, p, 200, json!([{"login": "other"}]))),
        "github_org"
    );
    // A full page: the next page too.
    let (_, p) = called(github_user(&c, &d));
    let others = full_page(|i| json!({"login": format!("org{i}")}));
    let (call, p) = called(reply(&c, &d, p, 200, others));
    assert_api(&call, "/user/orgs?per_page=100&page=2", AT);
    admitted(&c, reply(&c, &d, p, 200, json!([{"login": "acme"}])));
}

#[test]
fn github_team_membership() {
    // oauth2-proxy providers/github.go getTeams: `GET /user/teams`, each team a group
    // `<org login>:<slug>`; hasOrgAndTeam: the org (EqualFold) and one of the comma-separated
    // teams (EqualFold, trimmed).
    let c = github(json!({"github_org": "acme", "github_team": "core, ops"}));
    assert_eq!(c.scope, "user:email read:org");
    let d = github_d(&c);
    let teams = json!([
        {"slug": "core", "organization": {"login": "other"}},
        {"slug": "docs", "organization": {"login": "acme"}},
        {"slug": "OPS", "organization": {"login": "Acme"}},
    ]);
    let p = admitted(&c, github_with(&c, json!([{"login": "acme"}]), teams));
    assert_eq!(
        p.identity.groups,
        ["acme", "other:core", "acme:docs", "Acme:OPS"]
    );
    // The team's name in another organisation, or another team of the organisation: no.
    let others = json!([
        {"slug": "core", "organization": {"login": "other"}},
        {"slug": "docs", "organization": {"login": "acme"}},
    ]);
    assert_eq!(
        denied(
            &c,
            github_with(&c, json!([{"login": "acme"}]), others.clone())
        ),
        "github_team"
    );
    assert_eq!(denied(&c, github_with(&c, json!([]), others)), "github_org");
    let (_, p) = called(github_user(&c, &d));
    let (_, p) = called(reply(&c, &d, p, 200, json!([{"login": "acme"}])));
    assert_eq!(
        failed(reply(&c, &d, p, 200, json!({"slug": "core"}))),
        "github_membership_malformed"
    );
}

#[test]
fn github_allowed_groups_read_orgs_and_teams() {
    // oauth2-proxy's GitHub groups are the organisations and `org:team`s, which
    // `allowed_groups` (provider_default.go Authorize) matches exactly.
    let c = github(json!({"allowed_groups": ["acme:ops"]}));
    assert_eq!(c.scope, "user:email read:org");
    let teams = json!([{"slug": "ops", "organization": {"login": "acme"}}]);
    admitted(&c, github_with(&c, json!([{"login": "acme"}]), teams));
    let teams = json!([{"slug": "dev", "organization": {"login": "acme"}}]);
    assert_eq!(
        denied(&c, github_with(&c, json!([{"login": "acme"}]), teams)),
        "group_not_allowed"
    );
}

/// `GET /repos/{owner}/{repo}` as GitHub documents it (docs.github.com/rest/repos/repos#get-a-
/// repository): `private`, and `permissions` (`admin`, `maintain`, `push`, `triage`, `pull`)
/// for the authenticated user; every user may pull a public repository.
fn repo(private: bool, push: bool, pull: bool) -> Value {
    json!({"full_name": "acme/app", "private": private, "visibility":
        if private { "private" } else { "public" },
        "permissions": {"admin": false, "maintain": false, "push": push, "triage": push, "pull": pull}})
}

#[test]
fn github_repo_access_with_the_users_token() {
    // oauth2-proxy providers/github.go hasRepoAccess: "Every user can implicitly pull from a
    // public repo, so only grant access if they have push access or the repo is private and
    // they can pull": `repo.Permissions.Push || (repo.Private && repo.Permissions.Pull)`.
    let c = github(json!({"github_repo": "acme/app"}));
    let d = github_d(&c);
    for (body, admits) in [
        (repo(true, true, true), true),
        // A pull-only collaborator of a private repository.
        (repo(true, false, true), true),
        // Anyone at all may pull a public repository: that proves nothing.
        (repo(false, false, true), false),
        (repo(false, true, true), true),
        (repo(false, false, false), false),
        // No `private` (Go's zero value: not private), so pull alone is not enough.
        (json!({"permissions": {"pull": true}}), false),
        (json!({"permissions": {"push": true}}), true),
        (json!({"private": true}), false),
    ] {
        let (call, p) = called(github_user(&c, &d));
        assert_api(&call, "/repos/acme/app", AT);
        let next = reply(&c, &d, p, 200, body.clone());
        if admits {
            let p = admitted(&c, next);
            assert!(p
                .identity
                .proven
                .contains(&"github:repo:acme/app".to_string()));
        } else {
            assert_eq!(denied(&c, next), "github_repo", "{body}");
        }
    }
    let (_, p) = called(github_user(&c, &d));
    assert_eq!(
        failed(reply(&c, &d, p, 401, json!({}))),
        "github_repo_token_refused"
    );
    // With an organisation the repository is not read (oauth2-proxy: `p.Org == "" &&
    // p.Repo != ""`).
    let c = github(json!({"github_org": "acme", "github_repo": "acme/app"}));
    admitted(&c, github_with(&c, json!([{"login": "acme"}]), json!([])));
}

#[test]
fn github_private_repo_the_user_cannot_see_is_a_refusal() {
    let c = github(json!({"github_repo": "acme/app"}));
    let d = github_d(&c);
    let (_, p) = called(github_user(&c, &d));
    let answer = Some((404, &br#"{"message":"Not Found"}"#[..]));
    assert_eq!(denied(&c, resume(&c, &d, p, answer)), "github_repo");
}

#[test]
fn github_repo_collaborators_with_github_token() {
    // oauth2-proxy providers/github.go isCollaborator: `GET /repos/{repo}/collaborators/
    // {login}` with `github_token`; 204 is a collaborator (docs.github.com/rest/collaborators/
    // collaborators#check-if-a-user-is-a-repository-collaborator: 204, or 404 if not).
    let c = github(json!({"github_repo": "acme/app", "github_token": "ghp_admin"}));
    let d = github_d(&c);
    let (call, p) = called(github_user(&c, &d));
    assert_api(&call, "/repos/acme/app/collaborators/octocat", "ghp_admin");
    admitted(&c, resume(&c, &d, p, Some((204, b""))));
    let (_, p) = called(github_user(&c, &d));
    assert_eq!(
        denied(&c, resume(&c, &d, p, Some((404, b"{}")))),
        "github_repo"
    );
    for (answer, reason) in [
        (Some((401, &b"{}"[..])), "collaborator_token_refused"),
        (
            Some((403, &b"{}"[..])),
            "collaborator_rate_limited_or_forbidden",
        ),
        (
            Some((429, &b"{}"[..])),
            "collaborator_rate_limited_or_forbidden",
        ),
        (Some((200, &b"{}"[..])), "collaborator_status_200"),
        (None, "collaborator_unreachable"),
    ] {
        let (_, p) = called(github_user(&c, &d));
        let why = failed(resume(&c, &d, p, answer));
        assert!(why.ends_with(reason), "{why}");
    }
}

/// The log reasons of the collaborator check read like every other stage's
/// (`github_<stage>_<why>`).
#[test]
fn github_collaborator_failure_reasons_are_not_doubly_prefixed() {
    let c = github(json!({"github_repo": "acme/app", "github_token": "ghp_admin"}));
    let d = github_d(&c);
    let (_, p) = called(github_user(&c, &d));
    assert_eq!(
        failed(resume(&c, &d, p, Some((401, b"{}")))),
        "github_collaborator_token_refused"
    );
}

#[test]
fn github_token_from_the_environment() {
    let mut v = base();
    let all = v.as_object_mut().unwrap();
    all.remove("oidc_issuer_url");
    all.insert("provider".into(), "github".into());
    all.insert("idp_clusters".into(), json!({API: "github_api"}));
    all.insert("github_repo".into(), "acme/app".into());
    all.insert("github_token_env".into(), "GH_TOKEN".into());
    let env = |name: &str| (name == "GH_TOKEN").then(|| "ghp_env".to_string());
    let c = Config::parse(v.to_string().as_bytes(), &env).unwrap();
    let d = github_d(&c);
    let (call, _) = called(github_user(&c, &d));
    assert_api(&call, "/repos/acme/app/collaborators/octocat", "ghp_env");
}
