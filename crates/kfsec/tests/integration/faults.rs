//! Faults and cancellation: with a fifth of the requests failing (429, 503, dropped
//! connections before or after the change), one apply reaches the state of a fault-free run,
//! for 20 seeds; an apply cancelled at any point and run again converges, with no duplicate.

use std::time::Duration;

use futures::StreamExt as _;
use kfsec::prelude::*;

use crate::common::{config, connection, emulator, first_difference, resources};

/// The state a fault-free apply leaves, and how long that apply took.
async fn baseline() -> (serde_json::Value, Duration) {
    let emu = emulator(100, 0.0, 0).await;
    let report = Kfsec::new(&connection(&emu))
        .apply(&config(), ApplyOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    (resources(&emu), report.elapsed)
}

/// `n` points in `0..within`, random but the same on every run (xorshift from a fixed seed).
pub(crate) fn random_points(n: usize, within: Duration, mut seed: u64) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            within.mul_f64((seed % 10_000) as f64 / 10_000.0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_fifth_of_requests_failing_one_apply_converges_for_20_seeds() {
    let (expected, _) = baseline().await;
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
    let (expected, took) = baseline().await;
    let config = config();
    // Random points within a whole run's time.
    for (i, after) in random_points(8, took, 0x5eed_cafe).into_iter().enumerate() {
        let after_ms = after.as_millis();
        let emu = emulator(100, 0.0, 0).await;
        let kfsec = Kfsec::new(&connection(&emu));
        let cancelled =
            tokio::time::timeout(after, kfsec.apply(&config, ApplyOptions::default())).await;
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
