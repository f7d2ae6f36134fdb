//! Repository format v1.
