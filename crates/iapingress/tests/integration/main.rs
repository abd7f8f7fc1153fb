//! Integration tests of kfsec-iapingress: flows against the emulator (create, wait, a second
//! apply that sends nothing, the Service annotated in place, other people's objects and IAP
//! members kept, an etag conflict, custom OAuth without leaks, what keeps a namespace), the rendered files checked by
//! openssl, kubectl, kubernetes-validate and GKE's published CRD schemas, and the real gcloud
//! reading the IAP policy kfsec wrote.

mod common;
mod conflict;
mod flows;
mod namespaces;
mod render;
mod secrets;
