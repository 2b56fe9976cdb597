//! Users, teams, roles and API keys over [`Db`].
//!
//! A key is `cairn-` and 40 characters of base32 (200 random bits from the operating system), the
//! shape that every version of the official wandb client takes (keys made before, `cairn_` and
//! base64url, still sign in, but wandb refuses some of them). Keys are random
//! enough that a fast hash is the right one: the store keeps the SHA-256 of each, and finds a key
//! by it. Session tokens are made and kept the same way. Passwords, which people choose, are
//! hashed with argon2 (its default, Argon2id).

use cairn_types::Timestamp;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::ids::validate_name;
use sha2::Digest as _;

use super::{Db, Row, SqlStore, args};
use crate::{Account, AccountStore, ApiKey, AuditEntry, Principal, Result, Role, Visibility};

/// What every key starts with (keys made before 0.1 started with `cairn_`, and still sign in).
pub const KEY_PREFIX: &str = "cairn-";
const OLD_KEY_PREFIX: &str = "cairn_";

/// Characters of a key shown in lists, the prefix included.
const SHOWN: usize = 12;

/// What every session token starts with.
const SESSION_PREFIX: &str = "cairns_";

/// `cairn-` and 40 base32 characters (200 random bits): the official wandb client takes what
/// follows the first `-` as the secret, and 0.19 wants exactly 40 characters there when it saves
/// a key (`wandb login`), 0.2x and later 40 or more word characters.
fn new_key() -> Result<String> {
    new_token(KEY_PREFIX, 40)
}

/// A prefix and `chars` random base32 characters (lowercase letters and 2–7).
fn new_token(prefix: &str, chars: usize) -> Result<String> {
    let mut bytes = vec![0u8; (chars * 5).div_ceil(8)];
    getrandom::fill(&mut bytes).map_err(|e| CodedError::new(ErrorCode::Internal, format!("the system's random generator failed: {e}")))?;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from(prefix);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 && out.len() < prefix.len() + chars {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    Ok(out)
}

fn key_hash(key: &str) -> String {
    crate::blob::hex(&sha2::Sha256::digest(key.as_bytes()))
}

fn account_from_row(r: &Row) -> Result<Account> {
    Ok(Account { name: r.string(0)?, team: r.str(1)? == "team", admin: r.bool(2)?, created_at: Timestamp(r.i64(3)?) })
}

const KEY_SELECT: &str = "SELECT k.key_pk, e.name, k.name, k.prefix, k.created_at, k.expires_at, k.last_used_at, k.revoked_at
    FROM api_keys k JOIN entities e ON e.entity_pk = k.user_pk";

fn key_from_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.i64(0)?,
        user: r.string(1)?,
        name: r.string(2)?,
        prefix: r.string(3)?,
        created_at: Timestamp(r.i64(4)?),
        expires_at: r.opt_i64(5)?.map(Timestamp),
        last_used_at: r.opt_i64(6)?.map(Timestamp),
        revoked_at: r.opt_i64(7)?.map(Timestamp),
    })
}

/// The entity of an account of `kind` (`user` or `team`).
fn account_pk(db: &dyn Db, name: &str, kind: &str) -> Result<i64> {
    let row = db.opt_row("SELECT e.entity_pk, a.kind FROM entities e JOIN accounts a ON a.entity_pk = e.entity_pk WHERE e.name = ?1", args![name])?;
    match row {
        Some(r) if r.str(1)? == kind => r.i64(0),
        Some(r) => Err(CodedError::new(ErrorCode::InvalidValue, format!("{name:?} is a {}, not a {kind}", r.str(1)?))),
        None => Err(CodedError::new(ErrorCode::EntityNotFound, format!("there is no {kind} {name:?}"))),
    }
}

/// The principal of the user `user_pk`, named `name`.
fn principal_of(db: &dyn Db, user_pk: i64, name: String, admin: bool) -> Result<Principal> {
    let teams = db
        .query("SELECT e.name, m.role FROM memberships m JOIN entities e ON e.entity_pk = m.team_pk WHERE m.user_pk = ?1 ORDER BY e.name", args![user_pk])?
        .iter()
        .map(|t| Ok((t.string(0)?, Role::parse(t.str(1)?)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Principal { user: name, admin, teams })
}

/// `(user_pk, admin, password hash)` of a user, by name.
fn user_row(db: &dyn Db, name: &str) -> Result<Option<(i64, bool, Option<String>)>> {
    let row = db.opt_row(
        "SELECT e.entity_pk, a.admin, a.password_hash FROM entities e JOIN accounts a ON a.entity_pk = e.entity_pk
         WHERE e.name = ?1 AND a.kind = 'user'",
        args![name],
    )?;
    row.map(|r| Ok((r.i64(0)?, r.bool(1)?, r.opt_string(2)?))).transpose()
}

fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| CodedError::new(ErrorCode::Internal, format!("the system's random generator failed: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| CodedError::new(ErrorCode::Internal, format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CodedError::new(ErrorCode::Internal, format!("hashing the password: {e}")))
}

fn password_matches(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

const MAX_PASSWORD_BYTES: usize = 1024;

/// What a password must be: 8 characters at least, 1024 bytes at most (argon2 hashes it whole).
pub fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(CodedError::new(ErrorCode::InvalidValue, "a password has at least 8 characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CodedError::new(ErrorCode::InvalidValue, "a password has at most 1024 bytes"));
    }
    Ok(())
}

/// Names no account may have: what the audit log calls callers without one, and the UI's pages.
const RESERVED: [&str; 8] = ["local", "anonymous", "shell", "teams", "signin", "setup", "settings", "audit"];

/// Checked against when there is no such user, so that a sign-in takes as long either way.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash_password("not anyone's password").unwrap_or_default());

fn create_account(db: &dyn Db, name: &str, kind: &str, admin: bool, now: Timestamp) -> Result<Account> {
    if RESERVED.contains(&name) {
        return Err(CodedError::new(ErrorCode::InvalidName, format!("{name:?} is reserved; choose another name")));
    }
    db.execute("INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING", args![name, now.micros()])?;
    let pk = db.row("SELECT entity_pk FROM entities WHERE name = ?1", args![name])?.i64(0)?;
    let inserted = db.query(
        "INSERT INTO accounts (entity_pk, kind, admin, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (entity_pk) DO NOTHING RETURNING entity_pk",
        args![pk, kind, admin as i64, now.micros()],
    )?;
    if inserted.is_empty() {
        return Err(CodedError::new(ErrorCode::AccountExists, format!("{name:?} is a user or a team already")));
    }
    Ok(Account { name: name.to_owned(), team: kind == "team", admin, created_at: now })
}

impl AccountStore for SqlStore {
    fn create_user(&self, name: &str, admin: bool, now: Timestamp) -> Result<Account> {
        validate_name("user", name)?;
        let name = name.to_owned();
        self.write(move |db| create_account(db, &name, "user", admin, now))
    }

    fn create_team(&self, name: &str, now: Timestamp) -> Result<Account> {
        validate_name("team", name)?;
        let name = name.to_owned();
        self.write(move |db| create_account(db, &name, "team", false, now))
    }

    fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|db| {
            db.query("SELECT e.name, a.kind, a.admin, a.created_at FROM accounts a JOIN entities e ON e.entity_pk = a.entity_pk ORDER BY e.name", &[])?
                .iter()
                .map(account_from_row)
                .collect()
        })
    }

    fn set_role(&self, team: &str, user: &str, role: Option<Role>) -> Result<()> {
        let (team, user) = (team.to_owned(), user.to_owned());
        self.write(move |db| {
            let (team_pk, user_pk) = (account_pk(db, &team, "team")?, account_pk(db, &user, "user")?);
            match role {
                Some(role) => db.execute(
                    "INSERT INTO memberships (team_pk, user_pk, role) VALUES (?1, ?2, ?3)
                     ON CONFLICT (team_pk, user_pk) DO UPDATE SET role = excluded.role",
                    args![team_pk, user_pk, role.as_str()],
                )?,
                None => db.execute("DELETE FROM memberships WHERE team_pk = ?1 AND user_pk = ?2", args![team_pk, user_pk])?,
            };
            Ok(())
        })
    }

    fn members(&self, team: &str) -> Result<Vec<(String, Role)>> {
        self.read(|db| {
            let team_pk = account_pk(db, team, "team")?;
            db.query("SELECT e.name, m.role FROM memberships m JOIN entities e ON e.entity_pk = m.user_pk WHERE m.team_pk = ?1 ORDER BY e.name", args![team_pk])?
                .iter()
                .map(|r| Ok((r.string(0)?, Role::parse(r.str(1)?)?)))
                .collect()
        })
    }

    fn create_api_key(&self, user: &str, name: &str, expires_at: Option<Timestamp>, now: Timestamp) -> Result<(ApiKey, String)> {
        if name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(CodedError::new(ErrorCode::InvalidValue, "a key's name is at most 100 characters, none of them control characters"));
        }
        if let Some(at) = expires_at
            && at <= now
        {
            return Err(CodedError::new(ErrorCode::InvalidValue, "a key's expiry must be in the future"));
        }
        let key = new_key()?;
        let (user, name, secret) = (user.to_owned(), name.to_owned(), key.clone());
        let listed = self.write(move |db| {
            let user_pk = account_pk(db, &user, "user")?;
            let prefix: String = secret.chars().take(SHOWN).collect();
            let id = db
                .row(
                    "INSERT INTO api_keys (user_pk, name, prefix, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING key_pk",
                    args![user_pk, name, prefix, key_hash(&secret), now.micros(), expires_at.map(Timestamp::micros)],
                )?
                .i64(0)?;
            key_from_row(&db.row(&format!("{KEY_SELECT} WHERE k.key_pk = ?1"), args![id])?)
        })?;
        Ok((listed, key))
    }

    fn list_api_keys(&self, user: &str) -> Result<Vec<ApiKey>> {
        self.read(|db| {
            let user_pk = account_pk(db, user, "user")?;
            db.query(&format!("{KEY_SELECT} WHERE k.user_pk = ?1 ORDER BY k.key_pk"), args![user_pk])?.iter().map(key_from_row).collect()
        })
    }

    fn revoke_api_key(&self, id_or_key: &str, now: Timestamp) -> Result<ApiKey> {
        let given = id_or_key.trim().to_owned();
        self.write(move |db| {
            let found = match given.parse::<i64>() {
                Ok(id) => db.opt_row(&format!("{KEY_SELECT} WHERE k.key_pk = ?1"), args![id])?,
                Err(_) => db.opt_row(&format!("{KEY_SELECT} WHERE k.hash = ?1"), args![key_hash(&given)])?,
            };
            let key = key_from_row(&found.ok_or_else(|| CodedError::new(ErrorCode::ApiKeyNotFound, "no such API key (give the id that `cairn keys list` shows, or the key)"))?)?;
            db.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE key_pk = ?1", args![key.id, now.micros()])?;
            key_from_row(&db.row(&format!("{KEY_SELECT} WHERE k.key_pk = ?1"), args![key.id])?)
        })
    }

    fn authenticate(&self, key: &str, now: Timestamp) -> Result<Option<Principal>> {
        if !key.starts_with(KEY_PREFIX) && !key.starts_with(OLD_KEY_PREFIX) {
            return Ok(None);
        }
        let hash = key_hash(key);
        let found = self.read(|db| {
            let Some(r) = db.opt_row(
                "SELECT k.key_pk, k.user_pk, e.name, a.admin, k.expires_at, k.revoked_at, k.last_used_at FROM api_keys k
                 JOIN entities e ON e.entity_pk = k.user_pk JOIN accounts a ON a.entity_pk = k.user_pk WHERE k.hash = ?1",
                args![hash],
            )?
            else {
                return Ok(None);
            };
            if r.opt_i64(5)?.is_some() || r.opt_i64(4)?.is_some_and(|at| at <= now.micros()) {
                return Ok(None);
            }
            let principal = principal_of(db, r.i64(1)?, r.string(2)?, r.bool(3)?)?;
            Ok(Some((r.i64(0)?, r.opt_i64(6)?, principal)))
        })?;
        let Some((id, last_used, principal)) = found else { return Ok(None) };
        // Noted at most once a minute: the hot path does not write.
        if last_used.is_none_or(|at| now.micros() - at > 60_000_000) {
            self.write(move |db| db.execute("UPDATE api_keys SET last_used_at = ?2 WHERE key_pk = ?1", args![id, now.micros()]).map(|_| ()))?;
        }
        Ok(Some(principal))
    }

    fn principal(&self, user: &str) -> Result<Option<Principal>> {
        self.read(|db| match user_row(db, user)? {
            Some((pk, admin, _)) => principal_of(db, pk, user.to_owned(), admin).map(Some),
            None => Ok(None),
        })
    }

    fn set_password(&self, user: &str, password: &str) -> Result<()> {
        check_password_rules(password)?;
        let hash = hash_password(password)?;
        let user = user.to_owned();
        self.write(move |db| {
            let pk = account_pk(db, &user, "user")?;
            db.execute("UPDATE accounts SET password_hash = ?2 WHERE entity_pk = ?1", args![pk, hash])?;
            // A new password signs every browser out.
            db.execute("DELETE FROM sessions WHERE user_pk = ?1", args![pk])?;
            Ok(())
        })
    }

    fn check_password(&self, user: &str, password: &str) -> Result<Option<Principal>> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        let found = self.read(|db| user_row(db, user))?;
        let Some((pk, admin, Some(hash))) = found else {
            password_matches(&DUMMY_HASH, password);
            return Ok(None);
        };
        if !password_matches(&hash, password) {
            return Ok(None);
        }
        self.read(|db| principal_of(db, pk, user.to_owned(), admin)).map(Some)
    }

    fn create_session(&self, user: &str, expires_at: Timestamp, now: Timestamp) -> Result<String> {
        let token = new_token(SESSION_PREFIX, 52)?;
        let (user, hash) = (user.to_owned(), key_hash(&token));
        self.write(move |db| {
            let pk = account_pk(db, &user, "user")?;
            // Expired sessions go as new ones come.
            db.execute("DELETE FROM sessions WHERE expires_at <= ?1", args![now.micros()])?;
            db.execute("INSERT INTO sessions (hash, user_pk, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)", args![hash, pk, now.micros(), expires_at.micros()])?;
            Ok(())
        })?;
        Ok(token)
    }

    fn session_principal(&self, token: &str, now: Timestamp) -> Result<Option<Principal>> {
        if !token.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        let hash = key_hash(token);
        self.read(|db| {
            let Some(r) = db.opt_row(
                "SELECT s.user_pk, e.name, a.admin FROM sessions s JOIN entities e ON e.entity_pk = s.user_pk
                 JOIN accounts a ON a.entity_pk = s.user_pk WHERE s.hash = ?1 AND s.expires_at > ?2",
                args![hash, now.micros()],
            )?
            else {
                return Ok(None);
            };
            principal_of(db, r.i64(0)?, r.string(1)?, r.bool(2)?).map(Some)
        })
    }

    fn end_session(&self, token: &str) -> Result<()> {
        let hash = key_hash(token);
        self.write(move |db| db.execute("DELETE FROM sessions WHERE hash = ?1", args![hash]).map(|_| ()))
    }

    fn server_secret(&self, name: &str) -> Result<String> {
        let name = name.to_owned();
        let known = name.clone();
        if let Some(row) = self.read(move |db| db.opt_row("SELECT value FROM server_secrets WHERE name = ?1", args![known]))? {
            return row.string(0);
        }
        let fresh = new_token("", 52)?;
        self.write(move |db| {
            // Two servers at once: the first one's stays.
            db.execute("INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING", args![name, fresh])?;
            db.row("SELECT value FROM server_secrets WHERE name = ?1", args![name])?.string(0)
        })
    }

    fn has_users(&self) -> Result<bool> {
        self.read(|db| Ok(db.opt_row("SELECT 1 FROM accounts WHERE kind = 'user' LIMIT 1", &[])?.is_some()))
    }

    fn set_visibility(&self, entity: &str, project: &str, visibility: Visibility) -> Result<()> {
        let (entity, project) = (entity.to_owned(), project.to_owned());
        self.write(move |db| {
            let changed = db.execute(
                "UPDATE projects SET visibility = ?3
                 WHERE name = ?2 AND entity_pk = (SELECT entity_pk FROM entities WHERE name = ?1)",
                args![entity, project, visibility.as_str()],
            )?;
            if changed == 0 {
                return Err(CodedError::new(ErrorCode::ProjectNotFound, format!("project {entity}/{project} not found")));
            }
            Ok(())
        })
    }

    fn public_projects(&self) -> Result<Vec<(String, String)>> {
        self.read(|db| {
            db.query("SELECT e.name, p.name FROM projects p JOIN entities e ON e.entity_pk = p.entity_pk WHERE p.visibility = 'public' ORDER BY 1, 2", &[])?
                .iter()
                .map(|r| Ok((r.string(0)?, r.string(1)?)))
                .collect()
        })
    }

    fn content_readable(&self, sha256: &str, entities: Option<&[String]>) -> Result<bool> {
        // The projects of the runs and of the artifacts that name it.
        let sql = "SELECT e.name, p.visibility FROM run_files f JOIN runs r ON r.run_pk = f.run_pk
             JOIN projects p ON p.project_pk = r.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
             WHERE f.sha256 = ?1 AND r.deleted_at IS NULL
             UNION
             SELECT e.name, p.visibility FROM artifact_entries a JOIN artifact_versions v ON v.version_pk = a.version_pk
             JOIN artifact_collections c ON c.collection_pk = v.collection_pk
             JOIN projects p ON p.project_pk = c.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
             WHERE a.digest = ?1 AND a.ref IS NULL";
        self.read(|db| {
            Ok(db
                .query(sql, args![sha256])?
                .iter()
                .any(|r| r.str(1).is_ok_and(|v| v == "public") || r.str(0).is_ok_and(|name| entities.is_none_or(|readable| readable.iter().any(|e| e == name)))))
        })
    }

    fn record_audit(&self, actor: &str, action: &str, target: &str, detail: &str, now: Timestamp) -> Result<()> {
        let (actor, action, target, detail) = (actor.to_owned(), action.to_owned(), target.to_owned(), detail.to_owned());
        self.write(move |db| {
            db.execute("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)", args![now.micros(), actor, action, target, detail]).map(|_| ())
        })
    }

    fn list_audit(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        self.read(|db| {
            db.query(
                "SELECT audit_pk, at, actor, action, target, detail FROM audit_log WHERE audit_pk < ?1 ORDER BY audit_pk DESC LIMIT ?2",
                args![before.unwrap_or(i64::MAX), limit.min(10_000) as i64],
            )?
            .iter()
            .map(|r| Ok(AuditEntry { id: r.i64(0)?, at: Timestamp(r.i64(1)?), actor: r.string(2)?, action: r.string(3)?, target: r.string(4)?, detail: r.string(5)? }))
            .collect()
        })
    }
}

/// Layouts are the UI's JSON, kept as text; this bounds what one request may store.
const MAX_WORKSPACE_BYTES: usize = 1 << 20;

impl crate::WorkspaceStore for SqlStore {
    fn workspace(&self, entity: &str, project: &str, viewer: &str) -> Result<Option<serde_json::Value>> {
        let (entity, project, viewer) = (entity.to_owned(), project.to_owned(), viewer.to_owned());
        self.read(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            let Some(row) = db.opt_row("SELECT layout FROM workspaces WHERE project_pk = ?1 AND viewer = ?2", args![pk, viewer])? else {
                return Ok(None);
            };
            let text = row.string(0)?;
            serde_json::from_str(&text).map(Some).map_err(|e| CodedError::new(ErrorCode::Internal, format!("the stored workspace of {entity}/{project} is not JSON: {e}")))
        })
    }

    fn save_workspace(&self, entity: &str, project: &str, viewer: &str, layout: &serde_json::Value, now: Timestamp) -> Result<()> {
        let text = layout.to_string();
        if text.len() > MAX_WORKSPACE_BYTES {
            return Err(CodedError::new(ErrorCode::InvalidBody, format!("a workspace layout is at most {MAX_WORKSPACE_BYTES} bytes of JSON, not {}", text.len())));
        }
        if !layout.is_object() {
            return Err(CodedError::new(ErrorCode::InvalidBody, "a workspace layout is a JSON object"));
        }
        let (entity, project, viewer) = (entity.to_owned(), project.to_owned(), viewer.to_owned());
        self.write(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            db.execute(
                "INSERT INTO workspaces (project_pk, viewer, layout, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_pk, viewer) DO UPDATE SET layout = excluded.layout, updated_at = excluded.updated_at",
                args![pk, viewer, text, now.micros()],
            )?;
            Ok(())
        })
    }

    fn reset_workspace(&self, entity: &str, project: &str, viewer: &str) -> Result<bool> {
        let (entity, project, viewer) = (entity.to_owned(), project.to_owned(), viewer.to_owned());
        self.write(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            Ok(db.execute("DELETE FROM workspaces WHERE project_pk = ?1 AND viewer = ?2", args![pk, viewer])? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_have_the_format_the_wandb_client_checks() {
        // wandb's checks: the secret is what follows the first `-`; 0.19 saves a key only when
        // it is exactly 40 characters, later versions take 40 or more word characters.
        for _ in 0..200 {
            let key = super::new_key().unwrap();
            let (prefix, secret) = key.split_once('-').unwrap();
            assert_eq!(prefix, "cairn");
            assert_eq!(secret.len(), 40, "{key}");
            assert!(secret.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{key}");
            assert_ne!(key, super::new_key().unwrap());
        }
    }
}
