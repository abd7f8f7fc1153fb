//! Cloud Build: the real gcloud against it, the operation flow, crane copy steps run against the
//! emulator's registry, timeouts, cancellation and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions, SEEDED_IMAGES};
use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const CB: &str = "cloudbuild";
const CRANE: &str = "gcr.io/go-containerregistry/crane:debug";
const MIRROR: &str = "us-docker.pkg.dev/kf-dev/kubeflow-mirror";

/// The step the lead's client generates to mirror `src` to `dst`.
fn copy_step(id: &str, src: &str, dst: &str) -> Value {
    json!({
        "name": CRANE,
        "entrypoint": "sh",
        "args": ["-c", format!("crane copy '{src}' '{dst}' && crane digest '{dst}' > \"$$BUILDER_OUTPUT/output\"")],
        "id": id,
        "waitFor": ["-"],
    })
}

/// One copy step per seeded image, into the mirror.
fn mirror_build() -> Value {
    let steps: Vec<Value> = SEEDED_IMAGES
        .iter()
        .enumerate()
        .map(|(i, image)| copy_step(&format!("img{i}"), image, &format!("{MIRROR}/{image}")))
        .collect();
    json!({ "steps": steps })
}

/// Standard base64, to compare `buildStepOutputs` (bytes) with what crane would write.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(A[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

fn tag_digest(em: &Emulator, image: &str) -> Option<String> {
    let (repo, tag) = image.rsplit_once(':').unwrap();
    em.state()["registry"]["repositories"][repo]["tags"][tag]
        .as_str()
        .map(str::to_string)
}

async fn create(em: &Emulator, path: &str, build: Value) -> (u16, Value) {
    call(em, CB, Method::POST, path, Some(build)).await
}

/// Polls operation `name` until it is done (at most 20 s) and returns it.
async fn wait_done(em: &Emulator, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, op) = call(em, CB, Method::GET, &format!("v1/{name}"), None).await;
        assert_eq!(status, 200, "{op}");
        if op["done"] == true {
            return op;
        }
        assert!(tokio::time::Instant::now() < deadline, "{op}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn operation_flow_and_crane_copies_into_the_registry() {
    // Queued for the first 100 ms, working until 1 s.
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(1000),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let (status, op) = create(&em, "v1/projects/kf-dev/builds", mirror_build()).await;
    assert_eq!(status, 200, "{op}");
    let name = op["name"].as_str().unwrap().to_string();
    let build = &op["metadata"]["build"];
    let id = build["id"].as_str().unwrap().to_string();
    assert_eq!(
        name,
        format!("operations/build/kf-dev/{}", base64(id.as_bytes()))
    );
    assert_eq!(op["done"], false);
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
    );
    assert_eq!(build["status"], "QUEUED");
    assert_eq!(build["projectId"], "kf-dev");
    assert_eq!(build["timeout"], "600s");
    assert!(build["createTime"].as_str().unwrap().ends_with('Z'));
    assert!(build["logUrl"].as_str().unwrap().contains(&id));
    assert_eq!(
        build["name"],
        format!("projects/123456789012/locations/global/builds/{id}").as_str()
    );
    assert!(build.get("startTime").is_none());
    assert!(
        build["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "QUEUED")
    );
    // Nothing copied yet: the copies take effect as the steps end.
    assert_eq!(
        tag_digest(&em, &format!("{MIRROR}/{}", SEEDED_IMAGES[0])),
        None
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, b) = call(
        &em,
        CB,
        Method::GET,
        &format!("v1/projects/kf-dev/builds/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["status"], "WORKING");
    assert!(b["startTime"].is_string());
    assert!(
        b["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "WORKING")
    );
    let (_, running) = call(&em, CB, Method::GET, &format!("v1/{name}"), None).await;
    assert_eq!(running["done"], false);
    assert_eq!(running["metadata"]["build"]["status"], "WORKING");

    let done = wait_done(&em, &name).await;
    let response = &done["response"];
    assert_eq!(
        response["@type"],
        "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
    );
    assert_eq!(response["status"], "SUCCESS");
    assert!(response["finishTime"].is_string());
    let outputs = response["results"]["buildStepOutputs"].as_array().unwrap();
    assert_eq!(outputs.len(), SEEDED_IMAGES.len());
    for (i, image) in SEEDED_IMAGES.iter().enumerate() {
        let src = tag_digest(&em, image).unwrap();
        let dst = tag_digest(&em, &format!("{MIRROR}/{image}")).expect("copied");
        assert_eq!(src, dst, "{image}");
        // What `crane digest DST > $BUILDER_OUTPUT/output` writes: the digest and a newline.
        assert_eq!(
            outputs[i],
            base64(format!("{dst}\n").as_bytes()).as_str(),
            "{image}"
        );
        let step = &response["steps"][i];
        assert_eq!(step["status"], "SUCCESS");
        assert!(step["timing"]["startTime"].is_string());
        assert!(step["timing"]["endTime"].is_string());
    }
    // The whole index went over: children manifests and every blob.
    let state = em.state();
    let repos = &state["registry"]["repositories"];
    let from = &repos["docker.io/library/busybox"];
    let to = &repos[format!("{MIRROR}/docker.io/library/busybox").as_str()];
    assert_eq!(from["manifests"], to["manifests"]);
    assert_eq!(from["blobs"], to["blobs"]);
    assert_eq!(state["cloudbuild"]["builds"][0]["status"], "SUCCESS");

    // The location form: a regional operation name, GET through the location.
    let (status, op) = create(
        &em,
        "v1/projects/kf-dev/locations/us-central1/builds",
        json!({"steps": [{"name": "gcr.io/go-containerregistry/crane", "args": ["copy", "gcr.io/ml-pipeline/frontend:2.0.5", "gcr.io/kf-dev/frontend:2.0.5"]}]}),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    assert!(
        name.starts_with("projects/123456789012/locations/us-central1/operations/"),
        "{name}"
    );
    let id = op["metadata"]["build"]["id"].as_str().unwrap();
    let done = wait_done(&em, name).await;
    assert_eq!(done["response"]["status"], "SUCCESS");
    // The plain form has no output.
    assert_eq!(done["response"]["results"]["buildStepOutputs"], json!([""]));
    let by_project_id = name.replace("123456789012", "kf-dev");
    assert_eq!(
        call(&em, CB, Method::GET, &format!("v1/{by_project_id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        tag_digest(&em, "gcr.io/kf-dev/frontend:2.0.5"),
        tag_digest(&em, "gcr.io/ml-pipeline/frontend:2.0.5")
    );
    // A global build is not found through another location, nor a regional one globally.
    assert_eq!(
        call(
            &em,
            CB,
            Method::GET,
            &format!("v1/projects/kf-dev/builds/{id}"),
            None
        )
        .await
        .0,
        404
    );
    let (status, _) = call(
        &em,
        CB,
        Method::GET,
        &format!("v1/projects/kf-dev/locations/us-central1/builds/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Lists: newest first, filtered by status as gcloud sends it.
    let (_, list) = call(
        &em,
        CB,
        Method::GET,
        "v1/projects/kf-dev/locations/global/builds?filter=status%3D%22SUCCESS%22&pageSize=20",
        None,
    )
    .await;
    assert_eq!(list["builds"].as_array().unwrap().len(), 1);
    let (_, list) = call(
        &em,
        CB,
        Method::GET,
        "v1/projects/kf-dev/builds?filter=status%3D%22WORKING%22+OR+status%3D%22QUEUED%22",
        None,
    )
    .await;
    assert_eq!(list, json!({}));
    let (status, err) = call(
        &em,
        CB,
        Method::GET,
        "v1/projects/kf-dev/builds?filter=images%3D%22x%22",
        None,
    )
    .await;
    assert_eq!(status, 400, "{err}");

    // Every request is logged under the API's name.
    assert!(em.requests().iter().all(|r| r.api == CB));
    assert!(
        em.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/v1/projects/kf-dev/builds")
    );
}

#[tokio::test]
async fn failed_steps_fail_the_build_but_other_steps_run() {
    let em = emulator().await;
    let build = json!({
        "steps": [
            copy_step("missing", "docker.io/library/nope:1", &format!("{MIRROR}/docker.io/library/nope:1")),
            {"name": "ubuntu", "args": ["echo", "hi"], "id": "other", "waitFor": ["-"]},
            copy_step("ok", "docker.io/library/nginx:1.27", &format!("{MIRROR}/docker.io/library/nginx:1.27")),
        ],
    });
    let (status, op) = create(&em, "v1/projects/kf-dev/locations/global/builds", build).await;
    assert_eq!(status, 200, "{op}");
    // With lro = 0 the build is over at once.
    assert_eq!(op["done"], true);
    assert_eq!(op["error"]["code"], 2);
    assert!(op.get("response").is_none());
    let b = &op["metadata"]["build"];
    assert_eq!(b["status"], "FAILURE");
    let detail = b["statusDetail"].as_str().unwrap();
    assert!(
        detail.contains("build step 0") && detail.contains("\"missing\""),
        "{detail}"
    );
    let why = b["failureInfo"]["detail"].as_str().unwrap();
    assert!(why.contains("MANIFEST_UNKNOWN"), "{why}");
    assert!(why.contains("the emulator cannot run"), "{why}");
    let statuses: Vec<&str> = b["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["FAILURE", "FAILURE", "SUCCESS"]);
    let nginx = tag_digest(&em, "docker.io/library/nginx:1.27").unwrap();
    assert_eq!(
        tag_digest(&em, &format!("{MIRROR}/docker.io/library/nginx:1.27")),
        Some(nginx.clone())
    );
    assert_eq!(
        b["results"]["buildStepOutputs"],
        json!(["", "", base64(format!("{nginx}\n").as_bytes())])
    );
}

#[tokio::test]
async fn timeouts_and_cancellation_stop_the_copies() {
    // Builds take 2 s: 200 ms queued, then working.
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_secs(2),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let dst = format!("{MIRROR}/docker.io/library/busybox:1.36");
    let mut build = json!({"steps": [copy_step("b", "docker.io/library/busybox:1.36", &dst)]});
    build["timeout"] = json!("0.1s");
    let (_, op) = create(&em, "v1/projects/kf-dev/builds", build.clone()).await;
    let name = op["name"].as_str().unwrap().to_string();
    let done = wait_done(&em, &name).await;
    assert_eq!(done["error"]["code"], 4);
    let b = &done["metadata"]["build"];
    assert_eq!(b["status"], "TIMEOUT");
    assert_eq!(b["timeout"], "0.1s");
    assert_eq!(b["steps"][0]["status"], "TIMEOUT");
    assert_eq!(tag_digest(&em, &dst), None);

    build["timeout"] = json!("60s");
    let (_, op) = create(&em, "v1/projects/kf-dev/builds", build).await;
    let id = op["metadata"]["build"]["id"].as_str().unwrap().to_string();
    let (status, cancelled) = call(
        &em,
        CB,
        Method::POST,
        &format!("v1/projects/kf-dev/locations/global/builds/{id}:cancel"),
        Some(json!({"id": id, "name": format!("projects/kf-dev/locations/global/builds/{id}"), "projectId": "kf-dev"})),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, b) = call(
        &em,
        CB,
        Method::GET,
        &format!("v1/projects/kf-dev/builds/{id}"),
        None,
    )
    .await;
    assert_eq!(b["status"], "CANCELLED");
    assert_eq!(tag_digest(&em, &dst), None);
    let (_, op) = call(
        &em,
        CB,
        Method::GET,
        &format!("v1/{}", op["name"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(op["error"]["code"], 1);
    // Cancelling a finished build changes nothing.
    let (status, again) = call(
        &em,
        CB,
        Method::POST,
        &format!("v1/projects/kf-dev/builds/{id}:cancel"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["finishTime"], b["finishTime"]);
}

#[tokio::test]
async fn invalid_builds_are_refused() {
    let em = emulator().await;
    let step = json!({"name": "gcr.io/go-containerregistry/crane", "args": ["copy", "a", "b"]});
    let many: Vec<Value> = (0..301).map(|_| step.clone()).collect();
    let cases = [
        (json!({}), "at least one step"),
        (json!({"steps": many}), "at most 300 steps"),
        (
            json!({"steps": [step], "timeout": "ten minutes"}),
            "build.timeout",
        ),
        (json!({"steps": [step], "timeout": "0s"}), "invalid timeout"),
        (
            json!({"steps": [{"name": CRANE, "args": ["copy", "$SRC", "b"]}]}),
            "key in the template \"SRC\" is not a valid built-in substitution",
        ),
        (
            json!({"steps": [{"name": CRANE, "args": ["copy", "${_SRC}", "b"]}]}),
            "key in the template \"_SRC\" is not matched in the substitution data",
        ),
        (
            json!({"steps": [step], "substitutions": {"_UNUSED": "x"}}),
            "key \"_UNUSED\" in the substitution data is not matched in the template",
        ),
        (
            json!({"steps": [{"args": ["x"]}]}),
            "build step 0 must specify name",
        ),
        (
            json!({"steps": [{"name": CRANE, "waitFor": ["nope"]}]}),
            "waits for \"nope\"",
        ),
    ];
    for (build, message) in cases {
        let (status, body) = create(&em, "v1/projects/kf-dev/builds", build).await;
        assert_eq!(status, 400, "{message}: {body}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let got = body["error"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{got}");
    }
    // `$$` is a literal `$`, and user substitutions are expanded.
    let (status, op) = create(
        &em,
        "v1/projects/kf-dev/builds",
        json!({
            "steps": [copy_step("q", "${_SRC}", "gcr.io/$PROJECT_ID/cm:v1")],
            "substitutions": {"_SRC": "quay.io/jetstack/cert-manager-controller:v1.14.5"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["status"], "SUCCESS", "{op}");
    assert_eq!(
        tag_digest(&em, "gcr.io/kf-dev/cm:v1"),
        tag_digest(&em, "quay.io/jetstack/cert-manager-controller:v1.14.5")
    );
    assert!(em.state()["cloudbuild"]["builds"].as_array().unwrap().len() == 1);
    // Unknown project, unknown build.
    assert_eq!(
        create(&em, "v1/projects/nope/builds", mirror_build())
            .await
            .0,
        403
    );
    assert_eq!(
        call(&em, CB, Method::GET, "v1/projects/kf-dev/builds/nope", None)
            .await
            .0,
        404
    );
    em.reset();
    assert_eq!(em.state()["cloudbuild"]["builds"], json!([]));
}

async fn gcloud(config: &Path, cwd: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, Some(cwd), &[], args).await
}

fn configure(em: &Emulator) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gcloud");
    em.write_gcloud_config(&config).unwrap();
    (dir, config)
}

#[tokio::test]
async fn gcloud_builds_submit_describe_and_list() {
    let em = emulator().await;
    let (dir, cfg) = configure(&em);
    let cwd = dir.path();
    let dst = format!("{MIRROR}/docker.io/library/busybox:1.36");
    // The build config as the lead's client writes it, in YAML.
    let yaml = format!(
        "steps:\n- name: {CRANE}\n  entrypoint: sh\n  args: [\"-c\", \"crane copy 'docker.io/library/busybox:1.36' '{dst}' && crane digest '{dst}' > \\\"$$BUILDER_OUTPUT/output\\\"\"]\n  id: busybox\n  waitFor: [\"-\"]\ntags: [kfsec]\n"
    );
    std::fs::write(cwd.join("cloudbuild.yaml"), yaml).unwrap();
    let submitted = gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "submit",
            "--no-source",
            "--config",
            "cloudbuild.yaml",
            "--async",
            "--format=json",
        ],
    )
    .await
    .json();
    let id = submitted["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["projectId"], "kf-dev");
    let digest = tag_digest(&em, "docker.io/library/busybox:1.36").unwrap();
    assert_eq!(tag_digest(&em, &dst), Some(digest.clone()));

    let described = gcloud(&cfg, cwd, &["builds", "describe", &id, "--format=json"])
        .await
        .json();
    assert_eq!(described["status"], "SUCCESS");
    assert_eq!(described["steps"][0]["id"], "busybox");
    assert_eq!(
        described["results"]["buildStepOutputs"][0],
        base64(format!("{digest}\n").as_bytes()).as_str()
    );
    let listed = gcloud(&cfg, cwd, &["builds", "list", "--format=json"])
        .await
        .json();
    assert_eq!(listed[0]["id"], id.as_str());
    let listed = gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "list",
            "--filter=tags=kfsec",
            "--format=value(id)",
        ],
    )
    .await
    .expect_ok();
    assert_eq!(listed.stdout.trim(), id);
    let ongoing = gcloud(
        &cfg,
        cwd,
        &["builds", "list", "--ongoing", "--format=value(id)"],
    )
    .await
    .expect_ok();
    assert_eq!(ongoing.stdout.trim(), "");

    // Without --async gcloud polls the build; logging NONE, as it would otherwise tail the logs
    // from storage.googleapis.com. A failed build fails the command with Cloud Build's detail.
    let failing = "steps:\n- name: gcr.io/go-containerregistry/crane\n  args: [copy, 'docker.io/library/nope:1', 'gcr.io/kf-dev/nope:1']\n  id: nope\noptions:\n  logging: NONE\n";
    std::fs::write(cwd.join("failing.yaml"), failing).unwrap();
    gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "submit",
            "--no-source",
            "--config",
            "failing.yaml",
        ],
    )
    .await
    .expect_err("BUILD FAILURE: Build step 0 (id \"nope\") failed");
    let working = failing
        .replace("docker.io/library/nope:1", "docker.io/library/nginx:1.27")
        .replace("gcr.io/kf-dev/nope:1", "gcr.io/kf-dev/nginx:1.27");
    std::fs::write(cwd.join("working.yaml"), working).unwrap();
    gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "submit",
            "--no-source",
            "--config",
            "working.yaml",
            "--region=us-central1",
        ],
    )
    .await
    .expect_ok();
    assert_eq!(
        tag_digest(&em, "gcr.io/kf-dev/nginx:1.27"),
        tag_digest(&em, "docker.io/library/nginx:1.27")
    );
    let regional = gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "list",
            "--region=us-central1",
            "--format=value(status)",
        ],
    )
    .await
    .expect_ok();
    assert_eq!(regional.stdout.trim(), "SUCCESS");
    // gcloud sent what the capture shows.
    assert!(em.requests().iter().any(|r| r.api == CB
        && r.method == "POST"
        && r.path == "/v1/projects/kf-dev/locations/global/builds"));
    assert!(em.requests().iter().any(|r| r.api == CB
        && r.method == "GET"
        && r.path == "/v1/projects/kf-dev/locations/us-central1/builds"));
}

#[tokio::test]
async fn gcloud_cancels_a_running_build() {
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_secs(30),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let (dir, cfg) = configure(&em);
    let cwd = dir.path();
    let yaml = "steps:\n- name: gcr.io/go-containerregistry/crane\n  args: [copy, 'docker.io/library/nginx:1.27', 'gcr.io/kf-dev/nginx:1.27']\n";
    std::fs::write(cwd.join("cloudbuild.yaml"), yaml).unwrap();
    let submitted = gcloud(
        &cfg,
        cwd,
        &[
            "builds",
            "submit",
            "--no-source",
            "--config",
            "cloudbuild.yaml",
            "--async",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(submitted["status"], "QUEUED");
    let id = submitted["id"].as_str().unwrap();
    let ongoing = gcloud(
        &cfg,
        cwd,
        &["builds", "list", "--ongoing", "--format=value(id)"],
    )
    .await
    .expect_ok();
    assert_eq!(ongoing.stdout.trim(), id);
    gcloud(&cfg, cwd, &["builds", "cancel", id])
        .await
        .expect_ok();
    let described = gcloud(&cfg, cwd, &["builds", "describe", id, "--format=json"])
        .await
        .json();
    assert_eq!(described["status"], "CANCELLED");
    assert_eq!(tag_digest(&em, "gcr.io/kf-dev/nginx:1.27"), None);
}
