//! Faults and cancellation: with a fifth of the requests failing (429, 503, dropped
//! connections before or after the change), one apply reaches the state of a fault-free run,
//! for 20 seeds; an apply cancelled at any point and run again converges, with no duplicate.

use std::time::Duration;

use futures::StreamExt as _;
use kfsec::prelude::*;

use crate::common::{config, connection, emulator, first_difference, resources};

/// The state a fault-free apply leaves.
async fn baseline() -> serde_json::Value {
    let emu = emulator(100, 0.0, 0).await;
    let report = Kfsec::new(&connection(&emu))
        .apply(&config(), ApplyOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    resources(&emu)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_fifth_of_requests_failing_one_apply_converges_for_20_seeds() {
    let expected = baseline().await;
    let config = config();
    // Four at a time: each run mostly waits on backoffs.
    let runs = futures::stream::iter(0..20u64)
        .map(|seed| {
            let config = config.clone();
            async move {
                let emu = emulator(100, 0.2, seed).await;
                let report = Kfsec::new(&connection(&emu))
                    .apply(&config, ApplyOptions::default())
                    .await
                    .unwrap();
                // The faults are turned off before reading the result.
                emu.set_faults(0.0, 0);
                (seed, report, resources(&emu))
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    for (seed, report, state) in runs {
        assert!(
            report.is_complete(),
            "seed {seed}: one apply did not finish:\n{}",
            report.render_text()
        );
        if let Some(d) = first_difference(&expected, &state, "") {
            panic!("seed {seed}: the state differs from a fault-free run at {d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_cancelled_at_any_point_then_run_again_converges_without_duplicates() {
    let expected = baseline().await;
    let config = config();
    // Cancellation points spread over a run (which takes about 3 s with these operations).
    for (i, after_ms) in [30u64, 250, 600, 1100, 1700, 2400].into_iter().enumerate() {
        let emu = emulator(100, 0.0, 0).await;
        let kfsec = Kfsec::new(&connection(&emu));
        let cancelled = tokio::time::timeout(
            Duration::from_millis(after_ms),
            kfsec.apply(&config, ApplyOptions::default()),
        )
        .await;
        let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
        assert!(
            report.is_complete(),
            "cancelled after {after_ms} ms (finished anyway: {}), then: {}",
            cancelled.is_ok(),
            report.render_text()
        );
        let state = resources(&emu);
        if let Some(d) = first_difference(&expected, &state, "") {
            panic!("cancel #{i} after {after_ms} ms: the state differs at {d}");
        }
    }
}
