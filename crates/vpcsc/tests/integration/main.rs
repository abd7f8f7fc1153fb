//! Integration tests of kfsec-vpcsc: whole flows against the emulator, the real gcloud reading
//! and writing the same state, faults, and concurrent writers.

mod audit;
mod common;
mod concurrency;
mod differential;
mod faults;
mod flows;
mod gcloud;
mod mocks;
