//! Integration tests of kfsec-gkeprivate: flows against the emulator (create, idempotence,
//! in-place updates, what is never recreated, someone else's rules, legacy networks, failed
//! operations, kubeconfig), the real gcloud on the same state, and faults.

mod common;
mod drift;
mod faults;
mod flows;
mod gcloud;
