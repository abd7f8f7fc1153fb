//! The real gcloud CLI against the emulator, through `write_gcloud_config`.

use std::path::{Path, PathBuf};

use kfsec_emulator::Emulator;

use crate::emulator;
use crate::gcloud_cli::{self, Run};

async fn gcloud(config: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, None, &[], args).await
}

fn configure(em: &Emulator) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gcloud");
    em.write_gcloud_config(&config).unwrap();
    (dir, config)
}

#[tokio::test]
async fn gcloud_guide_sequence() {
    let em = emulator().await;
    let (dir, cfg) = configure(&em);

    let run = gcloud(
        &cfg,
        &[
            "services",
            "enable",
            "storage.googleapis.com",
            "bigquery.googleapis.com",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let list = gcloud(&cfg, &["services", "list", "--enabled", "--format=json"])
        .await
        .json();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["config"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["bigquery.googleapis.com", "storage.googleapis.com"]
    );

    let orgs = gcloud(
        &cfg,
        &[
            "organizations",
            "list",
            "--filter=displayName=example.com",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(orgs[0]["name"], "organizations/123456789");
    assert_eq!(orgs[0]["owner"]["directoryCustomerId"], "C0xxxxxxx");

    let project = gcloud(&cfg, &["projects", "describe", "kf-dev", "--format=json"])
        .await
        .json();
    assert_eq!(project["projectNumber"], "123456789012");
    assert_eq!(project["lifecycleState"], "ACTIVE");

    let acm = |args: &[&str]| {
        let mut v = vec!["access-context-manager"];
        v.extend_from_slice(args);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run_acm = |args: Vec<String>| {
        let cfg = cfg.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            gcloud(&cfg, &refs).await
        }
    };

    let run = run_acm(acm(&[
        "policies",
        "create",
        "--organization=123456789",
        "--title=default",
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let policies = run_acm(acm(&[
        "policies",
        "list",
        "--organization=123456789",
        "--format=json",
    ]))
    .await
    .json();
    assert_eq!(policies.as_array().unwrap().len(), 1);
    assert_eq!(policies[0]["title"], "default");
    let policy_name = policies[0]["name"].as_str().unwrap().to_string();
    let p = policy_name
        .trim_start_matches("accessPolicies/")
        .to_string();
    let policy = format!("--policy={p}");

    let spec = dir.path().join("level.yaml");
    std::fs::write(&spec, "- members: [user:alice@example.com]\n").unwrap();
    let spec_arg = format!("--basic-level-spec={}", spec.display());
    let run = run_acm(acm(&[
        "levels",
        "create",
        "kubeflow",
        &policy,
        "--title=Kubeflow kf-dev",
        &spec_arg,
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let level = run_acm(acm(&[
        "levels",
        "describe",
        "kubeflow",
        &policy,
        "--format=json",
    ]))
    .await
    .json();
    assert_eq!(
        level["name"],
        format!("{policy_name}/accessLevels/kubeflow")
    );
    assert_eq!(level["title"], "Kubeflow kf-dev");
    assert_eq!(
        level["basic"]["conditions"][0]["members"][0],
        "user:alice@example.com"
    );

    let run = run_acm(acm(&[
        "perimeters",
        "create",
        "KubeflowZone",
        &policy,
        "--title=Kubeflow Zone",
        "--resources=projects/123456789012",
        "--restricted-services=storage.googleapis.com",
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let run = run_acm(acm(&[
        "perimeters",
        "update",
        "KubeflowZone",
        &policy,
        "--add-restricted-services=pubsub.googleapis.com",
        "--add-access-levels=kubeflow",
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let perimeter = run_acm(acm(&[
        "perimeters",
        "describe",
        "KubeflowZone",
        &policy,
        "--format=json",
    ]))
    .await
    .json();
    assert_eq!(
        perimeter["status"]["restrictedServices"],
        serde_json::json!(["storage.googleapis.com", "pubsub.googleapis.com"])
    );
    assert_eq!(
        perimeter["status"]["accessLevels"],
        serde_json::json!([format!("{policy_name}/accessLevels/kubeflow")])
    );
    assert_eq!(
        perimeter["status"]["resources"],
        serde_json::json!(["projects/123456789012"])
    );

    let run = run_acm(acm(&[
        "perimeters",
        "dry-run",
        "update",
        "KubeflowZone",
        &policy,
        "--add-restricted-services=bigquery.googleapis.com",
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let run = run_acm(acm(&[
        "perimeters",
        "dry-run",
        "describe",
        "KubeflowZone",
        &policy,
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("+   bigquery.googleapis.com"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("    storage.googleapis.com"),
        "{}",
        run.stdout
    );
    let state = em.state();
    let stored = &state["accesscontextmanager"]["servicePerimeters"][0];
    assert_eq!(stored["useExplicitDryRunSpec"], true);
    assert_eq!(
        stored["spec"]["restrictedServices"],
        serde_json::json!([
            "storage.googleapis.com",
            "pubsub.googleapis.com",
            "bigquery.googleapis.com"
        ])
    );

    let run = run_acm(acm(&[
        "perimeters",
        "dry-run",
        "enforce",
        "KubeflowZone",
        &policy,
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let perimeter = run_acm(acm(&[
        "perimeters",
        "describe",
        "KubeflowZone",
        &policy,
        "--format=json",
    ]))
    .await
    .json();
    assert_eq!(
        perimeter["status"]["restrictedServices"],
        serde_json::json!([
            "storage.googleapis.com",
            "pubsub.googleapis.com",
            "bigquery.googleapis.com"
        ])
    );
    assert!(perimeter.get("spec").is_none());
    assert!(perimeter.get("useExplicitDryRunSpec").is_none());

    // `dry-run create` PATCHes a perimeter that does not exist yet (name in the update mask):
    // the emulator creates it, as Google does.
    let run = run_acm(acm(&[
        "perimeters",
        "dry-run",
        "create",
        "StagedZone",
        &policy,
        "--perimeter-title=Staged Zone",
        "--perimeter-type=regular",
        "--perimeter-resources=projects/4242",
        "--perimeter-restricted-services=storage.googleapis.com",
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    let run = run_acm(acm(&[
        "perimeters",
        "dry-run",
        "describe",
        "StagedZone",
        &policy,
    ]))
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("projects/4242"), "{}", run.stdout);

    // gcloud's requests went where gcloud 528 sends them.
    let log = em.requests();
    let has = |api: &str, method: &str, path: &str| {
        log.iter()
            .any(|r| r.api == api && r.method == method && r.path == path)
    };
    assert!(has(
        "serviceusage",
        "POST",
        "/v1/projects/kf-dev/services:batchEnable"
    ));
    assert!(
        log.iter().any(|r| r.path == "/v1/projects/kf-dev/services"
            && r.query.contains("filter=state%3AENABLED"))
    );
    assert!(has(
        "cloudresourcemanager",
        "POST",
        "/v1/organizations:search"
    ));
    assert!(has("cloudresourcemanager", "GET", "/v1/projects/kf-dev"));
    assert!(log.iter().any(|r| {
        r.method == "PATCH"
            && r.query
                .contains("updateMask=spec%2Cstatus%2CuseExplicitDryRunSpec")
    }));
}

#[tokio::test]
async fn gcloud_prints_emulator_errors() {
    let em = emulator().await;
    let (dir, cfg) = configure(&em);
    let p = crate::create_policy(&em).await;
    let policy = format!("--policy={p}");

    let run = gcloud(
        &cfg,
        &[
            "access-context-manager",
            "policies",
            "create",
            "--organization=123456789",
            "--title=again",
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("Policy already exists with parent organizations/123456789"),
        "{}",
        run.stderr
    );

    let spec = dir.path().join("level.yaml");
    std::fs::write(&spec, "- members: [user:alice@example.com]\n").unwrap();
    let spec_arg = format!("--basic-level-spec={}", spec.display());
    let run = gcloud(
        &cfg,
        &[
            "access-context-manager",
            "levels",
            "create",
            "bad-name",
            &policy,
            "--title=Bad",
            &spec_arg,
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("INVALID_ARGUMENT"), "{}", run.stderr);
    assert!(
        run.stderr.contains("'bad-name' is not a valid name"),
        "{}",
        run.stderr
    );

    let run = gcloud(&cfg, &["services", "enable", "nope.googleapis.com"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("nope.googleapis.com"), "{}", run.stderr);
}
