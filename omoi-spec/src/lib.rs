//! # omoi-spec
//!
//! The spec pipeline: a feature idea becomes a spec through the phases explore → prd →
//! requirements → design → tasks → sync. Each phase has a prompt builder, a typed output
//! (serde + JSON schema sent to the model) and a deterministic structural evaluator; failed
//! attempts are retried with the evaluator's feedback, passed phases are checkpointed in a
//! [`SpecStore`](omoi_core::SpecStore) so a resume skips them, and SYNC materializes tickets and
//! tasks idempotently.
//!
//! This crate is filled by the spec-pipeline issue; today it holds only this description.
