//! The key never appears in `Debug` output or errors (logs: `tests/llm_logs.rs`).

use omoi_exec::llm::{AnthropicClient, ApiKey, OpenAiClient};

use crate::samples::KEY;

#[test]
fn api_key_debug_and_display_are_redacted() {
    let key = ApiKey::new(KEY);
    assert_eq!(format!("{key:?}"), "[redacted]");
    assert_eq!(format!("{key}"), "[redacted]");
    assert_eq!(format!("{:?}", Some(ApiKey::from(KEY))), "Some([redacted])");
}

#[test]
fn client_and_builder_debug_never_show_the_key() {
    let anthropic = AnthropicClient::builder().api_key(KEY).base_url("http://127.0.0.1:9");
    let openai = OpenAiClient::builder().api_key(KEY).base_url("http://127.0.0.1:9");
    let outputs = [
        format!("{anthropic:?}"),
        format!("{anthropic:#?}"),
        format!("{:?}", anthropic.build().unwrap()),
        format!("{openai:?}"),
        format!("{openai:#?}"),
        format!("{:#?}", openai.build().unwrap()),
    ];
    for output in outputs {
        assert!(!output.contains(KEY) && !output.contains("SECRET"), "{output}");
        assert!(output.contains("[redacted]"), "the key field is shown, redacted: {output}");
        assert!(output.contains("127.0.0.1:9"), "the rest is shown: {output}");
    }
}
