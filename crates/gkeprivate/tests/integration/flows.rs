//! Flows against the emulator: create with progress, idempotence, in-place updates, what is
//! never recreated, someone else's rules, legacy networks, failed operations, kubeconfig.

use std::time::Duration;

use kfsec_core::{Action, Cidr, Outcome, ProgressEvent};
use kfsec_emulator::EmulatorOptions;
use kfsec_gkeprivate::{GkeError, kubeconfig};

use crate::common::{
    clusters, compute_names, emulator, example_spec, gcloud, handle, mutating_since, recorder,
};

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_everything_with_progress_and_a_second_apply_sends_nothing() {
    let emu = emulator(EmulatorOptions {
        lro: Duration::from_millis(400),
        ..EmulatorOptions::default()
    })
    .await;
    let (progress, events) = recorder();
    let gke = handle(&emu).await.with_progress(progress);
    let spec = example_spec();

    let plan = gke.plan(&spec).await.unwrap();
    assert_eq!(plan.plan.changes.len(), 8, "{}", plan.plan.render_text());
    assert!(
        plan.plan
            .changes
            .iter()
            .all(|c| matches!(c.action, Action::Create { .. } | Action::Update { .. })),
        "{}",
        plan.plan.render_text()
    );
    assert!(mutating_since(&emu, 0).is_empty(), "plan only reads");

    let report = gke.apply(&plan).await.unwrap();
    let outcomes: Vec<(String, Outcome)> = report
        .entries
        .iter()
        .map(|e| (e.resource.kind.clone(), e.outcome.clone()))
        .collect();
    let created = |k: &str| (k.to_string(), Outcome::Created);
    assert_eq!(
        outcomes,
        [
            created("network"),
            created("subnet"),
            created("route"),
            created("firewall rule"),
            created("firewall rule"),
            created("service account"),
            ("project IAM bindings".to_string(), Outcome::Updated),
            created("cluster"),
        ],
        "{}",
        report.render_text()
    );

    // The cluster provisioned while apply waited, and said so.
    let events = events.lock().unwrap().clone();
    let waiting: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Waiting {
                step,
                status,
                elapsed,
                ..
            } if step == "cluster kf-private" => Some((status.clone(), *elapsed)),
            _ => None,
        })
        .collect();
    assert!(
        !waiting.is_empty(),
        "no progress while the cluster provisioned: {events:?}"
    );
    assert!(
        waiting.iter().all(|(s, _)| s.as_deref() == Some("RUNNING")),
        "{waiting:?}"
    );
    assert!(
        waiting.windows(2).all(|w| w[0].1 <= w[1].1),
        "elapsed grows: {waiting:?}"
    );
    assert!(events.contains(&ProgressEvent::StepFinished {
        step: "cluster kf-private".into(),
        ok: true
    }));

    assert_eq!(compute_names(&emu, "networks"), ["kf-net"]);
    assert_eq!(compute_names(&emu, "subnetworks"), ["kf-subnet"]);
    assert_eq!(compute_names(&emu, "routes"), ["kf-private-google-vip"]);
    assert_eq!(
        compute_names(&emu, "firewalls"),
        ["kf-private-egress-google-vip", "kf-private-master-webhooks"]
    );
    let all = clusters(&emu);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "RUNNING");
    assert_eq!(all[0]["privateClusterConfig"]["enablePrivateNodes"], true);
    assert_eq!(
        all[0]["nodePools"][0]["config"]["serviceAccount"],
        "kf-private-nodes@kf-dev.iam.gserviceaccount.com"
    );

    // The node service account exists and has its roles; the project's owner is still there.
    let state = emu.state();
    let accounts = state["iam"]["serviceAccounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        accounts[0]["email"],
        "kf-private-nodes@kf-dev.iam.gserviceaccount.com"
    );
    let policy = gcloud(
        &emu,
        &["projects", "get-iam-policy", "kf-dev", "--format=json"],
    )
    .await;
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let members = |role: &str| -> Vec<String> {
        policy["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["role"] == role)
            .flat_map(|b| b["members"].as_array().unwrap().clone())
            .map(|m| m.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(members("roles/owner"), ["user:alice@example.com"]);
    for role in kfsec_gkeprivate::NODE_ROLES {
        assert_eq!(
            members(role),
            ["serviceAccount:kf-private-nodes@kf-dev.iam.gserviceaccount.com"],
            "{policy}"
        );
    }

    // The second apply: nothing to change, and no mutating request.
    let since = emu.requests().len();
    let again = gke.plan(&spec).await.unwrap();
    assert!(again.plan.is_empty(), "{}", again.plan.render_text());
    let report = gke.apply(&again).await.unwrap();
    assert!(report.changed_nothing(), "{}", report.render_text());
    assert_eq!(mutating_since(&emu, since), Vec::<String>::new());

    // And verify is clean.
    let findings = gke.verify(&spec).await.unwrap();
    assert!(
        findings
            .iter()
            .all(|f| f.severity == kfsec_core::Severity::Info),
        "{findings:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authorized_networks_change_in_place_and_the_master_range_is_only_reported() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let mut spec = example_spec();
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();

    spec.cluster
        .authorized_networks
        .push("192.168.0.0/16".parse::<Cidr>().unwrap());
    let plan = gke.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("192.168.0.0/16"), "{text}");
    let since = emu.requests().len();
    let report = gke.apply(&plan).await.unwrap();
    assert_eq!(
        report.entries.last().unwrap().outcome,
        Outcome::Updated,
        "{}",
        report.render_text()
    );
    assert_eq!(
        mutating_since(&emu, since),
        ["container PUT /v1/projects/kf-dev/locations/us-central1-a/clusters/kf-private"]
    );
    let described = gcloud(
        &emu,
        &[
            "container",
            "clusters",
            "describe",
            "kf-private",
            "--zone=us-central1-a",
            "--format=value(masterAuthorizedNetworksConfig.cidrBlocks[].cidrBlock)",
        ],
    )
    .await;
    assert!(described.contains("192.168.0.0/16"), "{described}");
    assert!(described.contains("10.0.0.0/8"), "{described}");

    // A different master range cannot change in place: reported, never recreated.
    spec.cluster.master_cidr = "172.16.0.48/28".parse().unwrap();
    let plan = gke.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("needs recreation"), "{text}");
    let since = emu.requests().len();
    let report = gke.apply(&plan).await.unwrap();
    let last = report.entries.last().unwrap();
    assert!(
        last.detail
            .as_deref()
            .unwrap_or("")
            .contains("needs recreation"),
        "{}",
        report.render_text()
    );
    let mutating = mutating_since(&emu, since);
    assert!(
        mutating
            .iter()
            .all(|r| !r.contains(" DELETE ") && !r.contains("/clusters")),
        "{mutating:?}"
    );
    assert_eq!(clusters(&emu).len(), 1);
    assert_eq!(
        clusters(&emu)[0]["privateClusterConfig"]["masterIpv4CidrBlock"],
        "172.16.0.32/28"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_elses_firewall_rule_is_reported_and_kept() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    gcloud(
        &emu,
        &[
            "compute",
            "networks",
            "create",
            "kf-net",
            "--subnet-mode=custom",
        ],
    )
    .await;
    gcloud(
        &emu,
        &[
            "compute",
            "firewall-rules",
            "create",
            "kf-private-master-webhooks",
            "--network=kf-net",
            "--direction=INGRESS",
            "--source-ranges=172.16.0.32/28",
            "--allow=tcp:8443",
            "--description=the platform team's rule",
        ],
    )
    .await;

    let plan = gke.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("not created by kfsec"), "{text}");
    let report = gke.apply(&plan).await.unwrap();
    let entry = report
        .entries
        .iter()
        .find(|e| e.resource.name == "kf-private-master-webhooks")
        .unwrap();
    assert!(
        matches!(&entry.outcome, Outcome::Skipped { reason } if reason.contains("not kfsec's")),
        "{}",
        report.render_text()
    );
    let theirs = emu.state()["compute"]["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "kf-private-master-webhooks")
        .unwrap()
        .clone();
    assert_eq!(theirs["description"], "the platform team's rule");
    assert_eq!(theirs["allowed"][0]["ports"], serde_json::json!(["8443"]));
    // The plan keeps naming the difference, and verify says what it costs.
    assert!(!gke.plan(&spec).await.unwrap().plan.is_empty());
    let findings = gke.verify(&spec).await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.code == "firewall.webhooks_different" && f.message.contains("allowed")),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_network_is_explained_and_never_used() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    gcloud(
        &emu,
        &[
            "compute",
            "networks",
            "create",
            "kf-net",
            "--subnet-mode=legacy",
            "--range=10.240.0.0/16",
        ],
    )
    .await;
    let since = emu.requests().len();
    let err = gke.plan(&example_spec()).await.unwrap_err();
    assert!(matches!(err, GkeError::LegacyNetwork(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("legacy network"), "{text}");
    assert!(text.contains("network.name"), "{text}");
    assert!(mutating_since(&emu, since).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_network_operation_is_reported_with_googles_message_and_a_rerun_finishes() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let message = "Quota 'NETWORKS' exceeded.  Limit: 5.0 globally.";
    emu.fail_operations("compute", "insert networks/kf-net", message, 1);
    let err = gke
        .apply(&gke.plan(&spec).await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, GkeError::OperationFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(message), "{text}");
    assert!(text.contains("create network kf-net"), "{text}");
    assert!(compute_names(&emu, "networks").is_empty());

    let report = gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    assert_eq!(compute_names(&emu, "networks"), ["kf-net"]);
    assert_eq!(clusters(&emu).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cluster_creation_is_reported_with_googles_message_and_a_rerun_finishes() {
    let emu = emulator(EmulatorOptions {
        lro: Duration::from_millis(100),
        ..EmulatorOptions::default()
    })
    .await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let message = "Insufficient regional quota to satisfy request: resource \"CPUS\": request requires '6.0' and is short '2.0'.";
    emu.fail_operations("container", "CREATE_CLUSTER kf-private", message, 1);
    let err = gke
        .apply(&gke.plan(&spec).await.unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(message), "{text}");
    assert!(text.contains("create cluster kf-private"), "{text}");
    // The network part was done and stays; the failed cluster is gone, as on GKE.
    assert_eq!(compute_names(&emu, "subnetworks"), ["kf-subnet"]);
    assert!(clusters(&emu).is_empty(), "{:?}", clusters(&emu));

    // The re-run creates only what is missing.
    let plan = gke.plan(&spec).await.unwrap();
    let creates: Vec<_> = plan
        .plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create { .. }))
        .map(|c| c.resource.kind.clone())
        .collect();
    assert_eq!(creates, ["cluster"], "{}", plan.plan.render_text());
    let report = gke.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    assert_eq!(clusters(&emu).len(), 1);
    assert_eq!(compute_names(&emu, "networks"), ["kf-net"]);
    assert_eq!(compute_names(&emu, "routes").len(), 1);
    assert_eq!(compute_names(&emu, "firewalls").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_is_merged_private_and_gives_a_kube_config() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let err = gke.cluster(&spec).await.unwrap_err();
    assert!(err.to_string().contains("run apply first"), "{err}");
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    let cluster = gke.cluster(&spec).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kube").join("config");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.9.9.9\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\nusers:\n- name: other\n  user:\n    token: abc\ncurrent-context: other\n",
    )
    .unwrap();
    let entry = kubeconfig::entry(&spec, &cluster).unwrap();
    kubeconfig::write(&path, &entry).unwrap();
    kubeconfig::write(&path, &entry).unwrap(); // twice: still one entry

    let written = kube::config::Kubeconfig::read_from(&path).unwrap();
    let name = "gke_kf-dev_us-central1-a_kf-private";
    assert_eq!(written.current_context.as_deref(), Some(name));
    let names: Vec<_> = written.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["other", name]);
    let ours = written.clusters[1].cluster.as_ref().unwrap();
    assert_eq!(
        ours.server.as_deref(),
        Some(format!("https://{}", cluster.endpoint).as_str())
    );
    let ca = cluster
        .master_auth
        .as_ref()
        .unwrap()
        .cluster_ca_certificate
        .clone();
    assert_eq!(
        ours.certificate_authority_data.as_deref(),
        Some(ca.as_str())
    );
    let exec = written.auth_infos[1]
        .auth_info
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    assert_eq!(exec.command.as_deref(), Some("gke-gcloud-auth-plugin"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The same file gcloud would write: gcloud's own entry names the same server and CA.
    let config = kubeconfig::kube_config(&spec, &cluster).await.unwrap();
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        format!("https://{}", cluster.endpoint)
    );
    let roots = config.root_cert.expect("the CA from masterAuth");
    assert_eq!(roots.len(), 1);
    assert!(!roots[0].is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_deletes_what_kfsec_made_in_reverse_and_keeps_what_it_did_not() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    // Another team's rule in kfsec's network, and another team's network.
    gcloud(
        &emu,
        &[
            "compute",
            "firewall-rules",
            "create",
            "team-ssh",
            "--project=kf-dev",
            "--network=kf-net",
            "--allow=tcp:22",
            "--source-ranges=10.0.0.0/8",
        ],
    )
    .await;
    gcloud(
        &emu,
        &[
            "compute",
            "networks",
            "create",
            "team-net",
            "--project=kf-dev",
            "--subnet-mode=custom",
        ],
    )
    .await;

    let plan = gke.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert_eq!(plan.deletions(), 8, "{text}");
    assert!(
        text.contains("- cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private"),
        "{text}"
    );
    assert!(
        plan.render_gcloud()
            .contains("gcloud container clusters delete kf-private"),
        "{text}"
    );
    let before = emu.requests().len();
    assert!(
        mutating_since(&emu, before).is_empty(),
        "destroy_plan only reads"
    );

    let report = gke.destroy(&spec).await.unwrap();
    let text = report.render_text();
    let kinds: Vec<(&str, bool)> = report
        .entries
        .iter()
        .map(|e| (e.resource.kind.as_str(), e.outcome == Outcome::Deleted))
        .collect();
    assert_eq!(
        kinds,
        [
            ("cluster", true),
            ("project IAM bindings", true),
            ("service account", true),
            ("firewall rule", true),
            ("firewall rule", true),
            ("route", true),
            ("subnet", true),
            // team-ssh still uses it.
            ("network", false),
        ],
        "{text}"
    );
    assert!(text.contains("kept: still in use"), "{text}");
    assert!(clusters(&emu).is_empty());
    assert_eq!(compute_names(&emu, "firewalls"), ["team-ssh"]);
    assert_eq!(compute_names(&emu, "networks"), ["kf-net", "team-net"]);
    assert!(compute_names(&emu, "subnetworks").is_empty());
    let accounts = gcloud(
        &emu,
        &["iam", "service-accounts", "list", "--project=kf-dev"],
    )
    .await;
    assert!(!accounts.contains("kf-private-nodes"), "{accounts}");
    let policy = gcloud(
        &emu,
        &["projects", "get-iam-policy", "kf-dev", "--format=json"],
    )
    .await;
    assert!(!policy.contains("kf-private-nodes"), "{policy}");

    // Once the other team's rule is gone, a second destroy finishes the network and nothing else.
    gcloud(
        &emu,
        &[
            "compute",
            "firewall-rules",
            "delete",
            "team-ssh",
            "--project=kf-dev",
            "--quiet",
        ],
    )
    .await;
    let since = emu.requests().len();
    let again = gke.destroy(&spec).await.unwrap();
    assert_eq!(again.entries.len(), 1, "{}", again.render_text());
    assert_eq!(again.entries[0].outcome, Outcome::Deleted);
    let mutating = mutating_since(&emu, since);
    assert_eq!(mutating.len(), 1, "{mutating:?}");
    assert_eq!(compute_names(&emu, "networks"), ["team-net"]);
    let since = emu.requests().len();
    assert!(gke.destroy(&spec).await.unwrap().entries.is_empty());
    assert!(mutating_since(&emu, since).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_keeps_an_adopted_network_and_cluster() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    // The network existed before kfsec (no kfsec description): kfsec adopts it on apply ...
    gcloud(
        &emu,
        &[
            "compute",
            "networks",
            "create",
            "kf-net",
            "--project=kf-dev",
            "--subnet-mode=custom",
        ],
    )
    .await;
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    // ... and keeps it on destroy, with the reason in the plan.
    let plan = gke.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert!(text.contains("= network kf-net"), "{text}");
    assert!(text.contains("kept: kfsec did not create it"), "{text}");
    gke.destroy(&spec).await.unwrap();
    assert_eq!(compute_names(&emu, "networks"), ["kf-net"]);
    assert!(clusters(&emu).is_empty());
}
