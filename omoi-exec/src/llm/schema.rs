//! Output schemas as the providers want them: a valid name, an object root, and (for OpenAI's
//! strict mode) closed objects with every property required.

use omoi_core::OutputSchema;
use serde_json::{Map, Value, json};

/// The property a non-object answer is wrapped in.
const WRAP_KEY: &str = "value";

/// An output schema ready to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedSchema {
    /// A name the APIs accept (`[A-Za-z0-9_-]{1,64}`).
    pub(crate) name: String,
    /// An object schema (no `$schema` key).
    pub(crate) schema: Value,
    /// Whether the original root was not an object and was wrapped as `{"value": …}`.
    pub(crate) wrapped: bool,
}

impl PreparedSchema {
    /// Both providers require an object at the root of a tool input or response format; any
    /// other root (an array, a string enum, …) is wrapped in `{"value": …}` and unwrapped in
    /// the answer ([`PreparedSchema::unwrap_value`]).
    pub(crate) fn new(output: &OutputSchema) -> Self {
        let mut schema = match &output.schema {
            s @ (Value::Object(_) | Value::Bool(_)) => s.clone(),
            _ => json!({}),
        };
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("$schema");
        }
        let name = api_name(&output.name);
        if schema.get("type").and_then(Value::as_str) == Some("object") {
            return Self { name, schema, wrapped: false };
        }
        let mut wrapper = Map::new();
        if let Some(obj) = schema.as_object_mut() {
            for defs in ["$defs", "definitions"] {
                if let Some(d) = obj.remove(defs) {
                    wrapper.insert(defs.into(), d);
                }
            }
        }
        wrapper.insert("type".into(), json!("object"));
        wrapper.insert("properties".into(), json!({ WRAP_KEY: schema }));
        wrapper.insert("required".into(), json!([WRAP_KEY]));
        Self { name, schema: Value::Object(wrapper), wrapped: true }
    }

    /// The answer to hand back: `answer["value"]` for a wrapped schema, else `answer`.
    pub(crate) fn unwrap_value(&self, answer: Value) -> Value {
        match answer {
            Value::Object(mut obj) if self.wrapped && obj.contains_key(WRAP_KEY) => {
                obj.remove(WRAP_KEY).unwrap_or(Value::Null)
            }
            other => other,
        }
    }

    /// The answer text to hand back: unwrapped when the schema was wrapped and the text is
    /// JSON; otherwise unchanged (so a bad answer reaches `parse_json` as the model wrote it).
    #[cfg(feature = "openai")]
    pub(crate) fn unwrap_text(&self, text: String) -> String {
        if !self.wrapped {
            return text;
        }
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(v @ Value::Object(_)) => self.unwrap_value(v).to_string(),
            _ => text,
        }
    }
}

/// `name` with characters outside `[A-Za-z0-9_-]` replaced by `_`, cut to 64, never empty.
pub(crate) fn api_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    if cleaned.is_empty() { "output".into() } else { cleaned }
}

/// The schema in the form OpenAI's strict structured outputs accept: every object closed
/// (`additionalProperties: false`) with all its properties required, `oneOf` as `anyOf`.
/// These changes only narrow the schema, so every strict answer is also valid for the
/// original. `None` when that form does not exist: maps (`additionalProperties` as a schema),
/// free-form values, `allOf`, `not`, conditionals or pattern properties.
#[cfg(feature = "openai")]
pub(crate) fn strict(schema: &Value) -> Option<Value> {
    let mut s = schema.clone();
    close(&mut s).then_some(s)
}

#[cfg(feature = "openai")]
fn close(node: &mut Value) -> bool {
    let obj = match node {
        Value::Bool(b) => return !*b,
        Value::Object(obj) => obj,
        _ => return false,
    };
    const UNSUPPORTED: [&str; 9] = [
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentSchemas",
        "unevaluatedProperties",
        "propertyNames",
    ];
    if UNSUPPORTED.iter().any(|k| obj.contains_key(*k)) {
        return false;
    }
    const CONSTRAINING: [&str; 8] = ["type", "$ref", "anyOf", "oneOf", "enum", "const", "properties", "items"];
    if !CONSTRAINING.iter().any(|k| obj.contains_key(*k)) {
        return false;
    }
    if let Some(one_of) = obj.remove("oneOf") {
        obj.insert("anyOf".into(), one_of);
    }
    let is_object = obj.contains_key("properties")
        || match obj.get("type") {
            Some(Value::String(t)) => t == "object",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
            _ => false,
        };
    if is_object {
        if !matches!(obj.get("additionalProperties"), None | Some(Value::Bool(_))) {
            return false;
        }
        let Some(props) = obj.get("properties").and_then(Value::as_object) else { return false };
        let required: Vec<Value> = props.keys().cloned().map(Value::String).collect();
        obj.insert("required".into(), Value::Array(required));
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    let mut ok = true;
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = obj.get_mut(key) {
            ok &= children.values_mut().all(close);
        }
    }
    for key in ["anyOf", "prefixItems"] {
        if let Some(Value::Array(children)) = obj.get_mut(key) {
            ok &= children.iter_mut().all(close);
        }
    }
    match obj.get_mut("items") {
        Some(Value::Array(children)) => ok &= children.iter_mut().all(close),
        Some(child) => ok &= close(child),
        None => {}
    }
    ok
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Plan {
        title: String,
        steps: Vec<Step>,
        note: Option<String>,
    }

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    enum Step {
        Run { cmd: String },
        Wait(u32),
        Done,
    }

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct WithMap {
        labels: BTreeMap<String, String>,
    }

    #[cfg(feature = "openai")]
    fn all_objects_closed(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                let closed = if o.contains_key("properties") {
                    o["additionalProperties"] == json!(false)
                        && o["required"].as_array().map(Vec::len) == o["properties"].as_object().map(|p| p.len())
                } else {
                    true
                };
                closed && o.values().all(all_objects_closed)
            }
            Value::Array(a) => a.iter().all(all_objects_closed),
            _ => true,
        }
    }

    #[test]
    fn object_roots_are_kept_and_the_meta_schema_key_dropped() {
        let p = PreparedSchema::new(&OutputSchema::of::<Plan>("plan"));
        assert!(!p.wrapped);
        assert_eq!(p.schema["type"], "object");
        assert!(p.schema.get("$schema").is_none());
    }

    #[test]
    fn other_roots_are_wrapped_and_unwrapped() {
        let p = PreparedSchema::new(&OutputSchema::of::<Vec<Step>>("steps list"));
        assert!(p.wrapped);
        assert_eq!(p.name, "steps_list");
        assert_eq!(p.schema["properties"]["value"]["type"], "array");
        assert!(p.schema["$defs"]["Step"].is_object(), "{}", p.schema);
        assert_eq!(p.unwrap_value(json!({"value": 3})), json!(3));
        assert_eq!(p.unwrap_value(json!({"other": 3})), json!({"other": 3}));
    }

    #[cfg(feature = "openai")]
    #[test]
    fn answer_texts_are_unwrapped_only_for_wrapped_schemas() {
        let wrapped = PreparedSchema::new(&OutputSchema::of::<Vec<Step>>("steps"));
        assert_eq!(wrapped.unwrap_text(r#"{"value":["Done"]}"#.into()), r#"["Done"]"#);
        assert_eq!(wrapped.unwrap_text("not json".into()), "not json");
        let plain = PreparedSchema::new(&OutputSchema::of::<Plan>("plan"));
        assert_eq!(plain.unwrap_text(r#"{"value":1}"#.into()), r#"{"value":1}"#);
    }

    #[cfg(feature = "openai")]
    #[test]
    fn strict_closes_every_object_and_requires_every_property() {
        let p = PreparedSchema::new(&OutputSchema::of::<Plan>("plan"));
        let s = strict(&p.schema).expect("Plan can be strict");
        assert!(all_objects_closed(&s), "{s:#}");
        assert!(!s.to_string().contains("oneOf"));
        assert!(s["required"].as_array().unwrap().contains(&json!("note")));
    }

    #[cfg(feature = "openai")]
    #[test]
    fn maps_and_free_form_values_cannot_be_strict() {
        let p = PreparedSchema::new(&OutputSchema::of::<WithMap>("m"));
        assert_eq!(strict(&p.schema), None);
        let p = PreparedSchema::new(&OutputSchema::of::<serde_json::Value>("v"));
        assert_eq!(strict(&p.schema), None);
        assert_eq!(strict(&json!({"allOf": [{"type": "object"}]})), None);
    }

    #[test]
    fn names_are_made_api_safe() {
        assert_eq!(api_name("spec.requirements v2"), "spec_requirements_v2");
        assert_eq!(api_name(""), "output");
        assert_eq!(api_name(&"x".repeat(100)).len(), 64);
    }
}
