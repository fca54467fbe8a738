//! redis conformance tests (being written).
