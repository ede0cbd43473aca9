//! Test environment: see README in this crate.
