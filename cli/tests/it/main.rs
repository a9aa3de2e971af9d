//! End-to-end tests of the `manage` binary.
mod common;
