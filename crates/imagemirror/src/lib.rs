#![doc = include_str!("../README.md")]

mod client;
pub mod cloudbuild;
pub mod copy;
pub mod credentials;
pub mod error;
pub mod fields;
pub mod input;
pub mod manifests;
pub mod mirror;
pub mod reference;
pub mod spec;
mod verify;
mod yaml;

pub use copy::{Copier, CopyReport};
pub use credentials::{CredentialError, Credentials, GoogleTokens, RegistryAuth, TokenSource};
pub use error::{MirrorError, RegistryError};
pub use manifests::{ImageUse, ManifestError, Rewritten, rewrite, scan};
pub use mirror::{
    Clients, ImageMirror, ImageOutcome, ImageResult, MirrorPlan, MirrorReport, PlannedImage,
};
pub use reference::{Destination, Digest, ImageRef, ReferenceError};
pub use spec::{Backend, Spec};
