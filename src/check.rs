//! Leak assertions for tests (issue 6: being written).
