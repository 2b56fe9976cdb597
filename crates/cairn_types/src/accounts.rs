//! Accounts: users and teams (both entities), team roles, API keys, who a request is, project
//! visibility and the audit log, with the REST bodies that carry them.

use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};
use crate::time::Timestamp;

/// A team member's role: `admin` manages members and settings, `member` reads and writes runs,
/// `viewer` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, CodedError> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            other => Err(CodedError::new(ErrorCode::InvalidValue, format!("role {other:?} is not admin, member or viewer"))),
        }
    }
}

/// Who may read a project: its entity only (`private`, the default) or any signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Private,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }

    pub fn parse(text: &str) -> Result<Visibility, CodedError> {
        match text {
            "private" => Ok(Visibility::Private),
            "public" => Ok(Visibility::Public),
            other => Err(CodedError::new(ErrorCode::InvalidValue, format!("visibility {other:?} is not private or public"))),
        }
    }
}

/// A user or a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub name: String,
    pub team: bool,
    /// A user who administers the server.
    pub admin: bool,
    pub created_at: Timestamp,
}

/// An API key as it is listed: never the key itself, which is shown once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: i64,
    pub user: String,
    pub name: String,
    /// The key's first characters, to recognize it by.
    pub prefix: String,
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_used_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revoked_at: Option<Timestamp>,
}

/// Who a request is: a user, whether they administer the server, and their teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub admin: bool,
    pub teams: Vec<(String, Role)>,
}

impl Principal {
    /// The role this user has on `entity`: admin of their own entity, their role in a team,
    /// admin everywhere when they administer the server.
    pub fn role_on(&self, entity: &str) -> Option<Role> {
        if self.admin || self.user == entity {
            return Some(Role::Admin);
        }
        self.teams.iter().find(|(team, _)| team == entity).map(|&(_, role)| role)
    }
}

/// One team of the caller, with their role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRole {
    pub name: String,
    pub role: Role,
}

/// Who the caller is (`GET /api/v1/viewer`). With auth off: no user, and everything allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Viewer {
    /// Whether the server checks who calls it.
    pub auth: bool,
    pub user: Option<String>,
    pub admin: bool,
    pub teams: Vec<TeamRole>,
}

/// A member of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInfo {
    pub user: String,
    pub role: Role,
}

/// One line of the audit log: who did what to what, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    /// The user (or `shell` for the `cairn` administration commands on the store).
    pub actor: String,
    /// For example `key.create`, `key.revoke`, `member.role`, `run.delete`, `run.purge`, `run.move`.
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// `POST /api/v1/session`: signing in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub username: String,
    pub password: String,
}

/// `POST /api/v1/setup`: the first admin, with the token of the link `cairn server` printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub token: String,
    pub username: String,
    pub password: String,
}

/// `GET /api/v1/setup`: whether the server waits for its first admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetupState {
    pub needed: bool,
}

/// `POST /api/v1/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub name: String,
    /// Days until the key expires; never when absent.
    #[serde(default)]
    pub expires_days: Option<u32>,
}

/// A new key: as listed, and the key itself, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// `POST /api/v1/teams`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
}

/// `POST /api/v1/users` (server admins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `PUT /api/v1/teams/{team}/members/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

/// `PATCH /api/v1/projects/{entity}/{project}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub visibility: Visibility,
}
