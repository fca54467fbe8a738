//! The redis adapter (being written).
