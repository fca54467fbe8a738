//! Access: API keys scoped to a project, and which project owns an entity.
//!
//! A project is a name (`[A-Za-z0-9_-]`, 1–64 characters). An API key belongs to one project and
//! has one [`AccessRole`]; only the SHA-256 hash of the key is stored (the caller hashes, the
//! store never sees the key). An entity (a spec, a task…) is owned by the project that created
//! it; a caller may act only on its own project's entities.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Subject;
use crate::ids::{AgentId, ApiKeyId, DiscoveryId, MemoryId, SpecId, TaskId, TicketId};
use crate::string_enum;

string_enum! {
    /// What a key may do. Ordered: read-only < write < admin.
    pub enum AccessRole: "access role" {
        /// Reads only.
        ReadOnly => "read_only",
        /// Reads and writes its project's entities.
        Write => "write",
        /// Writes, and creates and revokes keys.
        Admin => "admin",
    }
}

impl AccessRole {
    /// Whether the role may change entities.
    pub const fn can_write(self) -> bool {
        matches!(self, AccessRole::Write | AccessRole::Admin)
    }

    /// Whether the role may create and revoke keys.
    pub const fn is_admin(self) -> bool {
        matches!(self, AccessRole::Admin)
    }
}

/// Longest project name.
pub const MAX_PROJECT_LEN: usize = 64;

/// Checks a project name: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_project(project: &str) -> Result<(), String> {
    if project.is_empty() || project.len() > MAX_PROJECT_LEN {
        return Err(format!("a project name has 1 to {MAX_PROJECT_LEN} characters, got {}", project.len()));
    }
    if let Some(c) = project.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("a project name uses only letters, digits, '_' and '-', found {c:?}"));
    }
    Ok(())
}

/// A key to store: its hash, never the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewApiKey {
    /// Its id (what revocation names).
    pub id: ApiKeyId,
    /// The project it is scoped to.
    pub project: String,
    /// What it may do.
    pub role: AccessRole,
    /// The SHA-256 of the key, as 64 lower-case hex digits.
    pub key_hash: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("project", &self.project)
            .field("role", &self.role)
            .field("key_hash", &"[redacted]")
            .finish()
    }
}

impl NewApiKey {
    /// A key for `project` with `role` whose SHA-256 is `key_hash` (hex).
    pub fn new(project: impl Into<String>, role: AccessRole, key_hash: impl Into<String>) -> Self {
        Self { id: ApiKeyId::new(), project: project.into(), role, key_hash: key_hash.into() }
    }

    /// Checks the project name and the hash's form.
    pub fn validate(&self) -> Result<(), String> {
        validate_project(&self.project)?;
        if self.key_hash.len() != 64 || !self.key_hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("a key hash is 64 lower-case hex digits (SHA-256)".into());
        }
        Ok(())
    }
}

/// A stored key (its hash only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The project it is scoped to.
    pub project: String,
    /// What it may do.
    pub role: AccessRole,
    /// The SHA-256 of the key (hex).
    pub key_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key grants nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("project", &self.project)
            .field("role", &self.role)
            .field("key_hash", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

impl ApiKey {
    /// The key as stored at `now`.
    pub fn created(new: NewApiKey, now: DateTime<Utc>) -> Self {
        Self {
            id: new.id,
            project: new.project,
            role: new.role,
            key_hash: new.key_hash,
            created_at: now,
            revoked_at: None,
        }
    }

    /// Whether the key still grants access.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The storage form of a [`Subject`]: its kind (`task`, `spec`…) and its UUID.
pub fn subject_key(subject: Subject) -> (&'static str, Uuid) {
    match subject {
        Subject::Task(id) => ("task", id.as_uuid()),
        Subject::Spec(id) => ("spec", id.as_uuid()),
        Subject::Ticket(id) => ("ticket", id.as_uuid()),
        Subject::Agent(id) => ("agent", id.as_uuid()),
        Subject::Discovery(id) => ("discovery", id.as_uuid()),
        Subject::Memory(id) => ("memory", id.as_uuid()),
    }
}

/// The [`Subject`] of a storage form written by [`subject_key`]; `None` for an unknown kind.
pub fn subject_of(kind: &str, id: Uuid) -> Option<Subject> {
    Some(match kind {
        "task" => Subject::Task(TaskId::from_uuid(id)),
        "spec" => Subject::Spec(SpecId::from_uuid(id)),
        "ticket" => Subject::Ticket(TicketId::from_uuid(id)),
        "agent" => Subject::Agent(AgentId::from_uuid(id)),
        "discovery" => Subject::Discovery(DiscoveryId::from_uuid(id)),
        "memory" => Subject::Memory(MemoryId::from_uuid(id)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_checked() {
        assert!(validate_project("demo_1-x").is_ok());
        assert!(validate_project("").is_err());
        assert!(validate_project("a b").is_err());
        assert!(validate_project(&"a".repeat(65)).is_err());
    }

    #[test]
    fn key_hash_form_is_checked_and_never_printed() {
        let ok = NewApiKey::new("p", AccessRole::Write, "ab".repeat(32));
        assert!(ok.validate().is_ok());
        assert!(!format!("{ok:?}").contains(&"ab".repeat(32)));
        assert!(NewApiKey::new("p", AccessRole::Write, "AB".repeat(32)).validate().is_err());
        assert!(NewApiKey::new("p", AccessRole::Write, "ab").validate().is_err());
    }

    #[test]
    fn subject_keys_round_trip() {
        for s in [Subject::Task(TaskId::new()), Subject::Spec(SpecId::new()), Subject::Agent(AgentId::new())] {
            let (kind, id) = subject_key(s);
            assert_eq!(subject_of(kind, id), Some(s));
        }
        assert_eq!(subject_of("planet", Uuid::nil()), None);
    }

    #[test]
    fn roles_order_their_rights() {
        assert!(!AccessRole::ReadOnly.can_write());
        assert!(AccessRole::Write.can_write() && !AccessRole::Write.is_admin());
        assert!(AccessRole::Admin.is_admin());
        assert_eq!("read_only".parse::<AccessRole>().unwrap(), AccessRole::ReadOnly);
    }
}
