//! Acceptance 1 of issue 23: a real SDK client, with the DEFAULT policies, against a small
//! misbehaving server; each failure class ends within 60 s with an error that names the URL
//! and says what happened, and the progress shows the cause on each retry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use kfsec_core::{
    CloudError, Connection, Endpoints, ErrorKind, Policies, Progress, ProgressEvent, ResultExt as _,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a test server treats each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Accepts, never reads, never answers (the stand-in for a black-holed address).
    Silent,
    /// Reads the request, writes `reply`, then closes (or holds the connection with `hold`).
    Reply { reply: &'static [u8], hold: bool },
    /// Reads the request, answers 200 with a chunked JSON body that never ends.
    Endless,
}

async fn server(behaviour: Behaviour) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                match behaviour {
                    Behaviour::Silent => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    Behaviour::Reply { reply, hold } => {
                        let _ = socket.read(&mut buf).await;
                        let _ = socket.write_all(reply).await;
                        if hold {
                            tokio::time::sleep(Duration::from_secs(600)).await;
                        }
                    }
                    Behaviour::Endless => {
                        let _ = socket.read(&mut buf).await;
                        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"a\":[\r\n";
                        if socket.write_all(head).await.is_err() {
                            return;
                        }
                        while socket.write_all(b"2\r\n1,\r\n").await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Reads one service through `url` with the default policies, as a kfsec step does; returns
/// the error, the time it took and the progress events.
async fn read_through(url: &str) -> (CloudError, Duration, Vec<ProgressEvent>) {
    let mut endpoints = Endpoints::default();
    endpoints.insert("serviceusage", url);
    // Anonymous credentials (an emulated connection), with Google's default policies.
    let conn = Connection::emulated(endpoints).with_policies(Policies::default());
    let client = conn
        .configure("serviceusage", ServiceUsage::builder())
        .unwrap()
        .build()
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress = Progress::new(move |e| sink.lock().unwrap().push(e.clone()));
    let start = Instant::now();
    let result = kfsec_core::retry::step(
        &progress,
        conn.policies(),
        "read service dns",
        CloudError::retry_decision,
        || async {
            client
                .get_service()
                .set_name("projects/kf-dev/services/dns.googleapis.com")
                .send()
                .await
                .context("read service dns")
        },
    )
    .await;
    let elapsed = start.elapsed();
    let err = result.expect_err("the misbehaving server cannot give a service");
    let events = events.lock().unwrap().clone();
    (err, elapsed, events)
}

async fn check(case: &str, url: &str, kind: ErrorKind, cause: &str) {
    let (err, elapsed, events) = read_through(url).await;
    let text = err.to_string();
    println!(
        "{case}: {:.1} s, {} attempts: {text}",
        elapsed.as_secs_f64(),
        events
            .iter()
            .filter(|e| matches!(e, ProgressEvent::Retrying { .. }))
            .count()
            + 1
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "{case}: took {elapsed:?}"
    );
    assert_eq!(err.kind(), kind, "{case}: {text}");
    assert!(
        text.contains(url),
        "{case}: the URL {url} is not named: {text}"
    );
    assert!(text.contains(cause), "{case}: no `{cause}` in: {text}");
    assert!(text.contains("what to do:"), "{case}: {text}");
    assert_eq!(err.endpoint(), Some(url));
    // A few attempts, not the step's budget of 12; each retry says why.
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Retrying { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    let limit = err.attempt_limit().unwrap();
    assert!(limit <= 4, "{case}: {limit}");
    assert_eq!(retries.len() as u32, limit - 1, "{case}: {retries:?}");
    for reason in &retries {
        assert!(
            reason.contains(cause) && reason.contains(url),
            "{case}: {reason}"
        );
        assert!(!reason.contains("what to do"), "{case}: {reason}");
    }
    assert!(
        matches!(
            events.last(),
            Some(ProgressEvent::StepFinished { ok: false, .. })
        ),
        "{case}: {events:?}"
    );
}

#[tokio::test]
async fn closed_port_is_refused_quickly() {
    let url = format!("http://{}", closed_port().await);
    check(
        "closed port",
        &url,
        ErrorKind::Unreachable,
        "connection refused",
    )
    .await;
}

#[tokio::test]
async fn https_against_plain_http_is_explained() {
    let addr = server(Behaviour::Reply {
        reply: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        hold: false,
    })
    .await;
    let url = format!("https://{addr}");
    check(
        "https against plain http",
        &url,
        ErrorKind::Unreachable,
        "TLS handshake failed: the server speaks plain HTTP?",
    )
    .await;
}

#[tokio::test]
async fn unknown_host_is_a_dns_failure() {
    let url = "http://kfsec-no-such-host.invalid";
    check("DNS", url, ErrorKind::Unreachable, "DNS lookup failed").await;
}

#[tokio::test]
async fn black_hole_times_out() {
    let url = format!("http://{}", server(Behaviour::Silent).await);
    check(
        "black hole",
        &url,
        ErrorKind::Timeout,
        "no answer within 20 s",
    )
    .await;
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let addr = server(Behaviour::Reply {
        reply: b"",
        hold: true,
    })
    .await;
    let url = format!("http://{addr}");
    check(
        "never answers",
        &url,
        ErrorKind::Timeout,
        "no answer within 20 s",
    )
    .await;
}

#[tokio::test]
async fn html_500_is_a_bad_response() {
    let addr = server(Behaviour::Reply {
        reply: b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 38\r\nConnection: close\r\n\r\n<html><body>Server Error</body></html>",
        hold: false,
    })
    .await;
    let url = format!("http://{addr}");
    check(
        "HTML 500",
        &url,
        ErrorKind::BadResponse,
        "answered HTML (\"<html><body>Server Error</body></html>\") with status 500",
    )
    .await;
}

#[tokio::test]
async fn body_cut_mid_json_is_a_bad_response() {
    // The connection closes before Content-Length is reached.
    let addr = server(Behaviour::Reply {
        reply: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{\"name\": \"projects/123/services/dns.goo",
        hold: false,
    })
    .await;
    let url = format!("http://{addr}");
    check(
        "cut mid-JSON (connection closed)",
        &url,
        ErrorKind::BadResponse,
        "the body ended before the JSON did",
    )
    .await;
    // The length matches, but the JSON is cut.
    let addr = server(Behaviour::Reply {
        reply: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"name\": \"projects/",
        hold: false,
    })
    .await;
    let url = format!("http://{addr}");
    check(
        "cut mid-JSON (short length)",
        &url,
        ErrorKind::BadResponse,
        "the body ended before the JSON did",
    )
    .await;
}

#[tokio::test]
async fn endless_body_times_out() {
    let url = format!("http://{}", server(Behaviour::Endless).await);
    check(
        "endless body",
        &url,
        ErrorKind::Timeout,
        "the answer did not end within 20 s",
    )
    .await;
}

#[tokio::test]
async fn transient_503_with_a_google_error_keeps_the_full_budget() {
    // The emulator's injected faults look like this: they must still be retried as before.
    let addr = server(Behaviour::Reply {
        reply: b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 67\r\nConnection: close\r\n\r\n{\"error\":{\"code\":503,\"message\":\"try later\",\"status\":\"UNAVAILABLE\"}}",
        hold: false,
    })
    .await;
    let mut endpoints = Endpoints::default();
    endpoints.insert("serviceusage", format!("http://{addr}"));
    let conn = Connection::emulated(endpoints);
    let client = conn
        .configure("serviceusage", ServiceUsage::builder())
        .unwrap()
        .build()
        .await
        .unwrap();
    let err = client
        .get_service()
        .set_name("projects/kf-dev/services/dns.googleapis.com")
        .send()
        .await
        .context("read service dns")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.message(), "try later");
    assert_eq!(err.retry_decision(), kfsec_core::RetryDecision::Retry);
    assert!(err.to_string().contains(&format!("http://{addr}")), "{err}");
}
