//! postgres conformance tests (being written).
