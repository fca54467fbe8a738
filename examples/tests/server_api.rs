//! Every REST route of the reference server, against a real server on an ephemeral port over
//! SQLite: specs, tasks, agents, discoveries, interventions, cost, health, OpenAPI, and the
//! typed errors for bad input.

mod server_common;

use std::time::Duration;

use omoi_core::branching::{BranchLimits, default_branch};
use omoi_core::{
    AgentId, AgentStore, ClaimRequest, Completion, DiscoveryKind, DiscoveryReport, DiscoveryStore, Event, EventStore,
    Failure, Heartbeat, NewAgent, NewDiscovery, NewTask, SpecPhase, SpecState, TaskStore, Usage,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server_common::sqlite;

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_key_and_reports_the_store() {
    let env = sqlite(Vec::new()).await;
    let (status, body) = env.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "store": "ok"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_created_through_the_api_runs_and_its_tasks_are_listed_paged_and_counted() {
    let env = sqlite(Vec::new()).await;
    let (status, body) = env.post("/api/specs", json!({"idea": server_common::IDEA, "title": "slugify"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["state"], "draft");
    let detail = env.wait_spec(&id, |s| s == "completed").await;
    assert_eq!(detail["spec"]["title"], "slugify");
    assert!(!detail["tickets"].as_array().unwrap().is_empty(), "{detail}");

    let (status, list) = env.get("/api/specs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list["specs"]), vec![id.clone()]);

    let (status, all) = env.get(&format!("/api/tasks?spec={id}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all_ids = ids(&all["tasks"]);
    assert!(all_ids.len() >= 3, "{all}");
    assert_eq!(all["next"], Value::Null);
    // Paging by id: two at a time gives the same tasks in the same order.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() { "limit=2".to_owned() } else { format!("limit=2&after={after}") };
        let (_, page) = env.get(&format!("/api/tasks?{q}")).await;
        paged.extend(ids(&page["tasks"]));
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all_ids);
    let (_, ready) = env.get("/api/tasks?state=ready").await;
    let (_, waiting) = env.get("/api/tasks?state=waiting,blocked").await;
    assert_eq!(ready["tasks"].as_array().unwrap().len() + waiting["tasks"].as_array().unwrap().len(), all_ids.len());
    assert!(ready["tasks"].as_array().unwrap().iter().all(|t| t["state"] == "ready"));

    let (status, counts) = env.get("/api/tasks/counts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counts["total"], all_ids.len());
    assert_eq!(counts["counts"]["ready"], ready["tasks"].as_array().unwrap().len());
    let (_, by_spec) = env.get(&format!("/api/tasks/counts?spec={id}")).await;
    assert_eq!(by_spec, counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_spec_waits_for_approval_refuses_empty_feedback_and_continues_when_approved() {
    let env = sqlite(vec![SpecPhase::Prd]).await;
    let (_, body) = env.post("/api/specs", json!({"idea": server_common::IDEA})).await;
    let id = body["id"].as_str().unwrap().to_owned();
    env.wait_spec(&id, |s| s.starts_with("awaiting_approval")).await;
    let (status, err) = env.post(&format!("/api/specs/{id}/reject"), json!({"feedback": "  "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "bad_request");
    let (status, ok) = env.post(&format!("/api/specs/{id}/approve"), json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ok}");
    env.wait_spec(&id, |s| s == "completed").await;
    // Approving again: the spec is not waiting any more.
    let (status, err) = env.post(&format!("/api/specs/{id}/approve"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_phase_is_accepted_and_runs_again() {
    let env = sqlite(vec![SpecPhase::Prd]).await;
    let (_, body) = env.post("/api/specs", json!({"idea": server_common::IDEA})).await;
    let id = body["id"].as_str().unwrap().to_owned();
    env.wait_spec(&id, |s| s.starts_with("awaiting_approval")).await;
    let (status, ok) = env.post(&format!("/api/specs/{id}/reject"), json!({"feedback": "name the edge cases"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ok}");
    // The rejected phase runs again: the spec went from its gate back to running that phase.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = env.store.read_events(omoi_core::Cursor::START, 10_000).await.unwrap();
        let rerun = events.iter().any(|e| {
            matches!(&e.event, Event::SpecStateChanged {
                spec_id,
                from: SpecState::AwaitingApproval { phase: SpecPhase::Prd },
                to: SpecState::Running { phase: SpecPhase::Prd },
            } if spec_id.to_string() == id)
        });
        if rerun {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the rejected phase did not run again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_detail_has_attempts_trajectory_cost_dependents_and_why_it_waits() {
    let env = sqlite(Vec::new()).await;
    let build = NewTask::new("build");
    let test = NewTask::new("test").depends_on([build.id]);
    let (b, t) = (build.id, test.id);
    env.insert_owned("alpha", vec![build, test]).await;
    let agent = AgentId::new();
    let claim = |agent| ClaimRequest::new(agent, 1, Duration::from_secs(60)).and_start();
    let first = env.store.claim(&claim(agent)).await.unwrap().remove(0);
    env.store
        .append_events(vec![Event::AgentStep {
            task_id: b,
            agent_id: agent,
            step: 1,
            action: "run cargo build".into(),
            detail: json!({"exit": 1}),
        }])
        .await
        .unwrap();
    env.store.fail(b, first.lease.token, Failure::retryable("compile error")).await.unwrap();

    // While the first attempt is retried, the dependent waits for it.
    let (status, waiting) = env.get(&format!("/api/tasks/{t}")).await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    let reasons = waiting["why_waiting"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["kind"] == "dependency" && r["task_id"] == b.to_string()), "{waiting}");

    // Second attempt completes with usage.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let mut c = env.store.claim(&claim(agent)).await.unwrap();
        if let Some(c) = c.pop() {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "the retry never became claimable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let usage = Usage { input_tokens: 100, output_tokens: 20, cost_usd: 0.5 };
    env.store.complete(b, second.lease.token, Completion { result: json!({"ok": true}), usage }).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let (status, detail) = env.get(&format!("/api/tasks/{b}")).await;
        assert_eq!(status, StatusCode::OK);
        if detail["attempts"].as_array().unwrap().len() == 2 && detail["attempts"][1]["outcome"] == "completed" {
            break detail;
        }
        assert!(tokio::time::Instant::now() < deadline, "attempts never showed up: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(detail["task"]["state"], "completed");
    assert_eq!(detail["attempts"][0]["outcome"], "retrying");
    assert_eq!(detail["attempts"][0]["error"], "compile error");
    assert_eq!(detail["attempts"][0]["holder"], agent.to_string());
    assert_eq!(detail["trajectory"].as_array().unwrap().len(), 1);
    assert_eq!(detail["trajectory"][0]["event"]["data"]["action"], "run cargo build");
    assert_eq!(detail["cost"]["cost_usd"], 0.5);
    assert_eq!(detail["dependents"], json!([t.to_string()]));
    assert_eq!(detail["why_waiting"], Value::Null);
    let (_, ready) = env.get(&format!("/api/tasks/{t}")).await;
    assert_eq!(ready["task"]["state"], "ready");
    assert_eq!(ready["why_waiting"]["reasons"][0]["kind"], "queued");

    let (status, cost) = env.get("/api/cost").await;
    assert_eq!(status, StatusCode::OK, "{cost}");
    assert!(cost["total"]["cost_usd"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_retry_one_task_or_many_by_filter() {
    let env = sqlite(Vec::new()).await;
    let a = NewTask::new("a").max_attempts(1);
    let b = NewTask::new("b").depends_on([a.id]);
    let c = NewTask::new("c");
    let d = NewTask::new("d");
    let (ia, ib, ic, id) = (a.id, b.id, c.id, d.id);
    env.insert_owned("alpha", vec![a, b, c, d]).await;
    // a dead-letters; b is blocked by it.
    let claimed = env.store.claim(&ClaimRequest::new(AgentId::new(), 10, Duration::from_secs(60))).await.unwrap();
    for ct in claimed {
        if ct.task.id == ia {
            env.store.fail(ia, ct.lease.token, Failure::permanent("boom")).await.unwrap();
        } else {
            env.store.release(ct.task.id, ct.lease.token).await.unwrap();
        }
    }
    let (_, blocked) = env.get(&format!("/api/tasks/{ib}")).await;
    assert_eq!(blocked["task"]["state"], "blocked");
    assert_eq!(blocked["why_waiting"]["reasons"][0]["kind"], "blocked_by", "{blocked}");

    // Retrying a task that did not fail is a conflict; retrying the failed one unblocks b.
    let (status, err) = env.post(&format!("/api/tasks/{ic}/retry"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, ok) = env.post(&format!("/api/tasks/{ia}/retry"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["affected"], json!([ib.to_string()]));
    let (_, b_now) = env.get(&format!("/api/tasks/{ib}")).await;
    assert_eq!(b_now["task"]["state"], "waiting");

    // Cancel one: its dependent is blocked; cancelling it again is a conflict.
    let (status, ok) = env.post(&format!("/api/tasks/{ia}/cancel"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["affected"], json!([ib.to_string()]));
    let (status, _) = env.post(&format!("/api/tasks/{ia}/cancel"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Bulk: cancel every ready task (c and d), nothing else.
    let (status, bulk) = env.post("/api/tasks/cancel", json!({"state": ["ready"]})).await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    let mut done: Vec<String> = bulk["done"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    done.sort();
    let mut want = vec![ic.to_string(), id.to_string()];
    want.sort();
    assert_eq!(done, want);
    assert_eq!(bulk["refused"], json!([]));
    // Bulk retry of failed tasks: none failed now, nothing done.
    let (status, bulk) = env.post("/api/tasks/retry", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bulk, json!({"done": [], "refused": []}));
    let (_, counts) = env.get("/api/tasks/counts").await;
    assert_eq!(counts["counts"]["cancelled"], 3, "{counts}");
    assert_eq!(counts["counts"]["blocked"], 1, "{counts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_listed_with_health_and_steered_on_a_task() {
    let env = sqlite(Vec::new()).await;
    let agent = env.store.register_agent(NewAgent::worker("worker-x", ["rust"])).await.unwrap();
    env.store.heartbeat(agent.id, Heartbeat { seq: 1 }).await.unwrap();
    let task = NewTask::new("steer me");
    let tid = task.id;
    env.insert_owned("alpha", vec![task]).await;
    env.store.claim(&ClaimRequest::new(agent.id, 1, Duration::from_secs(60))).await.unwrap();

    let (status, list) = env.get("/api/agents").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let view = list["agents"].as_array().unwrap().iter().find(|a| a["agent"]["id"] == agent.id.to_string()).unwrap();
    assert_eq!(view["health"], "healthy");
    assert_eq!(view["current_tasks"], json!([tid.to_string()]));
    assert!(view["seconds_since_heartbeat"].as_f64().unwrap() < 60.0);

    let steer = json!({"message": "run the tests first", "task_id": tid, "severity": "correction"});
    let (status, i) = env.post(&format!("/api/agents/{}/steer", agent.id), steer.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{i}");
    assert_eq!(i["severity"], "correction");
    assert_eq!(i["source"], "operator");
    let (status, err) =
        env.post(&format!("/api/agents/{}/steer", agent.id), json!({"message": " ", "task_id": tid})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = env.post(&format!("/api/agents/{}/steer", AgentId::new()), steer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, list) = env.get("/api/interventions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list["interventions"]), vec![i["id"].as_str().unwrap().to_owned()]);
    let (_, by_agent) = env.get(&format!("/api/interventions?agent={}", AgentId::new())).await;
    assert_eq!(by_agent["interventions"], json!([]));
    let (_, detail) = env.get(&format!("/api/tasks/{tid}")).await;
    assert_eq!(detail["interventions"].as_array().unwrap().len(), 1, "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_are_listed_by_task_and_with_the_task_detail() {
    let env = sqlite(Vec::new()).await;
    let task = NewTask::new("source");
    let tid = task.id;
    env.insert_owned("alpha", vec![task]).await;
    let d = NewDiscovery::new(tid, DiscoveryKind::Bug, "slug of empty text", "slugify('') raises", "returns ''");
    let source = env.store.get_task(tid).await.unwrap();
    let branch = default_branch(&source, &d);
    let report = DiscoveryReport { discovery: d, branch, limits: BranchLimits::default(), duplicate_of: None };
    let outcome = env.store.record_discovery(report).await.unwrap();
    let (status, list) = env.get(&format!("/api/discoveries?task={tid}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["discoveries"].as_array().unwrap().len(), 1, "{list} {outcome:?}");
    assert_eq!(list["discoveries"][0]["title"], "slug of empty text");
    let (_, all) = env.get("/api/discoveries").await;
    assert_eq!(all["discoveries"], list["discoveries"]);
    let (_, detail) = env.get(&format!("/api/tasks/{tid}")).await;
    assert_eq!(detail["discoveries"][0]["title"], "slug of empty text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_4xx_never_a_500() {
    let env = sqlite(Vec::new()).await;
    let url = env.server.url();
    let raw = |method: Method, path: &str, body: &str| {
        env.http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&env.admin)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (raw(Method::POST, "/api/specs", "{not json"), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::POST, "/api/specs", r#"{"idea": 5}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::POST, "/api/specs", r#"{"idea": "x", "color": "red"}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::POST, "/api/specs", r#"{"idea": "   "}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (
            raw(Method::POST, "/api/specs", &format!(r#"{{"idea": "{}"}}"#, "x".repeat(100_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (raw(Method::GET, "/api/tasks/not-a-uuid", ""), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::GET, &format!("/api/tasks/{}", omoi_core::TaskId::new()), ""), StatusCode::NOT_FOUND, "not_found"),
        (raw(Method::GET, &format!("/api/specs/{}", omoi_core::SpecId::new()), ""), StatusCode::NOT_FOUND, "not_found"),
        (
            raw(Method::POST, &format!("/api/tasks/{}/cancel", omoi_core::TaskId::new()), ""),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (raw(Method::GET, "/api/tasks?state=sleeping", ""), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::GET, "/api/tasks?limit=0", ""), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::GET, "/api/tasks?limit=abc", ""), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::GET, "/api/tasks?colour=red", ""), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::GET, "/api/nothing-here", ""), StatusCode::NOT_FOUND, "not_found"),
        (raw(Method::POST, "/api/tasks/cancel", r#"{"state": ["nope"]}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (raw(Method::POST, "/api/keys", r#"{"role": "god"}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (
            raw(Method::POST, "/api/keys", r#"{"role": "write", "project": "no spaces"}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            raw(Method::GET, "/api/events", "").header("Last-Event-ID", "yesterday"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        let got = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "case {i}: {body}");
        assert_eq!(body["error"]["code"], code, "case {i}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i}: {body}");
    }
    // Nothing was created by the refused requests.
    let (_, specs) = env.get("/api/specs").await;
    assert_eq!(specs["specs"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let env = sqlite(Vec::new()).await;
    let (status, doc) = env.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/api/specs",
        "/api/specs/{id}",
        "/api/specs/{id}/approve",
        "/api/specs/{id}/reject",
        "/api/tasks",
        "/api/tasks/counts",
        "/api/tasks/{id}",
        "/api/tasks/{id}/cancel",
        "/api/tasks/{id}/retry",
        "/api/tasks/cancel",
        "/api/tasks/retry",
        "/api/agents",
        "/api/agents/{id}/steer",
        "/api/discoveries",
        "/api/interventions",
        "/api/cost",
        "/api/events",
        "/api/events/recent",
        "/api/event-names",
        "/api/keys",
        "/api/keys/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    let (status, page) = env.call(Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("<html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_events_by_name_are_the_projects_newest_first() {
    let env = sqlite(Vec::new()).await;
    let mine = NewTask::new("mine");
    let theirs = NewTask::new("theirs");
    let (m, t) = (mine.id, theirs.id);
    env.insert_owned("alpha", vec![mine]).await;
    env.insert_owned("beta", vec![theirs]).await;
    let stuck = |task_id, repeats| Event::MonitorStuckDetected {
        task_id,
        agent_id: AgentId::new(),
        rule: omoi_core::StuckRule::RepeatedFailure,
        repeats,
    };
    let cursors = env.store.append_events(vec![stuck(m, 4), stuck(t, 4), stuck(m, 5)]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = env.get("/api/events/recent?names=monitor.stuck_detected,monitor.system_assessed").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["events"].as_array().unwrap().len() == 2 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let got: Vec<u64> = body["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![cursors[2].0, cursors[0].0], "newest first, beta's left out");
    let (_, one) = env.get("/api/events/recent?names=monitor.stuck_detected&limit=1").await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let (status, err) = env.get("/api/events/recent?names=task.exploded").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}
