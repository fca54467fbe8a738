//! Client builders pointed at a fake, and response bodies in each provider's wire format.

use std::sync::Arc;
use std::time::Duration;

use omoi_exec::llm::{AnthropicBuilder, AnthropicClient, OpenAiBuilder, OpenAiClient};
use serde_json::{Value, json};

use crate::fake::{Fake, RecordingClock};

/// The key every test client uses; it must never show up in output.
pub(crate) const KEY: &str = "sk-test-SECRET-7d1f0c2a9b";

/// An Anthropic client for `fake`: backoff 1 s to 8 s, 3 retries, a 5 s timeout.
pub(crate) fn anthropic(fake: &Fake, clock: &Arc<RecordingClock>) -> AnthropicBuilder {
    AnthropicClient::builder()
        .api_key(KEY)
        .base_url(fake.url())
        .model("claude-sonnet-4-5")
        .clock(clock.clone())
        .backoff_base(Duration::from_secs(1))
        .backoff_max(Duration::from_secs(8))
        .timeout(Duration::from_secs(5))
}

/// An OpenAI client for `fake`, like [`anthropic`].
pub(crate) fn openai(fake: &Fake, clock: &Arc<RecordingClock>) -> OpenAiBuilder {
    OpenAiClient::builder()
        .api_key(KEY)
        .base_url(fake.url())
        .model("gpt-4o-mini")
        .clock(clock.clone())
        .backoff_base(Duration::from_secs(1))
        .backoff_max(Duration::from_secs(8))
        .timeout(Duration::from_secs(5))
}

/// A Messages API response with the given content blocks.
pub(crate) fn anthropic_message(content: Value, stop_reason: &str, input: u64, output: u64) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output},
    })
}

/// A Messages API text answer.
pub(crate) fn anthropic_text(text: &str) -> Value {
    anthropic_message(json!([{"type": "text", "text": text}]), "end_turn", 10, 5)
}

/// A Messages API error body.
pub(crate) fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A chat completion with the given assistant message.
pub(crate) fn openai_completion(message: Value, finish_reason: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    })
}

/// A chat completion text answer.
pub(crate) fn openai_text(text: &str) -> Value {
    openai_completion(json!({"role": "assistant", "content": text, "refusal": null}), "stop", 10, 5)
}
