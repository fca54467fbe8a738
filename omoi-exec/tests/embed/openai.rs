//! `OpenAiEmbedder` against the fake.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::{EmbedError, Embedder};
use omoi_exec::embed::{OpenAiEmbedder, OpenAiEmbedderBuilder};
use serde_json::{Value, json};

use crate::fake::{Fake, RecordingClock, Reply};

fn embedder(fake: &Fake, clock: &Arc<RecordingClock>) -> OpenAiEmbedderBuilder {
    OpenAiEmbedder::builder()
        .api_key("sk-embed-test")
        .base_url(fake.url())
        .model("text-embedding-3-small")
        .dimensions(2)
        .clock(clock.clone())
        .backoff_base(Duration::from_secs(1))
        .backoff_max(Duration::from_secs(8))
        .timeout(Duration::from_secs(5))
}

/// An embeddings answer in OpenAI's documented shape, listing `items` (index, vector) in the
/// order given.
fn answer(items: &[(usize, [f32; 2])]) -> Value {
    json!({
        "object": "list",
        "data": items.iter().map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v})).collect::<Vec<_>>(),
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8}
    })
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

#[tokio::test]
async fn texts_go_in_batches_and_vectors_come_back_in_input_order() {
    let fake = Fake::start(vec![
        Reply::ok(answer(&[(1, [0.0, 1.0]), (0, [1.0, 0.0])])),
        Reply::ok(answer(&[(0, [2.0, 0.0]), (1, [0.0, 2.0])])),
        Reply::ok(answer(&[(0, [3.0, 3.0])])),
    ])
    .await;
    let clock = RecordingClock::new();
    let e = embedder(&fake, &clock).batch_size(2).build().unwrap();

    let vectors = e.embed(&texts(5)).await.unwrap();

    assert_eq!(vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![2.0, 0.0], vec![0.0, 2.0], vec![3.0, 3.0]]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    for (r, inputs) in requests.iter().zip([&["text 0", "text 1"][..], &["text 2", "text 3"], &["text 4"]]) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/embeddings");
        assert_eq!(r.header("authorization"), Some("Bearer sk-embed-test"));
        assert_eq!(r.body, json!({"model": "text-embedding-3-small", "input": inputs, "encoding_format": "float"}));
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 3, "no texts, no request");
}

#[tokio::test]
async fn request_dimensions_asks_the_server_for_shortened_vectors() {
    let fake = Fake::start(vec![Reply::ok(json!({"data": [{"index": 0, "embedding": [0.5, 0.5, 0.5]}]}))]).await;
    let clock = RecordingClock::new();
    let e = embedder(&fake, &clock).request_dimensions(3).build().unwrap();
    assert_eq!(e.dimensions(), 3);
    assert_eq!(e.embed(&texts(1)).await.unwrap(), vec![vec![0.5, 0.5, 0.5]]);
    assert_eq!(fake.only_request().body["dimensions"], 3);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_the_waits_asked_for() {
    let fake = Fake::start(vec![
        Reply::status(429, json!({"error": {"message": "Rate limit reached", "type": "requests"}}))
            .header("retry-after", "2"),
        Reply::status(503, json!({"error": {"message": "overloaded", "type": "server_error"}})),
        Reply::ok(answer(&[(0, [1.0, 0.0])])),
    ])
    .await;
    let clock = RecordingClock::new();
    let e = embedder(&fake, &clock).build().unwrap();

    assert_eq!(e.embed(&texts(1)).await.unwrap(), vec![vec![1.0, 0.0]]);

    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert_eq!(sleeps[0], Duration::from_secs(2));
    assert!(sleeps[1] >= Duration::from_millis(1000) && sleeps[1] <= Duration::from_millis(2000), "{sleeps:?}");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn failures_map_to_typed_errors() {
    let clock = RecordingClock::new();
    let overloaded = Fake::start(vec![Reply::status(500, json!({"error": {"message": "boom"}})); 2]).await;
    let err = embedder(&overloaded, &clock).max_retries(1).build().unwrap().embed(&texts(1)).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Unavailable(m) if m.contains("boom")), "{err}");
    assert!(err.is_retryable());
    assert_eq!(overloaded.requests().len(), 2);

    let too_long = Fake::start(vec![Reply::status(
        400,
        json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error"}}),
    )])
    .await;
    let err = embedder(&too_long, &clock).build().unwrap().embed(&texts(1)).await.unwrap_err();
    assert!(matches!(&err, EmbedError::InvalidInput(m) if m.contains("8192")), "{err}");
    assert_eq!(too_long.requests().len(), 1, "a 400 is not retried");

    let denied = Fake::start(vec![Reply::status(401, json!({"error": {"message": "Incorrect API key"}}))]).await;
    let err = embedder(&denied, &clock).build().unwrap().embed(&texts(1)).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Backend(m) if m.contains("Incorrect API key")), "{err}");
}

#[tokio::test]
async fn vectors_of_another_dimension_or_count_are_refused() {
    let clock = RecordingClock::new();
    let wide = Fake::start(vec![Reply::ok(json!({"data": [{"index": 0, "embedding": [1.0, 0.0, 0.0]}]})); 2]).await;
    let err = embedder(&wide, &clock).max_retries(1).build().unwrap().embed(&texts(1)).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Backend(m) if m.contains("3 dimensions, expected 2")), "{err}");

    let missing = Fake::start(vec![Reply::ok(answer(&[(0, [1.0, 0.0])]))]).await;
    let err = embedder(&missing, &clock).max_retries(0).build().unwrap().embed(&texts(2)).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Backend(m) if m.contains("1 embeddings for 2 inputs")), "{err}");
}

#[tokio::test]
async fn empty_texts_are_refused_before_anything_is_sent() {
    let fake = Fake::start(vec![]).await;
    let clock = RecordingClock::new();
    let e = embedder(&fake, &clock).build().unwrap();
    let err = e.embed(&["fine".to_owned(), "  ".to_owned()]).await.unwrap_err();
    assert_eq!(err, EmbedError::InvalidInput("text 1 is empty".into()));
    assert!(fake.requests().is_empty());
}
