//! The postgres adapter (being written).
