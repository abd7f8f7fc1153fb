//! Example programs for kfsec live beside this crate as `[[example]]` targets; this library is
//! empty so that `cargo test` builds and tests them. See the workspace README.
