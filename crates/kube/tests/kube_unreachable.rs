//! Issue 23: a read of the Kubernetes API through `retry_read`, with Google's default policies,
//! against a closed port and against a server answering HTML 500s, ends in seconds and says
//! what happened.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kfsec_core::Policies;

async fn read_namespace(url: &str) -> (String, Duration) {
    // kube-rs needs one process-wide crypto provider (the workspace links two).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: kube::Api<Namespace> = kube::Api::all(client);
    let start = Instant::now();
    let err = kfsec_kube::retry_read(&Policies::default(), || namespaces.get_opt("kubeflow"))
        .await
        .unwrap_err();
    (err.to_string(), start.elapsed())
}

#[tokio::test]
async fn closed_port_is_refused_in_seconds() {
    let url = kfsec_test_support::closed_port();
    let (text, elapsed) = read_namespace(&url).await;
    println!("closed port: {:.1} s: {text}", elapsed.as_secs_f64());
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    assert!(text.contains("unreachable: connection refused"), "{text}");
    assert!(text.contains("what to do:"), "{text}");
}

#[tokio::test]
async fn html_500_is_a_bad_response_in_seconds() {
    let url = kfsec_test_support::html_500().await;
    let (text, elapsed) = read_namespace(&url).await;
    println!("HTML 500: {:.1} s: {text}", elapsed.as_secs_f64());
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    assert!(
        text.contains("bad response: answered HTML with status 500"),
        "{text}"
    );
}
