//! The Messages API wire format: request bodies out, response bodies in.

use omoi_core::{CompletionRequest, CompletionResponse, ContentBlock, LlmError, StopReason, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::llm::price::CostMeter;
use crate::llm::schema::PreparedSchema;
use crate::llm::transport::parse_body;

/// What the forced output tool tells the model.
const OUTPUT_TOOL_DESCRIPTION: &str =
    "Give your final answer by calling this tool exactly once; its input is the answer, following the schema.";

#[derive(Debug, Serialize)]
pub(crate) struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireBlock<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: &'a Value },
    ToolResult { tool_use_id: &'a str, content: &'a str, is_error: bool },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

#[derive(Debug, Serialize)]
struct ToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

/// The request body. With `output`, the schema becomes one more tool and `tool_choice`
/// forces the model to call it.
pub(crate) fn request<'a>(
    model: &'a str,
    req: &'a CompletionRequest,
    output: Option<&'a PreparedSchema>,
) -> MessagesRequest<'a> {
    let messages = req
        .messages
        .iter()
        .map(|m| WireMessage {
            role: m.role.as_str(),
            content: m
                .content
                .iter()
                .map(|b| match b {
                    ContentBlock::Text { text } => WireBlock::Text { text },
                    ContentBlock::ToolUse { id, name, input } => WireBlock::ToolUse { id, name, input },
                    ContentBlock::ToolResult { tool_use_id, content, is_error } => {
                        WireBlock::ToolResult { tool_use_id, content, is_error: *is_error }
                    }
                })
                .collect(),
        })
        .collect();
    let mut tools: Vec<WireTool<'a>> = req
        .tools
        .iter()
        .map(|t| WireTool { name: &t.name, description: &t.description, input_schema: &t.input_schema })
        .collect();
    let tool_choice = output.map(|o| {
        tools.push(WireTool { name: &o.name, description: OUTPUT_TOOL_DESCRIPTION, input_schema: &o.schema });
        ToolChoice { kind: "tool", name: &o.name }
    });
    MessagesRequest {
        model,
        max_tokens: req.max_tokens,
        system: req.system.as_deref(),
        messages,
        tools,
        tool_choice,
        temperature: req.temperature,
    }
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    content: Vec<ResponseBlock>,
    stop_reason: Option<String>,
    usage: ResponseUsage,
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking, server tools and block types newer than this adapter.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ResponseUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Parses a 2xx body. With `output`, the forced tool call becomes the answer: one text block
/// holding its input as JSON, and `end_turn` as the stop reason.
pub(crate) fn response(
    body: &[u8],
    output: Option<&PreparedSchema>,
    fallback_model: &str,
    meter: &CostMeter,
) -> Result<CompletionResponse, LlmError> {
    let wire: MessagesResponse = parse_body(body, "Anthropic Messages")?;
    let mut stop_reason = match wire.stop_reason.as_deref() {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        _ => StopReason::Other,
    };
    let mut content: Vec<ContentBlock> = wire
        .content
        .into_iter()
        .filter_map(|b| match b {
            ResponseBlock::Text { text } => Some(ContentBlock::Text { text }),
            ResponseBlock::ToolUse { id, name, input } => Some(ContentBlock::ToolUse { id, name, input }),
            ResponseBlock::Other => None,
        })
        .collect();
    if let Some(schema) = output {
        let answer = content.iter().find_map(|b| match b {
            ContentBlock::ToolUse { name, input, .. } if *name == schema.name => Some(input.clone()),
            _ => None,
        });
        if let Some(answer) = answer {
            content = vec![ContentBlock::Text { text: schema.unwrap_value(answer).to_string() }];
            if stop_reason == StopReason::ToolUse {
                stop_reason = StopReason::EndTurn;
            }
        }
    }
    let u = wire.usage;
    let input_tokens =
        u.input_tokens + u.cache_creation_input_tokens.unwrap_or(0) + u.cache_read_input_tokens.unwrap_or(0);
    let model = wire.model.filter(|m| !m.is_empty()).unwrap_or_else(|| fallback_model.to_owned());
    let cost_usd = meter.cost(&model, input_tokens, u.output_tokens);
    Ok(CompletionResponse {
        content,
        stop_reason,
        usage: Usage { input_tokens, output_tokens: u.output_tokens, cost_usd },
        model,
    })
}

#[cfg(test)]
mod tests {
    use omoi_core::{Message, OutputSchema, Role, ToolSpec};
    use serde_json::json;

    use super::*;
    use crate::llm::PriceTable;

    #[test]
    fn request_matches_the_messages_api_shape() {
        let mut req = CompletionRequest::new("list files");
        req.system = Some("be brief".into());
        req.temperature = Some(0.5);
        req.tools.push(ToolSpec {
            name: "ls".into(),
            description: "list".into(),
            input_schema: json!({"type": "object"}),
        });
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse { id: "t1".into(), name: "ls".into(), input: json!({"dir": "."}) }],
        });
        req.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: "t1".into(),
                content: "a b".into(),
                is_error: false,
            }],
        });
        let body = serde_json::to_value(request("claude-x", &req, None)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-x", "max_tokens": 4096, "system": "be brief", "temperature": 0.5,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "list files"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {"dir": "."}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a b", "is_error": false}]},
                ],
                "tools": [{"name": "ls", "description": "list", "input_schema": {"type": "object"}}],
            })
        );
    }

    #[test]
    fn structured_output_forces_the_schema_tool() {
        let req = CompletionRequest::new("q");
        let schema = PreparedSchema::new(&OutputSchema { name: "answer".into(), schema: json!({"type": "object"}) });
        let body = serde_json::to_value(request("m", &req, Some(&schema))).unwrap();
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "answer"}));
        assert_eq!(body["tools"][0]["name"], "answer");
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    }

    #[test]
    fn unknown_blocks_are_skipped_and_cache_tokens_counted() {
        let body = json!({
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "hi"}],
            "stop_reason": "stop_sequence", "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90},
        });
        let r = response(body.to_string().as_bytes(), None, "x", &CostMeter::new(PriceTable::default())).unwrap();
        assert_eq!(r.content, vec![ContentBlock::Text { text: "hi".into() }]);
        assert_eq!(r.stop_reason, StopReason::Other);
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (100, 5));
    }
}
