//! The live event stream: a client disconnected while 1,000 events are written receives every
//! one of them exactly once, in order, after reconnecting with `Last-Event-ID`, then the live
//! tail (on SQLite and on Postgres); other projects' events and filtered-out events are not
//! sent.

mod server_common;

use std::collections::BTreeSet;
use std::time::Duration;

use omoi_core::{AgentId, Cursor, Event, EventStore, NewTask, TaskId};
use server_common::{AllPorts, Env, SseReader};

fn step(task: TaskId, agent: AgentId, n: u32) -> Event {
    Event::AgentStep {
        task_id: task,
        agent_id: agent,
        step: n,
        action: format!("step {n}"),
        detail: serde_json::json!({}),
    }
}

/// Appends `n` steps of `mine` (each followed by one of `theirs`, which the client must not
/// see), returning the cursors of `mine`'s.
async fn write<S: AllPorts>(env: &Env<S>, mine: TaskId, theirs: TaskId, from: u32, n: u32) -> Vec<Cursor> {
    let agent = AgentId::new();
    let mut out = Vec::new();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(50) {
        let events: Vec<Event> = chunk.iter().flat_map(|i| [step(mine, agent, *i), step(theirs, agent, *i)]).collect();
        let cursors = env.store.append_events(events).await.unwrap();
        out.extend(cursors.into_iter().step_by(2));
    }
    out
}

async fn read_n(reader: &mut SseReader, n: usize) -> Vec<(u64, String, u32)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let e =
            reader.next(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("only {} of {n} events", got.len()));
        let id: u64 = e.id.expect("id").parse().expect("numeric id");
        let data: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
        assert_eq!(data["cursor"], id, "the SSE id is the event's cursor");
        assert_eq!(e.event.as_deref(), data["event"]["type"].as_str(), "the SSE event is its name");
        got.push((
            id,
            data["event"]["data"]["task_id"].as_str().unwrap().to_owned(),
            data["event"]["data"]["step"].as_u64().unwrap() as u32,
        ));
    }
    got
}

async fn reconnect_receives_every_missed_event_once<S: AllPorts>(env: Env<S>) {
    let mine = NewTask::new("mine");
    let theirs = NewTask::new("theirs");
    let (m, t) = (mine.id, theirs.id);
    env.insert_owned("alpha", vec![mine]).await;
    env.insert_owned("beta", vec![theirs]).await;
    let url = format!("{}/api/events", env.server.url());

    // Connected: the first 10.
    let mut reader = SseReader::open(&env.http, &url, &env.admin, None).await;
    let first = write(&env, m, t, 0, 10).await;
    let got = read_n(&mut reader, 10).await;
    assert_eq!(got.iter().map(|g| Cursor(g.0)).collect::<Vec<_>>(), first);
    let last = got.last().unwrap().0.to_string();
    drop(reader);

    // Disconnected: 1,000 more (and 1,000 of another project's).
    let missed = write(&env, m, t, 10, 1000).await;

    // Reconnected after the last id seen: the 1,000, then 100 written live.
    let mut reader = SseReader::open(&env.http, &url, &env.admin, Some(&last)).await;
    let replay = read_n(&mut reader, 1000).await;
    let live = write(&env, m, t, 1010, 100).await;
    let tail = read_n(&mut reader, 100).await;
    let all: Vec<_> = replay.iter().chain(&tail).collect();
    let cursors: Vec<Cursor> = all.iter().map(|g| Cursor(g.0)).collect();
    let want: Vec<Cursor> = missed.iter().chain(&live).copied().collect();
    assert_eq!(cursors, want, "every missed and live event once, in order");
    assert!(all.iter().all(|g| g.1 == m.to_string()), "only the caller's project's events");
    let steps: Vec<u32> = all.iter().map(|g| g.2).collect();
    assert_eq!(steps, (10..1110).collect::<Vec<_>>());
    assert_eq!(cursors.iter().collect::<BTreeSet<_>>().len(), 1100, "no repeats");
    // Nothing else arrives.
    assert!(reader.next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_client_disconnected_while_1000_events_are_written_receives_each_once_after_reconnecting() {
    reconnect_receives_every_missed_event_once(server_common::sqlite(Vec::new()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_client_disconnected_while_1000_events_are_written_receives_each_once_after_reconnecting() {
    let Some(env) = server_common::postgres().await else { return };
    let store = env.store.clone();
    reconnect_receives_every_missed_event_once(env).await;
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_the_key_in_the_query_and_after_select_what_is_sent() {
    let env = server_common::sqlite(Vec::new()).await;
    let a = NewTask::new("a");
    let b = NewTask::new("b");
    let (ia, ib) = (a.id, b.id);
    env.insert_owned("alpha", vec![a, b]).await;
    let agent = AgentId::new();
    let cursors =
        env.store.append_events(vec![step(ia, agent, 1), step(ib, agent, 2), step(ia, agent, 3)]).await.unwrap();

    // `?key=` (what EventSource uses), `?after=` and `?task=`.
    let url = format!("{}/api/events?task={ia}&after=0&key={}", env.server.url(), env.admin);
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    drop(resp);
    let url = format!("{}/api/events?task={ia}&after=0", env.server.url());
    let mut reader = SseReader::open(&env.http, &url, &env.admin, None).await;
    let mut seen = Vec::new();
    while let Some(e) = reader.next(Duration::from_millis(500)).await {
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        if data["event"]["type"] == "agent.step" {
            seen.push(Cursor(e.id.unwrap().parse().unwrap()));
        } else {
            assert_eq!(data["event"]["data"]["task_id"], ia.to_string(), "{data}");
        }
    }
    assert_eq!(seen, vec![cursors[0], cursors[2]]);

    // `?agent=`: an agent's events only.
    let other = AgentId::new();
    env.store.append_events(vec![step(ia, other, 4)]).await.unwrap();
    let url = format!("{}/api/events?agent={other}&after=0", env.server.url());
    let mut reader = SseReader::open(&env.http, &url, &env.admin, None).await;
    let e = reader.next(Duration::from_secs(5)).await.expect("the other agent's step");
    assert!(e.data.contains(&other.to_string()));
    assert!(reader.next(Duration::from_millis(300)).await.is_none());

    // The key in the query works only on the stream.
    let (status, _) = env.call(reqwest::Method::GET, &format!("/api/tasks?key={}", env.admin), None, None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
}
