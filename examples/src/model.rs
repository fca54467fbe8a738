//! The model the examples run on: Claude with `ANTHROPIC_API_KEY`, an OpenAI-compatible server
//! with `OPENAI_API_KEY` / `OPENAI_BASE_URL`, else a recorded conversation played by
//! `ScriptedLlm` (the tools really run; only the model's answers are replayed).

use std::error::Error;
use std::sync::Arc;

use omoi_core::LlmClient;
use omoi_core::testkit::{Recording, ScriptedLlm};
use omoi_exec::llm::{AnthropicClient, OpenAiClient};

/// The model in use.
pub struct Model {
    /// The client.
    pub llm: Arc<dyn LlmClient>,
    /// Which model it is, for people.
    pub source: String,
    /// The recording, when it is the model (to show what it was given).
    pub recorded: Option<Arc<ScriptedLlm>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("source", &self.source).finish_non_exhaustive()
    }
}

/// The model. `recording` is the JSON of a [`Recording`], used when no API is configured.
pub fn from_env_or_recording(recording: &str) -> Result<Model, Box<dyn Error>> {
    if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
        let client = AnthropicClient::from_env()?;
        let source = format!("Anthropic ({})", client.model());
        return Ok(Model { llm: Arc::new(client), source, recorded: None });
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() || std::env::var_os("OPENAI_BASE_URL").is_some() {
        let client = OpenAiClient::from_env()?;
        let source = format!("OpenAI-compatible ({})", client.model());
        return Ok(Model { llm: Arc::new(client), source, recorded: None });
    }
    // Task agents run concurrently: each task's conversation is its own track
    // (`task:<title>`), chosen by the request's labels; the spec phases share the default track.
    // A run that has been steered continues on its track's `@steered` continuation.
    let llm = Arc::new(ScriptedLlm::from_recording(serde_json::from_str::<Recording>(recording)?));
    let source = "a recorded conversation (set ANTHROPIC_API_KEY to use Claude)".into();
    Ok(Model { llm: llm.clone(), source, recorded: Some(llm) })
}
