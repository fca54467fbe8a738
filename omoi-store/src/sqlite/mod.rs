//! The sqlite adapter (being written).
