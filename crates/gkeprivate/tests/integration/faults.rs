//! Faults: apply converges under 429s, 503s and dropped connections, without duplicates.

use kfsec_emulator::EmulatorOptions;

use crate::common::{clusters, compute_names, emulator, example_spec, handle};

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_under_faults_for_several_seeds() {
    let spec = example_spec();
    for seed in 1..=6 {
        let emu = emulator(EmulatorOptions {
            fault_rate: 0.2,
            fault_seed: seed,
            ..EmulatorOptions::default()
        })
        .await;
        let gke = handle(&emu).await;
        let plan = gke
            .plan(&spec)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: plan: {e}"));
        let report = gke
            .apply(&plan)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: apply: {e}"));
        assert!(
            !report.has_failures(),
            "seed {seed}: {}",
            report.render_text()
        );
        emu.set_faults(0.0, 0);
        assert_eq!(compute_names(&emu, "networks"), ["kf-net"], "seed {seed}");
        assert_eq!(
            compute_names(&emu, "subnetworks"),
            ["kf-subnet"],
            "seed {seed}"
        );
        assert_eq!(
            compute_names(&emu, "routes"),
            ["kf-private-google-vip"],
            "seed {seed}"
        );
        assert_eq!(
            compute_names(&emu, "firewalls"),
            ["kf-private-egress-google-vip", "kf-private-master-webhooks"],
            "seed {seed}"
        );
        let state = emu.state();
        assert_eq!(
            state["iam"]["serviceAccounts"].as_array().unwrap().len(),
            1,
            "seed {seed}"
        );
        let all = clusters(&emu);
        assert_eq!(all.len(), 1, "seed {seed}: {all:?}");
        // One create operation: a lost answer was not followed by a second create.
        let creates = emu.state()["container"]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["operationType"] == "CREATE_CLUSTER")
            .count();
        assert_eq!(creates, 1, "seed {seed}");
        let again = gke.plan(&spec).await.unwrap();
        assert!(
            again.plan.is_empty(),
            "seed {seed}: {}",
            again.plan.render_text()
        );
    }
}
