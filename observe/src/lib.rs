//! Placeholder: filled in by the observe work.
