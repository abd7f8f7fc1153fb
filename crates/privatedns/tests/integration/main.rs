//! Integration tests of kfsec-privatedns: flows against the emulator, the real gcloud on the same
//! state, exported zones served by a real `named`, and faults.

mod common;
mod faults;
mod flows;
mod gcloud;
mod named;
