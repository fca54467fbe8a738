//! The model the examples run on: Claude with `ANTHROPIC_API_KEY`, an OpenAI-compatible server
//! with `OPENAI_API_KEY` / `OPENAI_BASE_URL`, else a recorded conversation played by
//! `ScriptedLlm` (the tools really run; only the model's answers are replayed).

use std::error::Error;
use std::sync::Arc;

use omoi_core::LlmClient;
use omoi_core::testkit::{Recording, ScriptedLlm};
use omoi_exec::llm::{AnthropicClient, OpenAiClient};

/// The model and a sentence saying which one it is. `recording` is the JSON of a
/// [`Recording`], used when no API is configured.
pub fn from_env_or_recording(recording: &str) -> Result<(Arc<dyn LlmClient>, String), Box<dyn Error>> {
    if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
        let client = AnthropicClient::from_env()?;
        return Ok((Arc::new(client.clone()), format!("Anthropic ({})", client.model())));
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() || std::env::var_os("OPENAI_BASE_URL").is_some() {
        let client = OpenAiClient::from_env()?;
        return Ok((Arc::new(client.clone()), format!("OpenAI-compatible ({})", client.model())));
    }
    // Task agents run concurrently: each task's conversation is its own track
    // (`task:<title>`), chosen by the request's labels; the spec phases share the default track.
    let llm = ScriptedLlm::from_recording(serde_json::from_str::<Recording>(recording)?);
    Ok((Arc::new(llm), "a recorded conversation (set ANTHROPIC_API_KEY to use Claude)".into()))
}
