//! Logs never contain the API key or the prompt, while attempts, statuses, retries and tokens
//! are logged. Its own test binary: it installs the process-wide subscriber that captures logs.

// The shared fake and samples serve every LLM test; this binary uses only some of them.
#![allow(dead_code)]

#[path = "llm/fake.rs"]
mod fake;
#[path = "llm/samples.rs"]
mod samples;

use std::sync::Arc;

use omoi_core::{CompletionRequest, LlmClient, LlmError};
use parking_lot::Mutex;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::fake::{Fake, RecordingClock, Reply};
use crate::samples::{KEY, anthropic, anthropic_error, openai, openai_text};

/// Log output collected in memory.
#[derive(Debug, Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_and_errors_never_contain_the_key_or_the_prompt() {
    // The global subscriber: this binary holds this one test, so nothing else logs into it, and
    // no other test can leave callsites cached as uninteresting (which a thread-scoped
    // subscriber in a shared test binary is exposed to).
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
    let prompt = "PROMPT-CANARY-42: summarise the secret plan";

    // Anthropic: a 429 whose message echoes the key, then a 401 that does too.
    let fake = Fake::start(vec![
        Reply::status(429, anthropic_error("rate_limit_error", &format!("too fast for key {KEY}"))),
        Reply::status(401, json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error"}})),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();
    let error = client.complete(&CompletionRequest::new(prompt)).await.unwrap_err();
    assert!(matches!(&error, LlmError::Auth(m) if m.contains("Incorrect API key provided: [redacted].")), "{error:?}");
    assert!(!format!("{error} {error:?}").contains(KEY));
    assert_eq!(fake.requests()[0].header("x-api-key"), Some(KEY), "the key is sent, just never shown");

    // OpenAI: a success.
    let fake = Fake::start(vec![Reply::ok(openai_text("fine"))]).await;
    let client = openai(&fake, &clock).build().unwrap();
    client.complete(&CompletionRequest::new(prompt)).await.unwrap();

    let logs = buffer.text();
    assert!(logs.contains("llm_request") && logs.contains("llm_complete"), "spans are logged: {logs}");
    assert!(logs.contains("attempt=2") && logs.contains("status=401"), "attempts and statuses are logged: {logs}");
    assert!(logs.contains("retrying"), "{logs}");
    assert!(logs.contains("input_tokens=10") && logs.contains("output_tokens=5"), "tokens are logged: {logs}");
    assert!(!logs.contains(KEY) && !logs.contains("SECRET"), "the key leaked into the logs: {logs}");
    assert!(!logs.contains("PROMPT-CANARY"), "the prompt leaked into the logs: {logs}");
}
