//! sqlite conformance tests (being written).
