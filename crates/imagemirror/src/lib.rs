#![doc = include_str!("../README.md")]

mod client;
pub mod cloudbuild;
pub mod copy;
pub mod credentials;
pub mod fields;
pub mod input;
pub mod manifests;
pub mod mirror;
pub mod reference;
pub mod spec;
mod yaml;

pub use copy::{Copier, CopyError, CopyReport};
pub use credentials::{CredentialError, Credentials, GoogleTokens, RegistryAuth, TokenSource};
pub use manifests::{ImageUse, ManifestError, Rewritten, rewrite, scan};
pub use mirror::{
    ImageMirror, ImageOutcome, ImageResult, MirrorError, MirrorPlan, MirrorReport, PlannedImage,
};
pub use reference::{Destination, Digest, ImageRef, ReferenceError};
pub use spec::{Backend, Spec};
