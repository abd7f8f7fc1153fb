#![doc = include_str!("../README.md")]

mod destroy;
pub mod error;
mod handle;
pub mod jwt;
pub mod objects;
pub mod render;
pub mod spec;
pub mod tls;

#[cfg(test)]
mod wire_tests;

pub use error::IngressError;
pub use handle::{ACCESSOR_ROLE, Clients, IapIngress, IngressPlan, Ready};
pub use jwt::{IapAudience, IapIdentity, IapLayer, IapService, IapVerifier, JwtError};
pub use spec::{BackendSpec, IngressSpec, OAuthClient, OAuthSpec, Spec, TlsSpec};
