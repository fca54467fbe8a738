//! The chat completions wire format: request bodies out, response bodies in.

use omoi_core::{CompletionRequest, CompletionResponse, ContentBlock, LlmError, Role, StopReason, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MaxTokensParam;
use crate::llm::price::CostMeter;
use crate::llm::schema::{PreparedSchema, strict};
use crate::llm::transport::{parse_body, truncate_raw};

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum ChatMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: String,
    },
    Assistant {
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<WireToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: String,
    },
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: String,
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Debug, Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Debug, Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'a str,
    schema: Value,
    strict: bool,
}

/// Settings that shape a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) max_tokens: MaxTokensParam,
    pub(crate) strict_output: bool,
}

/// The request body. Tool results become `tool` messages (ahead of the same message's text,
/// since they must follow the assistant's `tool_calls`); a failed call's content starts with
/// `Error: `. A tool call in a user message has no chat-completions form and is refused.
pub(crate) fn request<'a>(
    model: &'a str,
    req: &'a CompletionRequest,
    output: Option<&'a PreparedSchema>,
    shape: Shape,
) -> Result<ChatRequest<'a>, LlmError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(ChatMessage::System { content: system });
    }
    for (i, m) in req.messages.iter().enumerate() {
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in &m.content {
            match block {
                ContentBlock::Text { text: t } => text.push_str(t),
                ContentBlock::ToolUse { id, name, input } if m.role == Role::Assistant => {
                    tool_calls.push(WireToolCall {
                        id,
                        kind: "function",
                        function: WireFunctionCall { name, arguments: input.to_string() },
                    });
                }
                ContentBlock::ToolUse { name, .. } => {
                    return Err(LlmError::InvalidRequest {
                        status: 400,
                        message: format!(
                            "message {i}: a tool call ({name}) in a user message cannot be sent as a chat completion"
                        ),
                    });
                }
                ContentBlock::ToolResult { tool_use_id, content, is_error } => {
                    let content = if *is_error { format!("Error: {content}") } else { content.clone() };
                    messages.push(ChatMessage::Tool { tool_call_id: tool_use_id, content });
                }
            }
        }
        match m.role {
            Role::Assistant if !tool_calls.is_empty() => {
                messages.push(ChatMessage::Assistant { content: (!text.is_empty()).then_some(text), tool_calls })
            }
            Role::Assistant => messages.push(ChatMessage::Assistant { content: Some(text), tool_calls }),
            Role::User if !text.is_empty() => messages.push(ChatMessage::User { content: text }),
            Role::User => {}
        }
    }
    let tools = req
        .tools
        .iter()
        .map(|t| WireTool {
            kind: "function",
            function: WireFunction { name: &t.name, description: &t.description, parameters: &t.input_schema },
        })
        .collect();
    let response_format = output.map(|o| {
        let strict_schema = if shape.strict_output { strict(&o.schema) } else { None };
        let strict = strict_schema.is_some();
        let schema = strict_schema.unwrap_or_else(|| o.schema.clone());
        ResponseFormat { kind: "json_schema", json_schema: JsonSchemaFormat { name: &o.name, schema, strict } }
    });
    let (max_tokens, max_completion_tokens) = match shape.max_tokens {
        MaxTokensParam::MaxTokens => (Some(req.max_tokens), None),
        MaxTokensParam::MaxCompletionTokens => (None, Some(req.max_tokens)),
    };
    Ok(ChatRequest {
        model,
        messages,
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        tools,
        response_format,
    })
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ResponseMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseToolCall>>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseToolCall {
    #[serde(default)]
    id: Option<String>,
    function: ResponseFunction,
}

#[derive(Debug, Deserialize)]
struct ResponseFunction {
    name: String,
    /// A JSON string per the API; some servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Parses a 2xx body: `choices[0].message` (content or refusal as a text block, then the tool
/// calls), `finish_reason` and `usage` (zero when a server omits it). Arguments that are not
/// valid JSON are [`LlmError::MalformedResponse`]; an empty arguments string means `{}`.
pub(crate) fn response(
    body: &[u8],
    output: Option<&PreparedSchema>,
    fallback_model: &str,
    meter: &CostMeter,
) -> Result<CompletionResponse, LlmError> {
    let wire: ChatResponse = parse_body(body, "chat completions")?;
    let malformed = |reason: String| LlmError::MalformedResponse { raw: truncate_raw(body), reason };
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(malformed("the response has no choices".into()));
    };
    let mut content = Vec::new();
    let text = choice.message.content.filter(|t| !t.is_empty()).or(choice.message.refusal);
    if let Some(text) = text {
        let text = match output {
            Some(schema) => schema.unwrap_text(text),
            None => text,
        };
        content.push(ContentBlock::Text { text });
    }
    for (i, call) in choice.message.tool_calls.unwrap_or_default().into_iter().enumerate() {
        let input = match call.function.arguments {
            Value::String(s) if s.trim().is_empty() => Value::Object(Default::default()),
            Value::String(s) => serde_json::from_str(&s).map_err(|e| {
                malformed(format!("tool call {i} ({}) has arguments that are not valid JSON: {e}", call.function.name))
            })?,
            Value::Null => Value::Object(Default::default()),
            other => other,
        };
        let id = call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{i}"));
        content.push(ContentBlock::ToolUse { id, name: call.function.name, input });
    }
    let has_calls = content.iter().any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    let stop_reason = match choice.finish_reason.as_deref() {
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("stop") | None if has_calls => StopReason::ToolUse,
        Some("stop") => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        _ => StopReason::Other,
    };
    let (input_tokens, output_tokens) = wire.usage.map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
    let model = wire.model.filter(|m| !m.is_empty()).unwrap_or_else(|| fallback_model.to_owned());
    let cost_usd = meter.cost(&model, input_tokens, output_tokens);
    Ok(CompletionResponse { content, stop_reason, usage: Usage { input_tokens, output_tokens, cost_usd }, model })
}

#[cfg(test)]
mod tests {
    use omoi_core::Message;
    use serde_json::json;

    use super::*;
    use crate::llm::PriceTable;

    const SHAPE: Shape = Shape { max_tokens: MaxTokensParam::MaxTokens, strict_output: true };

    #[test]
    fn tool_results_precede_the_same_messages_text() {
        let mut req = CompletionRequest::new("go");
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text { text: "calling".into() },
                ContentBlock::ToolUse { id: "c1".into(), name: "ls".into(), input: json!({}) },
            ],
        });
        req.messages.push(Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult { tool_use_id: "c1".into(), content: "denied".into(), is_error: true },
                ContentBlock::Text { text: "and now?".into() },
            ],
        });
        let body = serde_json::to_value(request("m", &req, None, SHAPE).unwrap()).unwrap();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "calling", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "Error: denied"},
                {"role": "user", "content": "and now?"},
            ])
        );
        assert_eq!(body["max_tokens"], 4096);
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn a_tool_call_in_a_user_message_is_refused() {
        let mut req = CompletionRequest::new("x");
        req.messages[0].content.push(ContentBlock::ToolUse { id: "c".into(), name: "ls".into(), input: json!({}) });
        assert!(matches!(request("m", &req, None, SHAPE), Err(LlmError::InvalidRequest { status: 400, .. })));
    }

    #[test]
    fn object_arguments_empty_arguments_and_missing_ids_are_tolerated() {
        let body = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"function": {"name": "a", "arguments": {"x": 1}}},
            {"id": "k", "function": {"name": "b", "arguments": ""}},
        ]}, "finish_reason": "stop"}]});
        let r = response(body.to_string().as_bytes(), None, "llama3", &CostMeter::new(PriceTable::empty())).unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        let calls = r.tool_calls();
        assert_eq!((calls[0].id.as_str(), &calls[0].input), ("call_0", &json!({"x": 1})));
        assert_eq!((calls[1].id.as_str(), &calls[1].input), ("k", &json!({})));
        assert_eq!((r.usage.input_tokens, r.model.as_str()), (0, "llama3"));
    }

    #[test]
    fn no_choices_is_malformed() {
        let r = response(br#"{"choices": []}"#, None, "m", &CostMeter::new(PriceTable::empty()));
        assert!(matches!(r, Err(LlmError::MalformedResponse { reason, .. }) if reason.contains("no choices")));
    }
}
