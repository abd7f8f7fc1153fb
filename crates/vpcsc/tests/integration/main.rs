//! Integration tests of kfsec-vpcsc against the emulator and gcloud.
