//! Faults: apply converges in one run under 429s, 503s and dropped connections.

use kfsec_emulator::EmulatorOptions;

use crate::common::{emulator, example_spec, handle, records};

#[tokio::test]
async fn apply_converges_under_faults_for_several_seeds() {
    let clean = emulator(EmulatorOptions::default()).await;
    let dns = handle(&clean).await;
    dns.apply(&dns.plan(&example_spec()).await.unwrap())
        .await
        .unwrap();
    let zones = [
        "kubeflow-gcr-io",
        "kubeflow-pkg-dev",
        "kubeflow-googleapis-com",
    ];
    let expected: Vec<_> = zones.iter().map(|z| records(&clean, z)).collect();

    for seed in 1..=6 {
        let emu = emulator(EmulatorOptions {
            fault_rate: 0.2,
            fault_seed: seed,
            ..EmulatorOptions::default()
        })
        .await;
        let dns = handle(&emu).await;
        let plan = dns
            .plan(&example_spec())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: plan: {e}"));
        let report = dns
            .apply(&plan)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: apply: {e}"));
        assert!(
            !report.has_failures(),
            "seed {seed}: {}",
            report.render_text()
        );
        emu.set_faults(0.0, 0);
        let got: Vec<_> = zones.iter().map(|z| records(&emu, z)).collect();
        // A change that landed but whose answer was lost is not repeated: SOA serials may be
        // equal or higher, every other record set is the same.
        let strip = |v: &Vec<Vec<(String, String, Vec<String>)>>| -> Vec<Vec<(String, String, Vec<String>)>> {
            v.iter().map(|z| z.iter().filter(|r| r.1 != "SOA").cloned().collect()).collect()
        };
        assert_eq!(strip(&got), strip(&expected), "seed {seed}");
        assert!(
            dns.plan(&example_spec()).await.unwrap().plan.is_empty(),
            "seed {seed}"
        );
    }
}
