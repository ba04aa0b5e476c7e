//! Placeholder: filled in by the chain work.
