//! Faults: 429s, 503s and dropped connections (some after the change was made) do not stop an
//! apply from converging in one run to the state a fault-free run reaches.

use kfsec_emulator::EmulatorOptions;

use crate::common::{acm_state, emulator, example_spec, fast, handle};

#[tokio::test]
async fn apply_converges_under_faults_for_several_seeds() {
    let clean = emulator(fast()).await;
    let vpcsc = handle(&clean).await;
    vpcsc
        .apply(&vpcsc.plan(&example_spec()).await.unwrap())
        .await
        .unwrap();
    let expected = acm_state(&clean);
    let expected_services = clean.state()["serviceusage"].clone();

    for seed in 1..=6 {
        let emu = emulator(EmulatorOptions {
            fault_rate: 0.2,
            fault_seed: seed,
            ..fast()
        })
        .await;
        let vpcsc = handle(&emu).await;
        let plan = vpcsc
            .plan(&example_spec())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: plan: {e}"));
        let report = vpcsc
            .apply(&plan)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: apply: {e}"));
        assert!(
            !report.has_failures(),
            "seed {seed}: {}",
            report.render_text()
        );
        let faulted = emu.requests().len();
        assert_eq!(acm_state(&emu), expected, "seed {seed}");
        assert_eq!(
            emu.state()["serviceusage"],
            expected_services,
            "seed {seed}"
        );
        // And a faults-free re-run finds nothing to do.
        emu.set_faults(0.0, 0);
        assert!(
            vpcsc.plan(&example_spec()).await.unwrap().plan.is_empty(),
            "seed {seed}"
        );
        assert!(faulted > 10);
    }
}
