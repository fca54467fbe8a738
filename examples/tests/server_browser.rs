//! The server's page in a real headless Chromium: a server on SQLite whose worker completes a
//! task only when the test lets it. The page must load without console errors, show the board
//! with every task, render task titles as text (never markup), and move a task to another column
//! when its worker completes it — observed through the event stream, without a reload — and
//! keep every other panel (graph, why-waiting, specs, agents, interventions, stuck tasks) current
//! the same way. A screenshot of the page is written to `target/artifacts/server-page.png`; a
//! refused key then brings up the key form.

#[path = "browser/cdp.rs"]
mod cdp;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::OmoiConfig;
use omoi_core::{
    AccessStore, Event, EventStore, InterventionSource, InterventionStore, NewIntervention, NewSpec, NewTask,
    PhaseCheckpoint, Severity, SpecEvent, SpecPhase, SpecStore, StuckRule, Subject, TaskLinks, TaskState, TaskStore,
    Usage,
};
use omoi_examples::server::{Role, Server, ServerOptions};
use omoi_exec::{Orchestrator, executor_fn};
use omoi_store::SqliteStore;
use serde_json::json;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(10);

fn quick_queue() -> OmoiConfig {
    let mut cfg = OmoiConfig::default();
    cfg.queue.poll_interval = Duration::from_millis(20);
    cfg.queue.reclaim_interval = Duration::from_millis(100);
    cfg
}

/// `target/artifacts/server-page.png` of this workspace (or of `CARGO_TARGET_DIR`).
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("artifacts").join("server-page.png")
}

/// A JS expression: the card of `id` is in the board column `column`.
fn card_in(column: &str, id: impl std::fmt::Display) -> String {
    format!("!!document.querySelector('#board [data-column=\"{column}\"] [data-task-id=\"{id}\"]')")
}

/// A spec whose `explore` passed at once and `prd` after one retry, now awaiting approval.
async fn spec_awaiting_approval(store: &SqliteStore, project: &str) -> omoi_core::SpecId {
    let spec = store.create_spec(NewSpec::new("Rate limiter", "Limit requests per key")).await.unwrap();
    store.assign_owner(Subject::Spec(spec.id), project).await.unwrap();
    store.transition_spec(spec.id, SpecEvent::Start(SpecPhase::Explore)).await.unwrap();
    for (phase, score, attempts) in [(SpecPhase::Explore, 0.91, 1), (SpecPhase::Prd, 0.88, 2)] {
        let checkpoint = PhaseCheckpoint {
            phase,
            output: json!({}),
            score,
            attempts,
            usage: Usage::default(),
            passed_at: chrono::Utc::now(),
            findings: Vec::new(),
        };
        store.save_checkpoint(spec.id, checkpoint).await.unwrap();
    }
    store.transition_spec(spec.id, SpecEvent::Advance).await.unwrap();
    store.transition_spec(spec.id, SpecEvent::RequestApproval).await.unwrap();
    spec.id
}

async fn state_of(store: &SqliteStore, id: omoi_core::TaskId) -> TaskState {
    store.get_task(id).await.unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_board_and_moves_a_task_live_when_its_worker_completes_it() {
    let Some(chromium) = cdp::chromium_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("omoi.db")).await.unwrap();

    // Every run waits for a permit: the test decides when a task completes.
    let gate = Arc::new(Semaphore::new(0));
    let permits = gate.clone();
    let orch = Arc::new(
        Orchestrator::builder(store.clone())
            .config(quick_queue())
            .executor(executor_fn(move |task, _ctx| {
                let permits = permits.clone();
                async move {
                    permits.acquire().await.expect("gate open").forget();
                    Ok(json!({ "done": task.def.title }))
                }
            }))
            .workers(1)
            .concurrency(1)
            .build()
            .unwrap(),
    );
    let schema = NewTask::new("Design the schema");
    let migration = NewTask::new("Write the migration").depends_on([schema.id]);
    let backfill = NewTask::new("Backfill old rows").depends_on([migration.id]);
    // A discovery branch of the schema task, titled with markup that must stay text.
    let hostile = "<img src=x onerror=\"window.__xss=1\"> Fix: <b>null</b> emails";
    let branch = NewTask::new(hostile)
        .depends_on([migration.id])
        .links(TaskLinks { parent_id: Some(schema.id), ..TaskLinks::default() });
    let ids = orch.submit(vec![schema.clone(), migration.clone(), backfill.clone(), branch.clone()]).await.unwrap();

    let server = Server::new(store.clone(), Some(orch.clone()))
        .options(ServerOptions::default())
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let key = server.create_key("demo", Role::ReadOnly).await.unwrap();
    for id in &ids {
        server.assign_task("demo", *id).await.unwrap();
    }
    spec_awaiting_approval(&store, "demo").await;
    orch.start();
    // The worker holds the schema task until the test lets it finish.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !state_of(&store, schema.id).await.is_leased() {
        assert!(tokio::time::Instant::now() < deadline, "the worker never claimed the first task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The stuck detector flagged the running task before the page opened: only the log knows.
    let holder = store.get_task(schema.id).await.unwrap().lease.expect("leased").holder;
    let stuck = Event::MonitorStuckDetected {
        task_id: schema.id,
        agent_id: holder,
        rule: StuckRule::RepeatedFailure,
        repeats: 4,
    };
    store.append_events(vec![stuck]).await.unwrap();

    let mut browser = cdp::Browser::launch(&chromium, 1440, 1000).await;
    browser.navigate(&format!("{}/#key={key}", server.url())).await;
    browser
        .wait_until(
            "window.omoi?.loaded === true && document.querySelectorAll('#board [data-task-id]').length === 4",
            WAIT,
        )
        .await;
    assert_eq!(browser.eval("location.hash").await, json!(""), "the key leaves the address bar");

    // The board shows every task in the column of its state.
    browser.wait_until(&card_in("running", schema.id), WAIT).await;
    for id in [migration.id, backfill.id, branch.id] {
        browser.wait_until(&card_in("waiting", id), WAIT).await;
    }
    assert_eq!(browser.eval("document.querySelector('#counts [data-state=total] .n').textContent").await, json!("4"));
    assert_eq!(browser.eval("document.querySelector('#counts [data-state=waiting] .n').textContent").await, json!("3"));
    // The graph has a node per task; the branch is drawn as one.
    assert_eq!(browser.eval("document.querySelectorAll('#dag .node').length").await, json!(4));
    assert_eq!(browser.eval("document.querySelectorAll('#dag .node.branch').length").await, json!(1));
    assert_eq!(browser.eval("document.querySelectorAll('#dag .edge.branch').length").await, json!(1));
    // Data is text: the hostile title shows verbatim and created no element.
    let branch_text = browser
        .eval(&format!("document.querySelector('#board [data-task-id=\"{}\"] .card-title').textContent", branch.id))
        .await;
    assert!(branch_text.as_str().unwrap().contains(hostile), "{branch_text}");
    assert_eq!(browser.eval("document.querySelectorAll('#board img, #board b, #dag img').length").await, json!(0));
    assert_eq!(browser.eval("window.__xss === undefined").await, json!(true));
    // Clicking a card opens the task: "why is this waiting?" names its unfinished dependency.
    browser.eval(&format!("document.querySelector('#board [data-task-id=\"{}\"]').click()", backfill.id)).await;
    browser
        .wait_until(
            "document.querySelector('#detail .why')?.textContent.includes('waits for Write the migration (waiting)') === true",
            WAIT,
        )
        .await;
    // The worker is listed with its heartbeat health and what it works on.
    browser
        .wait_until(
            "[...document.querySelectorAll('#agents tbody tr')].some(r => r.textContent.includes('Design the schema'))",
            WAIT,
        )
        .await;

    // Spec phases with their scores and retries; the approval is in the attention list.
    browser.wait_until("document.querySelectorAll('#specs .phase.passed').length === 2", WAIT).await;
    let phases = browser.eval("document.getElementById('specs').textContent").await;
    assert!(phases.as_str().unwrap().contains("0.88 · 1 retry"), "{phases}");
    let attention = browser.eval("document.querySelector('#attention .att.approval')?.textContent").await;
    assert!(attention.as_str().unwrap_or_default().contains("Rate limiter"), "{attention}");

    browser
        .wait_until(
            "document.querySelector('#attention .att.stuck')?.textContent.includes('Design the schema: repeated failure ×4') === true",
            WAIT,
        )
        .await;

    // Live: a marker on `window` survives only if the page is never reloaded.
    browser.eval("window.__marker = 'before'").await;
    let seen = browser.eval("window.omoi.eventsSeen").await.as_u64().unwrap();
    gate.add_permits(1);
    browser.wait_until(&card_in("completed", schema.id), WAIT).await;
    browser.wait_until(&card_in("running", migration.id), WAIT).await;
    browser.wait_until("document.querySelector('#counts [data-state=completed] .n').textContent === '1'", WAIT).await;
    // Its run is over, so it is no longer listed as stuck.
    browser.wait_until("document.querySelector('#attention .att.stuck') === null", WAIT).await;
    assert_eq!(browser.eval("window.__marker").await, json!("before"), "the page was reloaded");
    assert!(browser.eval("window.omoi.eventsSeen").await.as_u64().unwrap() > seen, "the move came through the stream");
    assert_eq!(state_of(&store, schema.id).await, TaskState::Completed);
    assert_eq!(browser.eval("document.getElementById('live').dataset.live").await, json!("open"));

    // An intervention recorded now appears on the timeline through the stream.
    let holder = store.get_task(migration.id).await.unwrap().lease.expect("leased").holder;
    let steer = NewIntervention::new(
        holder,
        Some(migration.id),
        Severity::Correction,
        InterventionSource::Guardian,
        "Touch only the migrations folder",
    )
    .because("alignment 0.41");
    store.record_intervention(steer).await.unwrap();
    browser
        .wait_until(
            "document.getElementById('interventions').textContent.includes('Touch only the migrations folder')",
            WAIT,
        )
        .await;
    // The open task shows its agent's steps as they are recorded.
    browser.eval(&format!("document.querySelector('#board [data-task-id=\"{}\"]').click()", migration.id)).await;
    let step = Event::AgentStep {
        task_id: migration.id,
        agent_id: holder,
        step: 1,
        action: "tool_call".into(),
        detail: json!({"tool": "write_file", "path": "migrations/0001.sql"}),
    };
    store.append_events(vec![step]).await.unwrap();
    browser
        .wait_until(
            "document.querySelector('#detail .steps')?.textContent.includes('migrations/0001.sql') === true",
            WAIT,
        )
        .await;
    assert_eq!(browser.eval("window.__marker").await, json!("before"), "the page was reloaded");

    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    let shot = screenshot_path();
    browser.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());

    // A refused key asks for another instead of showing an empty board (a new document: `?again`).
    browser.navigate(&format!("{}/?again#key=omoi_not_a_key", server.url())).await;
    browser.wait_until("document.querySelector('#board form.key-form') !== null", WAIT).await;
    let banner = browser.eval("document.getElementById('banner').textContent").await;
    assert!(banner.as_str().unwrap().contains("refused (401)"), "{banner}");
    browser.close().await;

    gate.add_permits(16);
    server.shutdown().await;
    orch.shutdown().await.unwrap();
}

/// The page's scripts build DOM with `textContent`/attributes only: none of them hands a
/// string to the HTML parser, so no API data can become markup.
#[test]
fn the_page_scripts_never_parse_strings_as_markup() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/server/page");
    let mut scripts = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "js") {
            continue;
        }
        scripts += 1;
        let code = std::fs::read_to_string(&path).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "DOMParser",
            "createContextualFragment",
        ] {
            assert!(!code.contains(sink), "{} uses {sink}", path.display());
        }
    }
    assert!(scripts >= 2, "no page scripts found in {}", dir.display());
}
