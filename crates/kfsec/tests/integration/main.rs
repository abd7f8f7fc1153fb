//! Integration tests of the kfsec facade: the config checked in one pass, and the whole
//! workflow on the emulator (every stage, then a second apply that sends nothing).

mod common;
mod config;
mod destroy;
mod faults;
mod gcloud;
mod kubeflow;
mod refuse;
mod rollout;
mod waits;
mod workflow;
mod workload;
