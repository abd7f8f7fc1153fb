#![doc = include_str!("../README.md")]

pub mod manifests;
pub mod reference;

pub use manifests::{ImageUse, ManifestError, Rewritten, rewrite, scan};
pub use reference::{Destination, Digest, ImageRef, ReferenceError};
