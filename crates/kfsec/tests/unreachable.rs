//! Acceptance 1 of issue 23 against the emulator: with one API's endpoint replaced by a closed
//! port and Google's default policies, `plan` fails within seconds naming the URL and the
//! cause, and its progress shows what it waits on and why it retries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kfsec::prelude::*;
use kfsec_core::{Connection, Policies, Progress, ProgressEvent};
use kfsec_emulator::{Emulator, EmulatorOptions};

fn config() -> kfsec::Config {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let text = std::fs::read_to_string(format!("{root}/examples/config/kf-dev.yaml")).unwrap();
    kfsec::Config::from_yaml_in(&text, root.as_ref()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_against_a_closed_port_names_the_url_and_the_cause_within_seconds() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let conn = Connection::emulated(emu.endpoints().into())
        .with_endpoint("accesscontextmanager", &url)
        .with_policies(Policies::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let kfsec = Kfsec::new(&conn).with_progress(Progress::new(move |e| {
        sink.lock().unwrap().push(e.clone());
    }));
    let start = Instant::now();
    let err = kfsec.plan(&config()).await.unwrap_err();
    let elapsed = start.elapsed();
    let text = err.to_string();
    println!("plan: {:.1} s: {text}", elapsed.as_secs_f64());
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    assert!(text.starts_with("perimeter: "), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("what to do:"), "{text}");

    let events = events.lock().unwrap().clone();
    for e in &events {
        println!("  {e:?}");
    }
    assert!(
        events.contains(&ProgressEvent::StepStarted {
            step: "read the perimeter".into()
        }),
        "{events:?}"
    );
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Retrying { step, reason, .. } if step == "read the perimeter" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2, "three attempts in all: {retries:?}");
    assert!(
        retries
            .iter()
            .all(|r| r.contains("connection refused") && r.contains(&url)),
        "{retries:?}"
    );
    assert!(
        events.contains(&ProgressEvent::StepFinished {
            step: "read the perimeter".into(),
            ok: false
        }),
        "{events:?}"
    );
    // The other stages, whose endpoints work, were read.
    assert!(
        events.contains(&ProgressEvent::StepFinished {
            step: "read the DNS zones".into(),
            ok: true
        }),
        "{events:?}"
    );
    // Nothing was written (getIamPolicy is a read sent as POST).
    let writes: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| {
            !matches!(r.method.as_str(), "GET" | "HEAD") && !r.path.ends_with(":getIamPolicy")
        })
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}
