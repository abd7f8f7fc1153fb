//! Fault injection: 429, 503, dropped connections and answers cut half-way, seeded.

use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{call, client, emulator, try_call};

const SU: &str = "serviceusage";

/// What a client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    Dropped,
}

async fn outcomes(em: &Emulator, n: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = try_call(
            em,
            SU,
            Method::GET,
            "v1/projects/kf-dev/services/storage.googleapis.com",
            None,
        )
        .await;
        out.push(match r {
            Ok((status, _)) => Outcome::Status(status),
            Err(_) => Outcome::Dropped,
        });
    }
    out
}

#[tokio::test]
async fn rate_one_faults_every_request_but_not_admin() {
    let em = Emulator::start(EmulatorOptions {
        fault_rate: 1.0,
        fault_seed: 3,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let seen = outcomes(&em, 24).await;
    assert!(
        seen.iter()
            .all(|o| matches!(o, Outcome::Status(429 | 503) | Outcome::Dropped)),
        "{seen:?}"
    );
    assert!(seen.contains(&Outcome::Status(429)));
    assert!(seen.contains(&Outcome::Status(503)));
    assert!(seen.contains(&Outcome::Dropped));
    // Faulted requests are logged too.
    assert_eq!(em.requests().len(), 24);

    let admin = em.endpoint("admin").unwrap();
    for _ in 0..5 {
        let r = client().get(format!("{admin}state")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(em.requests().len(), 24, "admin requests are not logged");

    // 429 carries Retry-After and Google's error body.
    let su = em.endpoint(SU).unwrap();
    let mut saw_429 = false;
    for _ in 0..50 {
        let Ok(r) = client()
            .get(format!("{su}v1/projects/kf-dev/services"))
            .send()
            .await
        else {
            continue;
        };
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "0");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
            saw_429 = true;
            break;
        }
    }
    assert!(saw_429);
}

#[tokio::test]
async fn same_seed_same_outcomes() {
    let em = emulator().await;
    em.set_faults(0.5, 42);
    let first = outcomes(&em, 40).await;
    em.reset();
    em.set_faults(0.5, 42);
    let second = outcomes(&em, 40).await;
    assert_eq!(first, second);
    assert!(first.contains(&Outcome::Status(200)));
    assert!(first.iter().any(|o| *o != Outcome::Status(200)));
    em.set_faults(0.5, 43);
    let third = outcomes(&em, 40).await;
    assert_ne!(first, third);
    em.set_faults(0.0, 0);
    assert!(
        outcomes(&em, 10)
            .await
            .iter()
            .all(|o| *o == Outcome::Status(200))
    );
}

#[tokio::test]
async fn dropped_connections_close_without_response_and_cut_ones_half_way() {
    let em = emulator().await;
    em.set_faults(1.0, 9);
    let addr = em
        .endpoint(SU)
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (mut dropped, mut cut) = (0, 0);
    for _ in 0..30 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"GET /v1/projects/kf-dev/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("server closes or answers")
            .ok();
        if buf.is_empty() {
            dropped += 1;
            continue;
        }
        if buf.starts_with(b"HTTP/1.1 429") || buf.starts_with(b"HTTP/1.1 503") {
            continue;
        }
        // Otherwise the answer was cut: a 200 whose body stops at half its Content-Length.
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(body.len(), length / 2, "{text}");
        cut += 1;
    }
    assert!(dropped > 0 && cut > 0, "dropped {dropped}, cut {cut}");
}

#[tokio::test]
async fn some_dropped_writes_were_applied() {
    let em = emulator().await;
    em.set_faults(1.0, 11);
    let catalog = [
        "accesscontextmanager",
        "artifactregistry",
        "bigquery",
        "cloudbuild",
        "cloudresourcemanager",
        "compute",
        "container",
        "containerregistry",
        "dns",
        "iam",
        "iap",
        "logging",
        "monitoring",
        "oslogin",
        "pubsub",
        "sqladmin",
        "storage",
        "serviceusage",
        "secretmanager",
        "cloudkms",
    ];
    for s in catalog {
        let r = try_call(
            &em,
            SU,
            Method::POST,
            &format!("v1/projects/kf-dev/services/{s}.googleapis.com:enable"),
            Some(serde_json::json!({})),
        )
        .await;
        assert!(!matches!(r, Ok((200, _))), "every request faults: {r:?}");
    }
    em.set_faults(0.0, 0);
    let (_, list) = call(
        &em,
        SU,
        Method::GET,
        "v1/projects/kf-dev/services?filter=state:ENABLED",
        None,
    )
    .await;
    let enabled = list["services"].as_array().map_or(0, Vec::len);
    assert!(enabled > 0 && enabled < catalog.len(), "enabled {enabled}");
}

#[tokio::test]
async fn latency_delays_apis_but_not_admin() {
    let em = Emulator::start(EmulatorOptions {
        latency: Duration::from_millis(150),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        call(&em, SU, Method::GET, "v1/projects/kf-dev/services", None)
            .await
            .0,
        200
    );
    assert!(start.elapsed() >= Duration::from_millis(150));
    let start = std::time::Instant::now();
    let admin = em.endpoint("admin").unwrap();
    assert_eq!(
        client()
            .get(format!("{admin}state"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(start.elapsed() < Duration::from_millis(150));
}
