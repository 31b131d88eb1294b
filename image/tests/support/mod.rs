//! Shared fixtures for the registry integration tests.
#![allow(dead_code)]

pub mod fake;
pub mod synth;
