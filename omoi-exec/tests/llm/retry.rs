//! Retries: which failures are retried, how long the client waits, and what it reports when
//! it gives up.

use std::time::Duration;

use omoi_core::{CompletionRequest, LlmClient, LlmError};
use serde_json::json;

use crate::fake::{Fake, RecordingClock, Reply};
use crate::samples::{anthropic, anthropic_error, anthropic_text, openai, openai_text};

fn request() -> CompletionRequest {
    CompletionRequest::new("Hello?")
}

fn within(d: Duration, lo_ms: u64, hi_ms: u64) -> bool {
    d >= Duration::from_millis(lo_ms) && d <= Duration::from_millis(hi_ms)
}

#[tokio::test]
async fn rate_limit_429_waits_the_retry_after_seconds_then_succeeds() {
    let fake = Fake::start(vec![
        Reply::status(
            429,
            anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
        )
        .header("retry-after", "7"),
        Reply::ok(anthropic_text("finally")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let response = client.complete(&request()).await.unwrap();

    assert_eq!(response.text(), "finally");
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(7)]);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_retry_after_as_an_http_date_is_honoured() {
    let at = RecordingClock::epoch() + chrono::Duration::seconds(12);
    let fake = Fake::start(vec![
        Reply::status(429, anthropic_error("rate_limit_error", "slow down"))
            .header("retry-after", at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        Reply::ok(anthropic_text("ok")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    client.complete(&request()).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(12)]);
}

#[tokio::test]
async fn retry_after_longer_than_the_maximum_is_capped() {
    let fake = Fake::start(vec![
        Reply::status(429, anthropic_error("rate_limit_error", "come back in an hour")).header("retry-after", "3600"),
        Reply::ok(anthropic_text("ok")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retry_after(Duration::from_secs(20)).build().unwrap();

    client.complete(&request()).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(20)]);
}

#[tokio::test]
async fn openai_rate_limit_honours_retry_after_ms() {
    let fake = Fake::start(vec![
        Reply::status(
            429,
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
        )
        .header("retry-after-ms", "1500")
        .header("retry-after", "2"),
        Reply::ok(openai_text("ok")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();

    client.complete(&request()).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_millis(1500)]);
}

#[tokio::test]
async fn server_error_500_then_success_backs_off_with_jitter() {
    let fake = Fake::start(vec![
        Reply::status(500, anthropic_error("api_error", "Internal server error")),
        Reply::ok(anthropic_text("recovered")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let response = client.complete(&request()).await.unwrap();

    assert_eq!(response.text(), "recovered");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(within(sleeps[0], 500, 1000), "first backoff is half the 1 s base plus jitter: {sleeps:?}");
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retried() {
    let fake = Fake::start(vec![
        Reply::status(529, anthropic_error("overloaded_error", "Overloaded")),
        Reply::status(529, anthropic_error("overloaded_error", "Overloaded")),
        Reply::ok(anthropic_text("there you go")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let response = client.complete(&request()).await.unwrap();

    assert_eq!(response.text(), "there you go");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(within(sleeps[0], 500, 1000) && within(sleeps[1], 1000, 2000), "exponential backoff: {sleeps:?}");
}

#[tokio::test]
async fn permanent_client_errors_are_not_retried() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
    ] {
        let fake = Fake::start(vec![
            Reply::status(status, anthropic_error(kind, "messages: field required")),
            Reply::ok(anthropic_text("must not be reached")),
        ])
        .await;
        let clock = RecordingClock::new();
        let client = anthropic(&fake, &clock).build().unwrap();

        let error = client.complete(&request()).await.unwrap_err();

        assert_eq!(error, LlmError::InvalidRequest { status, message: format!("{kind}: messages: field required") });
        assert!(!error.is_retryable());
        assert_eq!(fake.requests().len(), 1, "status {status} must not be retried");
        assert!(clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn auth_errors_401_and_403_are_not_retried() {
    for (status, kind) in [(401, "authentication_error"), (403, "permission_error")] {
        let fake = Fake::start(vec![
            Reply::status(status, anthropic_error(kind, "invalid x-api-key")),
            Reply::ok(anthropic_text("must not be reached")),
        ])
        .await;
        let clock = RecordingClock::new();
        let client = anthropic(&fake, &clock).build().unwrap();

        let error = client.complete(&request()).await.unwrap_err();

        assert_eq!(error, LlmError::Auth(format!("{kind}: invalid x-api-key")));
        assert_eq!(fake.requests().len(), 1);
        assert!(clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn exhausted_retries_return_the_last_retryable_error() {
    let fake = Fake::start(vec![
        Reply::status(500, anthropic_error("api_error", "first")),
        Reply::status(429, anthropic_error("rate_limit_error", "second")),
        Reply::status(503, anthropic_error("api_error", "third")),
        Reply::ok(anthropic_text("must not be reached")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retries(2).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    assert_eq!(error, LlmError::Server { status: 503, message: "api_error: third".into() });
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(clock.sleeps().len(), 2);
}

#[tokio::test]
async fn backoff_is_capped_by_the_maximum() {
    let fake = Fake::start((0..6).map(|_| Reply::status(502, json!({}))).collect()).await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retries(5).backoff_max(Duration::from_secs(3)).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    assert!(matches!(error, LlmError::Server { status: 502, .. }), "{error:?}");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 5);
    assert!(within(sleeps[0], 500, 1000) && within(sleeps[1], 1000, 2000), "{sleeps:?}");
    assert!(sleeps[2..].iter().all(|d| within(*d, 1500, 3000)), "capped at 3 s: {sleeps:?}");
}

#[tokio::test]
async fn malformed_json_body_is_a_malformed_response_and_retried() {
    let fake = Fake::start(vec![Reply::raw(200, "<html>bad gateway</html>"), Reply::ok(anthropic_text("ok"))]).await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    assert_eq!(client.complete(&request()).await.unwrap().text(), "ok");
    assert_eq!(fake.requests().len(), 2);

    let fake =
        Fake::start(vec![Reply::raw(200, "<html>bad gateway</html>"), Reply::ok(json!({"content": "nope"}))]).await;
    let client = anthropic(&fake, &clock).max_retries(1).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    let LlmError::MalformedResponse { raw, reason } = &error else { panic!("{error:?}") };
    assert_eq!(raw, r#"{"content":"nope"}"#, "the last attempt's body");
    assert!(reason.contains("Anthropic Messages"), "{reason}");
}

#[tokio::test]
async fn a_huge_malformed_body_is_cut_to_a_few_kb_in_the_error() {
    let fake = Fake::start(vec![Reply::raw(200, "x".repeat(200_000))]).await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retries(0).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    let LlmError::MalformedResponse { raw, .. } = &error else { panic!("{error:?}") };
    assert!(raw.len() < 5_000, "{}", raw.len());
    assert!(raw.contains("200000 bytes"), "says how long the body was");
}

#[tokio::test]
async fn body_cut_mid_json_is_a_malformed_response_and_retried() {
    let full = anthropic_text("complete").to_string();
    let cut = full[..full.len() / 2].to_owned();
    let fake = Fake::start(vec![Reply::raw(200, cut.clone()), Reply::raw(200, cut)]).await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retries(1).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    assert!(matches!(&error, LlmError::MalformedResponse { reason, .. } if reason.contains("EOF")), "{error:?}");
    assert_eq!(fake.requests().len(), 2);

    let fake = Fake::start(vec![Reply::raw(200, &full[..40]), Reply::raw(200, full.clone())]).await;
    let client = anthropic(&fake, &clock).build().unwrap();
    assert_eq!(client.complete(&request()).await.unwrap().text(), "complete");
}

#[tokio::test]
async fn connection_broken_mid_body_is_a_transport_error_and_retried() {
    let full = anthropic_text("complete").to_string();
    let fake = Fake::start(vec![
        Reply::BrokenStream { partial: full[..30].to_owned() },
        Reply::BrokenStream { partial: full[..30].to_owned() },
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).max_retries(1).build().unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    assert!(matches!(&error, LlmError::Transport(m) if m.contains("reading the response body")), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(fake.requests().len(), 2);

    let fake = Fake::start(vec![Reply::BrokenStream { partial: full[..30].to_owned() }, Reply::raw(200, full)]).await;
    let client = anthropic(&fake, &clock).build().unwrap();
    assert_eq!(client.complete(&request()).await.unwrap().text(), "complete");
}

#[tokio::test]
async fn body_shorter_than_its_content_length_is_a_transport_error_and_retried() {
    let full = openai_text("complete").to_string();
    let fake = Fake::start(vec![
        Reply::ShortBody { partial: full[..50].to_owned(), declared: full.len() },
        Reply::raw(200, full),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();

    assert_eq!(client.complete(&request()).await.unwrap().text(), "complete");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(clock.sleeps().len(), 1);

    let fake = Fake::start(vec![Reply::ShortBody { partial: "{\"choices\":".into(), declared: 500 }]).await;
    let client = openai(&fake, &clock).max_retries(0).build().unwrap();
    let error = client.complete(&request()).await.unwrap_err();
    assert!(matches!(&error, LlmError::Transport(m) if m.contains("reading the response body")), "{error:?}");
}

#[tokio::test]
async fn timeout_is_reported_and_retried() {
    let fake = Fake::start(vec![
        Reply::ok(anthropic_text("too late")).after(Duration::from_secs(5)),
        Reply::ok(anthropic_text("in time")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).timeout(Duration::from_millis(800)).build().unwrap();

    assert_eq!(client.complete(&request()).await.unwrap().text(), "in time");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(clock.sleeps().len(), 1);

    let fake = Fake::start(vec![
        Reply::ok(anthropic_text("too late")).after(Duration::from_secs(5)),
        Reply::ok(anthropic_text("too late")).after(Duration::from_secs(5)),
    ])
    .await;
    let client = anthropic(&fake, &clock).timeout(Duration::from_millis(800)).max_retries(1).build().unwrap();
    let error = client.complete(&request()).await.unwrap_err();
    assert_eq!(error, LlmError::Timeout(Duration::from_millis(800)));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_and_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let clock = RecordingClock::new();
    let client = omoi_exec::llm::AnthropicClient::builder()
        .api_key("k")
        .base_url(url)
        .clock(clock.clone())
        .max_retries(2)
        .build()
        .unwrap();

    let error = client.complete(&request()).await.unwrap_err();

    assert!(matches!(&error, LlmError::Transport(m) if m.contains("sending the request failed")), "{error:?}");
    assert_eq!(clock.sleeps().len(), 2);
}
