//! OpenAI-compatible chat completions: request shape, tool round trips, structured output,
//! local servers.

use std::collections::BTreeMap;

use omoi_core::ports::llm::complete_as;
use omoi_core::{CompletionRequest, ContentBlock, LlmClient, LlmError, Message, Role, StopReason, ToolSpec};
use omoi_exec::llm::{MaxTokensParam, OpenAiClient};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fake::{Fake, RecordingClock, Reply};
use crate::samples::{KEY, openai, openai_completion, openai_text};

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct Verdict {
    approved: bool,
    reasons: Vec<String>,
    note: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct Tally {
    counts: BTreeMap<String, u32>,
}

/// Every object in `schema` is closed and requires all its properties.
fn strict_form(schema: &Value) -> bool {
    match schema {
        Value::Object(o) => {
            let closed = !o.contains_key("properties")
                || (o["additionalProperties"] == json!(false)
                    && o["required"].as_array().map(Vec::len) == o["properties"].as_object().map(|p| p.len()));
            closed && o.values().all(strict_form)
        }
        Value::Array(a) => a.iter().all(strict_form),
        _ => true,
    }
}

#[tokio::test]
async fn openai_text_completion_sends_bearer_auth_and_reports_usage_and_cost() {
    let fake = Fake::start(vec![Reply::ok(openai_completion(
        json!({"role": "assistant", "content": "Hello!", "refusal": null}),
        "stop",
        2000,
        1000,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();
    let mut request = CompletionRequest::new("Say hello.");
    request.system = Some("You are terse.".into());
    request.max_tokens = 128;

    let response = client.complete(&request).await.unwrap();

    assert_eq!(response.text(), "Hello!");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.model, "gpt-4o-mini-2024-07-18");
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (2000, 1000));
    // gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert!((response.usage.cost_usd - (0.0003 + 0.0006)).abs() < 1e-12, "{}", response.usage.cost_usd);

    let sent = fake.only_request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 128,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello."},
            ],
        })
    );
}

#[tokio::test]
async fn openai_tool_call_round_trip_sends_a_tool_message() {
    let fake = Fake::start(vec![
        Reply::ok(openai_completion(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_abc123", "type": "function",
                "function": {"name": "read_file", "arguments": "{\"path\":\"README.md\"}"},
            }]}),
            "tool_calls",
            40,
            15,
        )),
        Reply::ok(openai_text("The README says hello.")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();
    let mut request = CompletionRequest::new("What does the README say?");
    request.tools.push(ToolSpec {
        name: "read_file".into(),
        description: "Read a file".into(),
        input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    });

    let first = client.complete(&request).await.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    let calls = first.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str(), &calls[0].input),
        ("call_abc123", "read_file", &json!({"path": "README.md"}))
    );

    request.messages.push(first.to_message());
    request.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: calls[0].id.clone(),
            content: "hello".into(),
            is_error: false,
        }],
    });
    let second = client.complete(&request).await.unwrap();
    assert_eq!(second.text(), "The README says hello.");

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].body["tools"],
        json!([{"type": "function", "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        }}])
    );
    let messages = sent[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], Value::Null);
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_abc123");
    assert_eq!(messages[1]["tool_calls"][0]["type"], "function");
    assert_eq!(messages[1]["tool_calls"][0]["function"]["name"], "read_file");
    let arguments =
        messages[1]["tool_calls"][0]["function"]["arguments"].as_str().expect("arguments are a JSON string");
    assert_eq!(serde_json::from_str::<Value>(arguments).unwrap(), json!({"path": "README.md"}));
    assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "call_abc123", "content": "hello"}));
}

#[tokio::test]
async fn openai_structured_output_sends_a_strict_json_schema_and_complete_as_parses_it() {
    let fake =
        Fake::start(vec![Reply::ok(openai_text(r#"{"approved":true,"reasons":["tests pass"],"note":null}"#))]).await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();

    let (verdict, _) = complete_as::<Verdict>(&client, CompletionRequest::new("Review."), "verdict").await.unwrap();

    assert_eq!(verdict, Verdict { approved: true, reasons: vec!["tests pass".into()], note: None });
    let format = &fake.only_request().body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "verdict");
    assert_eq!(format["json_schema"]["strict"], true);
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    let mut required: Vec<&str> = schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    required.sort_unstable();
    assert_eq!(
        required,
        ["approved", "note", "reasons"],
        "the optional field is required (and nullable) in strict mode"
    );
    assert!(strict_form(schema), "{schema:#}");
}

#[tokio::test]
async fn openai_schema_without_a_strict_form_is_sent_with_strict_false() {
    let fake = Fake::start(vec![Reply::ok(openai_text(r#"{"counts":{"a":2}}"#))]).await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();

    let (tally, _) = complete_as::<Tally>(&client, CompletionRequest::new("Count."), "tally").await.unwrap();

    assert_eq!(tally.counts["a"], 2);
    let format = &fake.only_request().body["response_format"]["json_schema"];
    assert_eq!(format["strict"], false);
    assert!(format["schema"]["properties"]["counts"]["additionalProperties"].is_object(), "the map stays open");
}

#[tokio::test]
async fn openai_strict_output_can_be_turned_off() {
    let fake = Fake::start(vec![Reply::ok(openai_text(r#"{"approved":false,"reasons":[]}"#))]).await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).strict_output(false).build().unwrap();

    let (verdict, _) = complete_as::<Verdict>(&client, CompletionRequest::new("Review."), "verdict").await.unwrap();

    assert!(!verdict.approved);
    let format = &fake.only_request().body["response_format"]["json_schema"];
    assert_eq!(format["strict"], false);
    assert!(format["schema"].get("additionalProperties").is_none());
}

#[tokio::test]
async fn openai_structured_output_that_does_not_match_is_output_mismatch_with_the_raw_text() {
    let fake = Fake::start(vec![Reply::ok(openai_completion(
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
        "stop",
        10,
        8,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).build().unwrap();

    let (error, _) = complete_as::<Verdict>(&client, CompletionRequest::new("Review."), "verdict").await.unwrap_err();

    assert!(matches!(&error, LlmError::OutputMismatch { raw, .. } if raw == "I can't help with that."), "{error:?}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn openai_malformed_tool_arguments_are_a_malformed_response_and_retried() {
    let bad = openai_completion(
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\": \"READ"},
        }]}),
        "tool_calls",
        10,
        5,
    );
    let fake = Fake::start(vec![Reply::ok(bad.clone()), Reply::ok(bad)]).await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).max_retries(1).build().unwrap();

    let error = client.complete(&CompletionRequest::new("Read it.")).await.unwrap_err();

    let LlmError::MalformedResponse { raw, reason } = &error else { panic!("{error:?}") };
    assert!(reason.contains("read_file") && reason.contains("not valid JSON"), "{reason}");
    assert!(raw.contains("READ"), "{raw}");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(clock.sleeps().len(), 1);
}

#[tokio::test]
async fn openai_keyless_client_against_a_local_server_sends_no_auth_header() {
    // Ollama's answer to /v1/chat/completions.
    let fake = Fake::start(vec![Reply::ok(json!({
        "id": "chatcmpl-288", "object": "chat.completion", "created": 1741569952, "model": "llama3.1",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29},
    }))])
    .await;
    let client = OpenAiClient::builder()
        .base_url(format!("{}/v1/", fake.url()))
        .model("llama3.1")
        .clock(RecordingClock::new())
        .build()
        .unwrap();

    let response = client.complete(&CompletionRequest::new("Say hi.")).await.unwrap();

    assert_eq!(response.text(), "Hi.");
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (26, 3));
    assert_eq!(response.usage.cost_usd, 0.0, "a model missing from the price table costs nothing");
    let sent = fake.only_request();
    assert_eq!(sent.path, "/v1/chat/completions", "a base URL ending in /v1 gets no second /v1");
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["model"], "llama3.1");
    assert_eq!(sent.body["max_tokens"], 4096, "compatible servers get `max_tokens`");
}

#[tokio::test]
async fn openai_max_completion_tokens_can_be_chosen() {
    let fake = Fake::start(vec![Reply::ok(openai_text("ok"))]).await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).max_tokens_param(MaxTokensParam::MaxCompletionTokens).build().unwrap();

    client.complete(&CompletionRequest::new("x")).await.unwrap();

    let body = fake.only_request().body;
    assert_eq!(body["max_completion_tokens"], 4096);
    assert!(body.get("max_tokens").is_none());
}

#[tokio::test]
async fn openai_string_error_body_from_a_local_server_is_reported_and_not_retried() {
    let fake =
        Fake::start(vec![Reply::status(404, json!({"error": "model \"llama9\" not found, try pulling it first"}))])
            .await;
    let clock = RecordingClock::new();
    let client = openai(&fake, &clock).model("llama9").build().unwrap();

    let error = client.complete(&CompletionRequest::new("x")).await.unwrap_err();

    assert_eq!(
        error,
        LlmError::InvalidRequest { status: 404, message: "model \"llama9\" not found, try pulling it first".into() }
    );
    assert_eq!(fake.requests().len(), 1);
    assert!(clock.sleeps().is_empty());
}
