//! The reference server's security: a key on every route but health, keys stored hashed and
//! revocable, project scoping (another project's entity is 404) and roles (read-only writes
//! are 403, only admins manage keys). One test per refusal.

mod server_common;

use omoi_core::{AccessRole, AccessStore, NewTask, SpecId, TaskId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server_common::sqlite;

/// Every route but health, with a body where it takes one.
fn routes() -> Vec<(Method, String, Option<Value>)> {
    let (s, t) = (SpecId::new(), TaskId::new());
    vec![
        (Method::GET, "/openapi.json".into(), None),
        (Method::POST, "/api/specs".into(), Some(json!({"idea": "x"}))),
        (Method::GET, "/api/specs".into(), None),
        (Method::GET, format!("/api/specs/{s}"), None),
        (Method::POST, format!("/api/specs/{s}/approve"), None),
        (Method::POST, format!("/api/specs/{s}/reject"), Some(json!({"feedback": "x"}))),
        (Method::GET, "/api/tasks".into(), None),
        (Method::GET, "/api/tasks/counts".into(), None),
        (Method::GET, format!("/api/tasks/{t}"), None),
        (Method::POST, format!("/api/tasks/{t}/cancel"), None),
        (Method::POST, format!("/api/tasks/{t}/retry"), None),
        (Method::POST, "/api/tasks/cancel".into(), Some(json!({}))),
        (Method::POST, "/api/tasks/retry".into(), Some(json!({}))),
        (Method::GET, "/api/agents".into(), None),
        (
            Method::POST,
            format!("/api/agents/{}/steer", omoi_core::AgentId::new()),
            Some(json!({"message": "x", "task_id": t})),
        ),
        (Method::GET, "/api/discoveries".into(), None),
        (Method::GET, "/api/interventions".into(), None),
        (Method::GET, "/api/cost".into(), None),
        (Method::GET, "/api/events".into(), None),
        (Method::GET, "/api/event-names".into(), None),
        (Method::POST, "/api/keys".into(), Some(json!({"role": "admin"}))),
        (Method::DELETE, format!("/api/keys/{}", omoi_core::ApiKeyId::new()), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_health_refuses_a_missing_malformed_or_unknown_key_with_401() {
    let env = sqlite(Vec::new()).await;
    let unknown = omoi_examples::server::auth::generate_key();
    for (method, path, body) in routes() {
        for key in [None, Some(unknown.as_str()), Some("not-a-key")] {
            let (status, err) = env.call(method.clone(), &path, key, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}: {err}");
            assert_eq!(err["error"]["code"], "unauthorized");
        }
        let resp = env
            .http
            .request(method.clone(), format!("{}{path}", env.server.url()))
            .header("Authorization", format!("Basic {}", env.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} with a Basic header");
    }
    let (status, _) = env.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    // Nothing was created on the way.
    assert_eq!(env.store.list_keys(None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_as_sha256_hashes_only() {
    let env = sqlite(Vec::new()).await;
    let keys = env.store.list_keys(Some("alpha")).await.unwrap();
    assert_eq!(keys.len(), 1);
    let stored = &keys[0];
    assert_ne!(stored.key_hash, env.admin);
    assert!(!stored.key_hash.contains(&env.admin[5..]));
    assert_eq!(stored.key_hash, omoi_examples::server::auth::hash_key(&env.admin));
    assert_eq!(env.store.key_by_hash(&env.admin).await.unwrap(), None);
    assert!(env.admin.starts_with("omoi_") && env.admin.len() == 5 + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_with_401() {
    let env = sqlite(Vec::new()).await;
    let (status, created) = env.post("/api/keys", json!({"role": "write"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["project"], "alpha");
    let key = created["key"].as_str().unwrap().to_owned();
    let (status, _) = env.call(Method::GET, "/api/tasks", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);
    let id = created["id"].as_str().unwrap();
    let (status, _) = env.call(Method::DELETE, &format!("/api/keys/{id}"), Some(&env.admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = env.call(Method::GET, "/api/tasks", Some(&key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(err["error"]["message"].as_str().unwrap().contains("revoked"), "{err}");
    // Revoked from the command line's path (the same function the `--revoke-key` flag calls).
    let (stored, other) = env.server.create_key_full("alpha", AccessRole::ReadOnly).await.unwrap();
    omoi_examples::server::auth::revoke_key(env.store_access(), stored.id).await.unwrap();
    let (status, _) = env.call(Method::GET, "/api/tasks", Some(&other), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_projects_entities_are_404_and_never_listed() {
    let env = sqlite(Vec::new()).await;
    let beta = env.key("beta", AccessRole::Admin).await;
    let theirs = NewTask::new("beta's task");
    let their_id = theirs.id;
    env.insert_owned("beta", vec![theirs]).await;
    let (_, spec) = env.call(Method::POST, "/api/specs", Some(&beta), Some(json!({"idea": server_common::IDEA}))).await;
    let their_spec = spec["id"].as_str().unwrap().to_owned();

    let paths = [
        (Method::GET, format!("/api/tasks/{their_id}"), None),
        (Method::POST, format!("/api/tasks/{their_id}/cancel"), None),
        (Method::POST, format!("/api/tasks/{their_id}/retry"), None),
        (Method::GET, format!("/api/specs/{their_spec}"), None),
        (Method::POST, format!("/api/specs/{their_spec}/approve"), None),
        (Method::POST, format!("/api/specs/{their_spec}/reject"), Some(json!({"feedback": "x"}))),
        (Method::GET, format!("/api/tasks?spec={their_spec}"), None),
        (Method::GET, format!("/api/tasks/counts?spec={their_spec}"), None),
        (Method::GET, format!("/api/discoveries?task={their_id}"), None),
        (Method::GET, format!("/api/cost?spec={their_spec}"), None),
    ];
    for (method, path, body) in paths {
        let (status, err) = env.call(method.clone(), &path, Some(&env.admin), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
    }
    let agent = omoi_core::AgentId::new();
    let (status, _) =
        env.post(&format!("/api/agents/{agent}/steer"), json!({"message": "x", "task_id": their_id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Lists hold only alpha's (nothing); beta sees its own.
    let (_, tasks) = env.get("/api/tasks").await;
    assert_eq!(tasks["tasks"], json!([]));
    let (_, specs) = env.get("/api/specs").await;
    assert_eq!(specs["specs"], json!([]));
    let (_, counts) = env.get("/api/tasks/counts").await;
    assert_eq!(counts["total"], 0);
    let (_, theirs) = env.call(Method::GET, "/api/tasks", Some(&beta), None).await;
    assert!(theirs["tasks"].as_array().unwrap().iter().any(|t| t["id"] == their_id.to_string()));
    // Cancelling by filter touches only the caller's tasks.
    let (_, bulk) = env.post("/api/tasks/cancel", json!({})).await;
    assert_eq!(bulk["done"], json!([]));
    let (_, still) = env.call(Method::GET, &format!("/api/tasks/{their_id}"), Some(&beta), None).await;
    assert_eq!(still["task"]["state"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_key_reads_but_every_write_is_403() {
    let env = sqlite(Vec::new()).await;
    let reader = env.key("alpha", AccessRole::ReadOnly).await;
    let task = NewTask::new("mine");
    let tid = task.id;
    env.insert_owned("alpha", vec![task]).await;
    let (status, _) = env.call(Method::GET, &format!("/api/tasks/{tid}"), Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK);
    let writes = [
        (Method::POST, "/api/specs".to_owned(), Some(json!({"idea": "x"}))),
        (Method::POST, format!("/api/tasks/{tid}/cancel"), None),
        (Method::POST, format!("/api/tasks/{tid}/retry"), None),
        (Method::POST, "/api/tasks/cancel".to_owned(), Some(json!({}))),
        (Method::POST, "/api/tasks/retry".to_owned(), Some(json!({}))),
        (
            Method::POST,
            format!("/api/agents/{}/steer", omoi_core::AgentId::new()),
            Some(json!({"message": "x", "task_id": tid})),
        ),
        (Method::POST, "/api/keys".to_owned(), Some(json!({"role": "read_only"}))),
    ];
    for (method, path, body) in writes {
        let (status, err) = env.call(method.clone(), &path, Some(&reader), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {err}");
        assert_eq!(err["error"]["code"], "forbidden");
    }
    let (_, t) = env.get(&format!("/api/tasks/{tid}")).await;
    assert_eq!(t["task"]["state"], "ready", "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_key_manages_keys_and_only_its_projects() {
    let env = sqlite(Vec::new()).await;
    let writer = env.key("alpha", AccessRole::Write).await;
    let (status, _) = env.call(Method::POST, "/api/keys", Some(&writer), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let beta_key = env.server.create_key_full("beta", AccessRole::Write).await.unwrap().0;
    let (status, _) = env.call(Method::DELETE, &format!("/api/keys/{}", beta_key.id), Some(&writer), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An admin of alpha cannot revoke beta's key: it does not exist for alpha.
    let (status, _) = env.call(Method::DELETE, &format!("/api/keys/{}", beta_key.id), Some(&env.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(env.store.key_by_hash(&beta_key.key_hash).await.unwrap().unwrap().is_active());
    // An admin creates a read-only key for its project; the key works for reads.
    let (status, created) = env.post("/api/keys", json!({"role": "read_only"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["role"], "read_only");
    let (status, _) = env.call(Method::GET, "/api/agents", Some(created["key"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
}
