//! Flows against the emulator: create and wait, a second apply that sends nothing, the
//! Service annotated in place, someone else's objects and IAP members kept, managed
//! certificates, a deadline that runs out, bad input that sends nothing.

use std::time::Duration;

use kfsec_core::{Action, Outcome, ProgressEvent, Severity};
use kfsec_iapingress::{ACCESSOR_ROLE, IngressError};
use kube::api::{Api, PostParams};

use crate::common::{
    IAP_RESOURCE, connection, emulator, example_spec, gcloud, handle, iap_policy, members,
    mutating_since, object, recorder, spec_with, workload,
};

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_the_entrance_grants_access_waits_and_a_second_apply_sends_nothing() {
    let emu = emulator(Duration::from_millis(600)).await;
    let (progress, events) = recorder();
    let ingress = handle(&emu).await.with_progress(progress);
    let spec = example_spec();
    workload(&emu).await;

    let since = emu.requests().len();
    let plan = ingress.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert_eq!(plan.plan.counts(), (4, 2, 1), "{text}");
    assert!(mutating_since(&emu, since).is_empty(), "plan only reads");

    let report = ingress.apply(&plan).await.unwrap();
    let rendered = report.render_text();
    assert!(!report.has_failures(), "{rendered}");
    let outcomes: Vec<(String, Outcome)> = report
        .entries
        .iter()
        .map(|e| (e.resource.kind.clone(), e.outcome.clone()))
        .collect();
    let created = |k: &str| (k.to_string(), Outcome::Created);
    assert_eq!(
        outcomes,
        [
            created("Secret"),
            created("BackendConfig"),
            created("FrontendConfig"),
            ("Service".to_string(), Outcome::Updated),
            created("Ingress"),
            ("IAP access".to_string(), Outcome::Updated),
            ("Ingress address".to_string(), Outcome::Unchanged),
        ],
        "{rendered}"
    );
    assert!(rendered.contains("34.120."), "{rendered}");

    // The objects, as a cluster would hold them.
    let secret = object(&emu, "v1/Secret", "kubeflow/envoy-ingress-tls").expect("tls secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(secret["data"][key].as_str().is_some_and(|s| !s.is_empty()));
    }
    let bc = object(
        &emu,
        "cloud.google.com/v1/BackendConfig",
        "kubeflow/envoy-ingress-iap",
    )
    .expect("backend config");
    assert_eq!(bc["spec"]["iap"]["enabled"], true);
    assert!(bc["spec"]["iap"].get("oauthclientCredentials").is_none());
    assert_eq!(bc["spec"]["healthCheck"]["requestPath"], "/healthz");
    let fc = object(
        &emu,
        "networking.gke.io/v1beta1/FrontendConfig",
        "kubeflow/envoy-ingress",
    )
    .expect("frontend config");
    assert_eq!(fc["spec"]["redirectToHttps"]["enabled"], true);
    let ing = object(
        &emu,
        "networking.k8s.io/v1/Ingress",
        "kubeflow/envoy-ingress",
    )
    .expect("ingress");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "envoy-ingress-tls");
    assert_eq!(
        ing["spec"]["tls"][0]["hosts"][0],
        "kubeflow.endpoints.kf-dev.cloud.goog"
    );
    assert_eq!(
        ing["metadata"]["annotations"]["networking.gke.io/v1beta1.FrontendConfig"],
        "envoy-ingress"
    );
    assert!(
        ing["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["manager"] == "kfsec" && f["operation"] == "Apply"),
        "server-side apply with field manager kfsec: {ing}"
    );
    assert!(ing["status"]["loadBalancer"]["ingress"][0]["ip"].is_string());

    // Access, as IAP holds it and as gcloud shows it.
    assert_eq!(
        members(&iap_policy(&emu), ACCESSOR_ROLE),
        ["user:alice@example.com"]
    );
    let shown = gcloud(
        &emu,
        &[
            "iap",
            "web",
            "get-iam-policy",
            "--resource-type=backend-services",
            "--project=kf-dev",
            "--format=json",
        ],
    )
    .await;
    assert!(shown.contains("user:alice@example.com"), "{shown}");

    // apply waited, and said what it was waiting for.
    let waiting: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Waiting { step, status, .. } if step.starts_with("wait for ingress") => {
                status.clone()
            }
            _ => None,
        })
        .collect();
    assert!(waiting.iter().any(|s| s == "no address yet"), "{waiting:?}");

    // The second run: nothing to change, no certificate made again, no mutating request.
    let since = emu.requests().len();
    let again = ingress.plan(&spec).await.unwrap();
    assert!(again.plan.is_empty(), "{}", again.plan.render_text());
    let report = ingress.apply(&again).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    assert_eq!(mutating_since(&emu, since), Vec::<String>::new());
    let same = object(&emu, "v1/Secret", "kubeflow/envoy-ingress-tls").unwrap();
    assert_eq!(same["data"], secret["data"], "the certificate is kept");

    // And verify finds nothing serious.
    let findings = ingress.verify(&spec).await.unwrap();
    assert!(
        findings.iter().all(|f| f.severity < Severity::Medium),
        "{}",
        kfsec_core::finding::render_findings(&findings)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_service_is_annotated_in_place_and_keeps_everything_else() {
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu).await;
    let spec = example_spec();
    // The workload made the namespace and its Service first.
    workload(&emu).await;

    let plan = ingress.plan(&spec).await.unwrap();
    let service = plan
        .plan
        .changes
        .iter()
        .find(|c| c.resource.kind == "Service")
        .unwrap();
    assert!(
        matches!(&service.action, Action::Update { diffs } if diffs.iter().all(|d| d.path.starts_with("metadata.annotations"))),
        "{}",
        plan.plan.render_text()
    );
    let ns = plan
        .plan
        .changes
        .iter()
        .find(|c| c.resource.kind == "Namespace")
        .unwrap();
    assert_eq!(
        ns.action,
        Action::Unchanged,
        "the workload's namespace is kept"
    );
    let report = ingress.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());

    let live = object(&emu, "v1/Service", "kubeflow/envoy").unwrap();
    let annotations = &live["metadata"]["annotations"];
    assert_eq!(annotations["team"], "ml-platform");
    assert_eq!(
        annotations["cloud.google.com/backend-config"],
        r#"{"default":"envoy-ingress-iap"}"#
    );
    assert_eq!(annotations["cloud.google.com/neg"], r#"{"ingress":true}"#);
    assert_eq!(live["spec"]["ports"][0]["port"], 8080, "{live}");
    assert_eq!(live["metadata"]["labels"]["app"], "envoy");
    assert!(
        live["metadata"]["labels"]
            .get("app.kubernetes.io/managed-by")
            .is_none(),
        "kfsec does not claim the workload's Service: {live}"
    );
    let ns = object(&emu, "v1/Namespace", "kubeflow").unwrap();
    assert!(
        ns["metadata"]["labels"]
            .get("app.kubernetes.io/managed-by")
            .is_none(),
        "nor its namespace: {ns}"
    );

    let since = emu.requests().len();
    let again = ingress.plan(&spec).await.unwrap();
    assert!(again.plan.is_empty(), "{}", again.plan.render_text());
    ingress.apply(&again).await.unwrap();
    assert_eq!(mutating_since(&emu, since), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_someone_else_made_is_left_alone() {
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu).await.with_wait(None);
    let spec = example_spec();
    let kube = kfsec_kube::kube_client(&connection(&emu)).await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "kubeflow"}})).unwrap(),
        )
        .await
        .unwrap();
    let theirs = serde_json::json!({
        "metadata": {"name": "envoy-ingress", "annotations": {"owner": "someone-else"}},
        "spec": {"defaultBackend": {"service": {"name": "theirs", "port": {"number": 80}}}}
    });
    Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(kube, "kubeflow")
        .create(
            &PostParams::default(),
            &serde_json::from_value(theirs).unwrap(),
        )
        .await
        .unwrap();

    let plan = ingress.plan(&spec).await.unwrap();
    let change = plan
        .plan
        .changes
        .iter()
        .find(|c| c.resource.kind == "Ingress")
        .unwrap();
    assert_eq!(change.action, Action::Unchanged);
    assert!(
        change
            .notes
            .iter()
            .any(|n| n.contains("kfsec did not make")),
        "{}",
        plan.plan.render_text()
    );
    ingress.apply(&plan).await.unwrap();
    let live = object(
        &emu,
        "networking.k8s.io/v1/Ingress",
        "kubeflow/envoy-ingress",
    )
    .unwrap();
    assert_eq!(live["metadata"]["annotations"]["owner"], "someone-else");
    assert_eq!(
        live["spec"]["defaultBackend"]["service"]["name"], "theirs",
        "{live}"
    );
    assert!(live["spec"].get("tls").is_none());
    // verify says the entrance is not what the config asks for.
    let findings = ingress.verify(&spec).await.unwrap();
    assert!(
        findings.iter().any(|f| f.severity >= Severity::Medium),
        "{}",
        kfsec_core::finding::render_findings(&findings)
    );
}

/// `gcloud iap web add-iam-policy-binding` on the project's backend services.
async fn gcloud_grant(emu: &kfsec_emulator::Emulator, member: &str, role: &str) {
    gcloud(
        emu,
        &[
            "iap",
            "web",
            "add-iam-policy-binding",
            "--resource-type=backend-services",
            "--project=kf-dev",
            &format!("--member={member}"),
            &format!("--role={role}"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_already_in_the_policy_are_kept() {
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu).await.with_wait(None);
    // Someone granted access (and another role) with gcloud before kfsec ran.
    for (member, role) in [
        ("user:bob@example.com", ACCESSOR_ROLE),
        ("group:admins@example.com", "roles/iap.admin"),
    ] {
        gcloud_grant(&emu, member, role).await;
    }
    let spec = spec_with("members: [user:alice@example.com, user:bob@example.com]\n");

    let plan = ingress.plan(&spec).await.unwrap();
    let access = plan
        .plan
        .changes
        .iter()
        .find(|c| c.resource.kind == "IAP access")
        .unwrap();
    let text = plan.plan.render_text();
    assert!(matches!(access.action, Action::Update { .. }), "{text}");
    assert!(text.contains("user:alice@example.com"), "{text}");
    // Between plan and apply, a third person grants access too: apply merges with what it
    // reads then, not with what plan saw.
    gcloud_grant(&emu, "user:carol@example.com", ACCESSOR_ROLE).await;
    let report = ingress.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());

    let policy = iap_policy(&emu);
    assert_eq!(
        members(&policy, ACCESSOR_ROLE),
        [
            "user:alice@example.com",
            "user:bob@example.com",
            "user:carol@example.com"
        ],
        "{policy}"
    );
    assert_eq!(
        members(&policy, "roles/iap.admin"),
        ["group:admins@example.com"]
    );

    // Members are only ever added: dropping alice from the config removes nobody.
    let fewer = spec_with("members: [user:bob@example.com]\n");
    let since = emu.requests().len();
    let plan = ingress.plan(&fewer).await.unwrap();
    ingress.apply(&plan).await.unwrap();
    assert!(
        !mutating_since(&emu, since)
            .iter()
            .any(|r| r.contains(IAP_RESOURCE)),
        "no IAP write"
    );
    assert_eq!(members(&iap_policy(&emu), ACCESSOR_ROLE).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_certificate_replaces_the_secret() {
    let emu = emulator(Duration::ZERO).await;
    workload(&emu).await;
    let ingress = handle(&emu).await;
    let spec = spec_with("tls: managed\nstatic_ip: kf-private-ip\n");
    let plan = ingress.plan(&spec).await.unwrap();
    let report = ingress.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    let cert = object(
        &emu,
        "networking.gke.io/v1/ManagedCertificate",
        "kubeflow/envoy-ingress",
    )
    .expect("managed certificate");
    assert_eq!(
        cert["spec"]["domains"],
        serde_json::json!(["kubeflow.endpoints.kf-dev.cloud.goog"])
    );
    assert!(object(&emu, "v1/Secret", "kubeflow/envoy-ingress-tls").is_none());
    let ing = object(
        &emu,
        "networking.k8s.io/v1/Ingress",
        "kubeflow/envoy-ingress",
    )
    .unwrap();
    let annotations = &ing["metadata"]["annotations"];
    assert_eq!(
        annotations["networking.gke.io/managed-certificates"],
        "envoy-ingress"
    );
    assert_eq!(
        annotations["kubernetes.io/ingress.global-static-ip-name"],
        "kf-private-ip"
    );
    assert!(ing["spec"].get("tls").is_none(), "{ing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_secret_is_required_and_only_read() {
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu).await.with_wait(None);
    let spec = spec_with("tls: { secret: corp-wildcard }\n");
    let plan = ingress.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("MISSING"), "{text}");
    let report = ingress.apply(&plan).await.unwrap();
    assert!(report.has_failures(), "a missing secret is reported");
    let failed = report
        .entries
        .iter()
        .find(|e| matches!(e.outcome, Outcome::Failed { .. }))
        .unwrap();
    assert_eq!(failed.resource.name, "kubeflow/corp-wildcard");
    // The rest is still made, pointing at that secret.
    let ing = object(
        &emu,
        "networking.k8s.io/v1/Ingress",
        "kubeflow/envoy-ingress",
    )
    .unwrap();
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "corp-wildcard");
}

/// GET requests since the `since`-th whose path ends with `tail`.
fn reads_of(emu: &kfsec_emulator::Emulator, since: usize, tail: &str) -> usize {
    emu.requests()[since..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(tail))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_its_backend_service_the_wait_fails_at_once_naming_it() {
    // No backend Service (the workload made none): a wait of ten minutes is not started.
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu)
        .await
        .with_wait(Some(Duration::from_secs(600)))
        .with_backend_maker("the workload's manifest kubeflow.yaml");
    let plan = ingress.plan(&example_spec()).await.unwrap();
    let since = emu.requests().len();
    let report = tokio::time::timeout(Duration::from_secs(60), ingress.apply(&plan))
        .await
        .expect("apply waited for a Service that does not exist")
        .unwrap();
    let last = report.entries.last().unwrap();
    assert_eq!(last.resource.kind, "Ingress address");
    match &last.outcome {
        Outcome::Failed { error } => {
            assert!(
                error.contains(
                    "the backend Service kubeflow/envoy (ingress.backend.service) does not exist,"
                ),
                "{error}"
            );
            assert!(
                error.contains("the workload's manifest kubeflow.yaml must create it"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Everything before the wait was done, the namespace included (no workload made it:
    // kfsec makes it, labelled as its own).
    let ns = object(&emu, "v1/Namespace", "kubeflow").expect("namespace");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kfsec"
    );
    // One look at the Service, and not one poll of the Ingress.
    assert_eq!(
        reads_of(&emu, since, "/namespaces/kubeflow/services/envoy"),
        1
    );
    assert_eq!(
        reads_of(&emu, since, "/namespaces/kubeflow/ingresses/envoy-ingress"),
        0
    );
    // On its own the ingress says the workload must make it.
    let err = handle(&emu)
        .await
        .wait_ready(&example_spec(), Duration::from_secs(600))
        .await;
    match err {
        Err(e @ IngressError::NoBackend { .. }) => assert!(
            e.to_string().contains(
                "the workload section (workload.manifests or workload.kustomize) must create it"
            ),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }

    // The Service deleted while the ingress waits for its address: the wait ends at the
    // next poll.
    let emu = emulator(Duration::from_secs(600)).await;
    workload(&emu).await;
    let ingress = handle(&emu).await.with_wait(Some(Duration::from_secs(600)));
    let plan = ingress.plan(&example_spec()).await.unwrap();
    let apply = tokio::spawn(async move { ingress.apply(&plan).await });
    let kube = kfsec_kube::kube_client(&connection(&emu)).await.unwrap();
    // Once the wait has polled the Ingress, delete the Service.
    while reads_of(&emu, 0, "/namespaces/kubeflow/ingresses/envoy-ingress") < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(kube, "kubeflow");
    services
        .delete("envoy", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let deleted_at = emu.requests().len();
    let report = tokio::time::timeout(Duration::from_secs(60), apply)
        .await
        .expect("the wait went on without its Service")
        .unwrap()
        .unwrap();
    match &report.entries.last().unwrap().outcome {
        Outcome::Failed { error } => assert!(
            error.contains("does not exist any more: it was deleted while kfsec waited"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        reads_of(
            &emu,
            deleted_at,
            "/namespaces/kubeflow/ingresses/envoy-ingress"
        ) <= 1,
        "{:?}",
        &emu.requests()[deleted_at..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wait_ends_at_its_deadline_saying_what_it_saw() {
    // No address yet.
    let emu = emulator(Duration::from_secs(600)).await;
    workload(&emu).await;
    let ingress = handle(&emu)
        .await
        .with_wait(Some(Duration::from_millis(1500)));
    let plan = ingress.plan(&example_spec()).await.unwrap();
    let report = ingress.apply(&plan).await.unwrap();
    let last = report.entries.last().unwrap();
    assert_eq!(last.resource.kind, "Ingress address");
    match &last.outcome {
        Outcome::Failed { error } => {
            assert!(error.contains("no address yet"), "{error}");
            assert!(error.contains("kubeflow/envoy-ingress"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // Everything before the wait was done.
    assert!(
        object(
            &emu,
            "networking.k8s.io/v1/Ingress",
            "kubeflow/envoy-ingress"
        )
        .is_some()
    );
    assert_eq!(
        report
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Failed { .. }))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_any_request() {
    let emu = emulator(Duration::ZERO).await;
    let ingress = handle(&emu).await;
    let mut bad = spec_with("hostname: kubeflow\nmembers: []\n");
    bad.ingress.oauth = kfsec_iapingress::OAuthSpec::Custom(kfsec_iapingress::OAuthClient::new(
        "",
        kfsec_core::Secret::new(""),
    ));
    let err = ingress.plan(&bad).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IngressError::Invalid(_)), "{err:?}");
    for field in [
        "ingress.hostname",
        "ingress.members",
        "ingress.oauth.client_id",
        "ingress.oauth.client_secret",
    ] {
        assert!(text.contains(field), "{field} not named in: {text}");
    }
    assert!(ingress.verify(&bad).await.is_err());
    // A malformed member is refused as the config is read, with its path.
    let err = kfsec_core::validation::from_yaml::<kfsec_iapingress::Spec>(
        "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow.example.com\n  members: [user:alice@example.com, alice@example.com]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ingress.members[1]"), "{err}");
    assert_eq!(emu.requests().len(), 0, "no request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_deletes_kfsecs_objects_and_leaves_the_service_without_kfsecs_annotations() {
    let emu = emulator(Duration::from_millis(0)).await;
    let ingress = handle(&emu).await.with_wait(None);
    let spec = example_spec();
    workload(&emu).await;
    ingress
        .apply(&ingress.plan(&spec).await.unwrap())
        .await
        .unwrap();
    let service = || object(&emu, "v1/Service", "kubeflow/envoy").unwrap();
    assert!(service()["metadata"]["annotations"]["cloud.google.com/neg"].is_string());

    let since = emu.requests().len();
    let plan = ingress.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert!(
        mutating_since(&emu, since).is_empty(),
        "destroy_plan only reads"
    );
    assert!(text.contains("- Ingress kubeflow/"), "{text}");
    assert!(text.contains("~ Service kubeflow/envoy"), "{text}");
    // The workload's namespace holds the workload's Service: it stays.
    assert!(text.contains("= Namespace kubeflow"), "{text}");
    assert!(text.contains("IAP access"), "{text}");

    let report = ingress.destroy(&spec).await.unwrap();
    let rendered = report.render_text();
    assert!(!report.has_failures(), "{rendered}");
    let kinds: Vec<String> = emu.state()["kubernetes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, objects)| objects.as_object().is_some_and(|o| !o.is_empty()))
        .map(|(k, _)| k.clone())
        .collect();
    for gone in ["Ingress", "BackendConfig", "FrontendConfig"] {
        assert!(
            !kinds.iter().any(|k| k.ends_with(&format!("/{gone}"))),
            "{gone} left: {kinds:?}\n{rendered}"
        );
    }
    let annotations = service()["metadata"]["annotations"].clone();
    assert_eq!(
        annotations,
        serde_json::json!({"team": "ml-platform"}),
        "{rendered}"
    );
    assert_eq!(service()["spec"]["ports"][0]["port"], 8080);
    assert!(object(&emu, "v1/Namespace", "kubeflow").is_some());
    // IAP access is kept.
    assert!(!members(&iap_policy(&emu), ACCESSOR_ROLE).is_empty());

    let since = emu.requests().len();
    let again = ingress.destroy(&spec).await.unwrap();
    assert!(again.changed_nothing(), "{}", again.render_text());
    assert!(mutating_since(&emu, since).is_empty());
}
