//! Anthropic Messages API: request shape, tool round trips, structured output.

use omoi_core::ports::llm::complete_as;
use omoi_core::{CompletionRequest, ContentBlock, LlmClient, LlmError, Message, Role, StopReason, ToolSpec};
use serde::Deserialize;
use serde_json::json;

use crate::fake::{Fake, RecordingClock, Reply};
use crate::samples::{KEY, anthropic, anthropic_message, anthropic_text};

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct Verdict {
    approved: bool,
    reasons: Vec<String>,
}

fn read_file_tool() -> ToolSpec {
    ToolSpec {
        name: "read_file".into(),
        description: "Read a file of the workspace".into(),
        input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    }
}

#[tokio::test]
async fn anthropic_text_completion_sends_the_documented_request_and_reports_usage_and_cost() {
    let fake = Fake::start(vec![Reply::ok(anthropic_message(
        json!([{"type": "text", "text": "Hello!"}]),
        "end_turn",
        1000,
        500,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();
    let mut request = CompletionRequest::new("Say hello.");
    request.system = Some("You are terse.".into());
    request.temperature = Some(0.25);
    request.max_tokens = 256;

    let response = client.complete(&request).await.unwrap();

    assert_eq!(response.text(), "Hello!");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.model, "claude-sonnet-4-5-20250929");
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (1000, 500));
    // claude-sonnet-4-5: $3 / $15 per million tokens.
    assert!((response.usage.cost_usd - (0.003 + 0.0075)).abs() < 1e-12, "{}", response.usage.cost_usd);
    assert_eq!(client.model(), "claude-sonnet-4-5");

    let sent = fake.only_request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/messages"));
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "You are terse.",
            "temperature": 0.25,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        })
    );
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn anthropic_tool_call_round_trip_sends_the_tool_result_back() {
    let fake = Fake::start(vec![
        Reply::ok(anthropic_message(
            json!([
                {"type": "text", "text": "Let me read it."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "read_file", "input": {"path": "README.md"}},
            ]),
            "tool_use",
            50,
            20,
        )),
        Reply::ok(anthropic_text("The README says hello.")),
    ])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();
    let mut request = CompletionRequest::new("What does the README say?");
    request.tools.push(read_file_tool());

    let first = client.complete(&request).await.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    let calls = first.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].name.as_str(), &calls[0].input), ("read_file", &json!({"path": "README.md"})));

    request.messages.push(first.to_message());
    request.messages.push(Message {
        role: Role::User,
        content: vec![
            ContentBlock::ToolResult { tool_use_id: calls[0].id.clone(), content: "hello".into(), is_error: false },
            ContentBlock::ToolResult { tool_use_id: "toolu_other".into(), content: "denied".into(), is_error: true },
        ],
    });
    let second = client.complete(&request).await.unwrap();
    assert_eq!(second.text(), "The README says hello.");

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].body["tools"],
        json!([{
            "name": "read_file",
            "description": "Read a file of the workspace",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        }])
    );
    assert!(sent[0].body.get("tool_choice").is_none());
    assert_eq!(
        sent[1].body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "What does the README say?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me read it."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "read_file", "input": {"path": "README.md"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "hello", "is_error": false},
                {"type": "tool_result", "tool_use_id": "toolu_other", "content": "denied", "is_error": true},
            ]},
        ])
    );
}

#[tokio::test]
async fn anthropic_structured_output_forces_the_schema_tool_and_complete_as_parses_it() {
    let fake = Fake::start(vec![Reply::ok(anthropic_message(
        json!([{"type": "tool_use", "id": "toolu_1", "name": "verdict", "input": {"approved": true, "reasons": ["tests pass"]}}]),
        "tool_use",
        80,
        30,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();
    let mut request = CompletionRequest::new("Review the change.");
    request.tools.push(read_file_tool());

    let (verdict, response) = complete_as::<Verdict>(&client, request, "verdict").await.unwrap();

    assert_eq!(verdict, Verdict { approved: true, reasons: vec!["tests pass".into()] });
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert!(response.tool_calls().is_empty(), "the forced call is the answer, not a tool call");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&response.text()).unwrap()["approved"], true);

    let body = fake.only_request().body;
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "verdict"}));
    let tools = body["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["name"], "read_file");
    assert_eq!(tools[1]["name"], "verdict");
    let schema = &tools[1]["input_schema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["approved"]["type"], "boolean");
    assert_eq!(schema["properties"]["reasons"]["type"], "array");
    assert!(schema.get("$schema").is_none());
}

#[tokio::test]
async fn anthropic_structured_output_that_does_not_match_is_output_mismatch_with_the_raw_text() {
    let fake = Fake::start(vec![Reply::ok(anthropic_message(
        json!([{"type": "tool_use", "id": "toolu_1", "name": "verdict", "input": {"approved": "maybe"}}]),
        "tool_use",
        80,
        30,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let (error, response) =
        complete_as::<Verdict>(&client, CompletionRequest::new("Review."), "verdict").await.unwrap_err();

    let LlmError::OutputMismatch { raw, reason } = &error else { panic!("{error:?}") };
    assert!(raw.contains("maybe"), "{raw}");
    assert!(reason.contains("approved"), "{reason}");
    assert!(response.is_some_and(|r| r.usage.output_tokens == 30));
    assert_eq!(fake.requests().len(), 1, "a mismatch is the caller's to handle, not retried");
}

#[tokio::test]
async fn anthropic_non_object_structured_output_is_wrapped_and_unwrapped() {
    let fake = Fake::start(vec![Reply::ok(anthropic_message(
        json!([{"type": "tool_use", "id": "toolu_1", "name": "files", "input": {"value": ["a.rs", "b.rs"]}}]),
        "tool_use",
        10,
        10,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let (files, _) =
        complete_as::<Vec<String>>(&client, CompletionRequest::new("Which files?"), "files").await.unwrap();

    assert_eq!(files, vec!["a.rs".to_owned(), "b.rs".to_owned()]);
    let schema = &fake.only_request().body["tools"][0]["input_schema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["value"]));
    assert_eq!(schema["properties"]["value"]["type"], "array");
}

#[tokio::test]
async fn anthropic_structured_output_cut_by_max_tokens_keeps_the_stop_reason() {
    let fake = Fake::start(vec![Reply::ok(anthropic_message(
        json!([{"type": "text", "text": "I was about to"}]),
        "max_tokens",
        10,
        4096,
    ))])
    .await;
    let clock = RecordingClock::new();
    let client = anthropic(&fake, &clock).build().unwrap();

    let (error, response) =
        complete_as::<Verdict>(&client, CompletionRequest::new("Review."), "verdict").await.unwrap_err();

    assert!(matches!(error, LlmError::OutputMismatch { ref raw, .. } if raw == "I was about to"), "{error:?}");
    assert_eq!(response.unwrap().stop_reason, StopReason::MaxTokens);
}
