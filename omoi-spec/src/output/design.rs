//! DESIGN: architecture, components, data models, APIs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the design phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DesignOutput {
    /// Feature name.
    #[serde(default)]
    pub feature_name: String,
    /// The architecture in prose (100+ characters).
    pub architecture_overview: String,
    /// The architecture as a Mermaid diagram.
    #[serde(default)]
    pub architecture_diagram: String,
    /// Components to build or change.
    pub components: Vec<Component>,
    /// Data models (may be empty when nothing is stored).
    #[serde(default)]
    pub data_models: Vec<DataModel>,
    /// HTTP endpoints (may be empty for libraries).
    #[serde(default)]
    pub api_endpoints: Vec<ApiEndpoint>,
    /// Error cases and how they are handled.
    #[serde(default)]
    pub error_handling: Vec<String>,
    /// How the feature is tested.
    #[serde(default)]
    pub testing_strategy: TestingStrategy,
    /// Security considerations (2+).
    #[serde(default)]
    pub security_considerations: Vec<String>,
    /// Where the feature meets existing code or systems.
    #[serde(default)]
    pub integration_points: Vec<String>,
}

/// A component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Component {
    /// Name.
    pub name: String,
    /// Kind: module, service, function, class, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Where it lives.
    #[serde(default)]
    pub file_path: String,
    /// What it is responsible for (one responsibility).
    pub responsibility: String,
    /// Its public interface (signatures).
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// A stored data model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DataModel {
    /// Name.
    pub name: String,
    /// Table name.
    pub table_name: String,
    /// Field → type and constraints.
    pub fields: BTreeMap<String, String>,
    /// Indexes.
    pub indexes: Vec<String>,
}

/// An HTTP endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ApiEndpoint {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path.
    pub path: String,
    /// What it does.
    pub description: String,
    /// Whether a caller must authenticate.
    pub auth_required: bool,
    /// Request body, described.
    pub request_schema: String,
    /// Response body, described.
    pub response_schema: String,
}

/// How the feature is tested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TestingStrategy {
    /// Unit tests.
    pub unit_tests: Vec<String>,
    /// Integration tests.
    pub integration_tests: Vec<String>,
}
