//! oauth2-proxy's `provider` names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oidc,
    KeycloakOidc,
    Google,
    GitLab,
    /// Microsoft Entra ID (`ms-entra-id`, `entra-id`, and oauth2-proxy's older `azure`).
    EntraId,
    /// OAuth2 without ID tokens: the user comes from the GitHub API.
    GitHub,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "oidc" => Kind::Oidc,
            "keycloak-oidc" => Kind::KeycloakOidc,
            "google" => Kind::Google,
            "gitlab" => Kind::GitLab,
            "ms-entra-id" | "entra-id" | "azure" => Kind::EntraId,
            "github" => Kind::GitHub,
            _ => return None,
        })
    }

    /// The name `provider` takes for this kind (Entra's current one).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Oidc => "oidc",
            Kind::KeycloakOidc => "keycloak-oidc",
            Kind::Google => "google",
            Kind::GitLab => "gitlab",
            Kind::EntraId => "ms-entra-id",
            Kind::GitHub => "github",
        }
    }

    /// Every name `provider` accepts, for its error message.
    pub const NAMES: &'static str = "`oidc`, `keycloak-oidc`, `google`, `gitlab`, \
         `ms-entra-id` (or `entra-id`, `azure`), `github`";
}
