//! Conformance scenarios for [`AccessStore`].

use std::sync::Arc;
use std::time::Duration;

use crate::access::{AccessRole, NewApiKey};
use crate::error::StoreError;
use crate::event::Subject;
use crate::ids::{ApiKeyId, SpecId, TaskId};
use crate::ports::access_store::AccessStore;
use crate::ports::clock::Clock;
use crate::testkit::ManualClock;

/// What the access-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub access: Arc<dyn AccessStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter.
    pub fn new<S: AccessStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { access: store, clock }
    }
}

/// A distinct, valid hash for test key `n`.
fn hash(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

/// A created key round-trips every field, is found by its hash and listed under its project in
/// creation order; an unknown hash finds nothing.
pub async fn created_key_is_found_by_hash_and_listed_by_project(h: Harness) {
    let a = h.access.create_key(NewApiKey::new("alpha", AccessRole::Admin, hash(1))).await.expect("create a");
    h.clock.advance(Duration::from_secs(1));
    let b = h.access.create_key(NewApiKey::new("alpha", AccessRole::ReadOnly, hash(2))).await.expect("create b");
    let c = h.access.create_key(NewApiKey::new("beta", AccessRole::Write, hash(3))).await.expect("create c");
    assert_eq!(a.created_at, h.clock.now() - chrono::Duration::seconds(1));
    assert!(a.is_active());
    let found = h.access.key_by_hash(&hash(2)).await.expect("by hash").expect("found");
    assert_eq!(found, b);
    assert_eq!(found.role, AccessRole::ReadOnly);
    assert_eq!(found.project, "alpha");
    assert_eq!(h.access.key_by_hash(&hash(9)).await.expect("by hash"), None);
    let alpha: Vec<_> = h.access.list_keys(Some("alpha")).await.expect("list").into_iter().map(|k| k.id).collect();
    assert_eq!(alpha, vec![a.id, b.id]);
    let all: Vec<_> = h.access.list_keys(None).await.expect("list").into_iter().map(|k| k.id).collect();
    assert_eq!(all, vec![a.id, b.id, c.id]);
}

/// A revoked key is still found (so a request with it is told it was revoked) with its
/// revocation time; revoking again keeps that time; an unknown id is `NotFound`.
pub async fn revoked_key_keeps_its_first_revocation_time(h: Harness) {
    let k = h.access.create_key(NewApiKey::new("alpha", AccessRole::Write, hash(4))).await.expect("create");
    h.clock.advance(Duration::from_secs(5));
    let revoked = h.access.revoke_key(k.id).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(h.clock.now()));
    assert!(!revoked.is_active());
    h.clock.advance(Duration::from_secs(5));
    let again = h.access.revoke_key(k.id).await.expect("revoke again");
    assert_eq!(again.revoked_at, revoked.revoked_at);
    let found = h.access.key_by_hash(&hash(4)).await.expect("by hash").expect("found");
    assert_eq!(found.revoked_at, revoked.revoked_at);
    let err = h.access.revoke_key(ApiKeyId::new()).await.expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// A duplicate id or hash, a bad project name or a malformed hash is refused and stores nothing.
pub async fn duplicate_or_invalid_keys_are_refused_storing_nothing(h: Harness) {
    let k = h.access.create_key(NewApiKey::new("alpha", AccessRole::Write, hash(5))).await.expect("create");
    let same_hash = h.access.create_key(NewApiKey::new("beta", AccessRole::Admin, hash(5))).await;
    assert!(matches!(same_hash, Err(StoreError::AlreadyExists { .. })), "{same_hash:?}");
    let mut same_id = NewApiKey::new("alpha", AccessRole::Write, hash(6));
    same_id.id = k.id;
    let same_id = h.access.create_key(same_id).await;
    assert!(matches!(same_id, Err(StoreError::AlreadyExists { .. })), "{same_id:?}");
    for bad in [
        NewApiKey::new("bad project", AccessRole::Write, hash(7)),
        NewApiKey::new("", AccessRole::Write, hash(7)),
        NewApiKey::new("alpha", AccessRole::Write, "not-a-hash"),
        NewApiKey::new("alpha", AccessRole::Write, "AB".repeat(32)),
    ] {
        let r = h.access.create_key(bad).await;
        assert!(matches!(r, Err(StoreError::InvalidInput(_))), "{r:?}");
    }
    let all = h.access.list_keys(None).await.expect("list");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(h.access.key_by_hash(&hash(6)).await.expect("by hash"), None);
}

/// An entity has one owner: assigning it again to the same project is a no-op, to another
/// project is `AlreadyExists` and keeps the first owner; an unassigned entity has none.
pub async fn an_entity_has_one_owner_that_another_project_cannot_take(h: Harness) {
    let spec = Subject::Spec(SpecId::new());
    h.access.assign_owner(spec, "alpha").await.expect("assign");
    h.access.assign_owner(spec, "alpha").await.expect("assign again (idempotent)");
    let r = h.access.assign_owner(spec, "beta").await;
    assert!(matches!(r, Err(StoreError::AlreadyExists { .. })), "{r:?}");
    assert_eq!(h.access.owner_of(spec).await.expect("owner").as_deref(), Some("alpha"));
    assert_eq!(h.access.owner_of(Subject::Task(TaskId::new())).await.expect("owner"), None);
    let r = h.access.assign_owner(Subject::Task(TaskId::new()), "no spaces allowed").await;
    assert!(matches!(r, Err(StoreError::InvalidInput(_))), "{r:?}");
}

/// `owned_by` lists a project's entities of every kind in assignment order, and nothing of
/// another project.
pub async fn owned_by_lists_a_projects_entities_in_assignment_order(h: Harness) {
    let s = Subject::Spec(SpecId::new());
    let t1 = Subject::Task(TaskId::new());
    let other = Subject::Task(TaskId::new());
    let t2 = Subject::Task(TaskId::new());
    h.access.assign_owner(s, "alpha").await.expect("assign");
    h.access.assign_owner(t1, "alpha").await.expect("assign");
    h.access.assign_owner(other, "beta").await.expect("assign");
    h.access.assign_owner(t2, "alpha").await.expect("assign");
    assert_eq!(h.access.owned_by("alpha").await.expect("owned"), vec![s, t1, t2]);
    assert_eq!(h.access.owned_by("beta").await.expect("owned"), vec![other]);
    assert_eq!(h.access.owned_by("gamma").await.expect("owned"), Vec::<Subject>::new());
}
