#![doc = include_str!("../README.md")]

mod client;
pub mod copy;
pub mod credentials;
pub mod manifests;
pub mod reference;

pub use copy::{Copier, CopyError, CopyReport};
pub use credentials::{CredentialError, Credentials, RegistryAuth, TokenSource};
pub use manifests::{ImageUse, ManifestError, Rewritten, rewrite, scan};
pub use reference::{Destination, Digest, ImageRef, ReferenceError};
