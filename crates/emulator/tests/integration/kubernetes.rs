//! The Kubernetes API: the real kubectl (server-side apply of a multi-document manifest with a
//! CRD and a custom resource, get, delete) and the wire a plain HTTP client sees (apply
//! semantics, Status errors, discovery, the Ingress address after `lro`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{client, emulator};

const K8S: &str = "kubernetes";
const APPLY: &str = "application/apply-patch+yaml";

/// Runs kubectl against the emulator with a private discovery cache.
async fn kubectl(em: &Emulator, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec![
        "--server".to_string(),
        em.endpoint(K8S).unwrap().to_string(),
        "--cache-dir".to_string(),
        cache.display().to_string(),
    ];
    all.extend(args.iter().map(|s| (*s).to_string()));
    tokio::task::spawn_blocking(move || {
        let out = Command::new("kubectl")
            .args(&all)
            .env("KUBECONFIG", "/dev/null")
            .output()
            .expect("kubectl is installed");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Sends a request with a body of `content_type`; returns status and JSON.
async fn send(
    em: &Emulator,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let url = format!("{}{path}", em.endpoint(K8S).unwrap());
    let mut req = client().request(method, url);
    if !body.is_empty() {
        req = req
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(em: &Emulator, path: &str) -> (u16, Value) {
    send(em, Method::GET, path, "", "").await
}

/// An emulator whose controllers act `lro` after a change, with the namespace `kf-app`.
async fn with_controllers_after(lro: Duration) -> Emulator {
    let em = Emulator::start(EmulatorOptions {
        lro,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    make_namespace(&em).await;
    em
}

/// A server-side apply of `yaml` to the object at `path`, as field manager `kfsec`.
async fn apply(em: &Emulator, path: &str, yaml: &str) -> (u16, Value) {
    send(
        em,
        Method::PATCH,
        &format!("{path}?fieldManager=kfsec"),
        APPLY,
        yaml,
    )
    .await
}

const DEPLOY: &str = "apis/apps/v1/namespaces/kf-app/deployments/web";

fn deployment(replicas: u32, extra_label: bool) -> String {
    let label = if extra_label { "\n    team: ml" } else { "" };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: kf-app\n  labels:\n    app: web{label}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: gcr.io/kf-dev/web:1\n"
    )
}

async fn make_namespace(em: &Emulator) {
    let (status, ns) = send(
        em,
        Method::PATCH,
        "api/v1/namespaces/kf-app?fieldManager=kfsec",
        APPLY,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kf-app\n",
    )
    .await;
    assert_eq!(status, 201, "{ns}");
    assert_eq!(ns["status"]["phase"], "Active");
}

#[tokio::test]
async fn kubectl_applies_gets_and_deletes_a_workload() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/kubernetes_app.yaml");
    let manifest = manifest.to_str().unwrap();
    let apply = [
        "apply",
        "--server-side",
        "--field-manager=kfsec",
        "--validate=false",
        "-f",
        manifest,
    ];
    // As against a real cluster, the custom resource cannot be mapped until its CRD exists:
    // the first run applies everything else, the second the custom resource too.
    let (_, out, err) = kubectl(&em, &cache, &apply).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/profiles.kubeflow.org serverside-applied"
        ),
        "{out}\n{err}"
    );
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}\n{err}"
    );
    let (ok, out, err) = kubectl(&em, &cache, &apply).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("profile.kubeflow.org/alice serverside-applied"),
        "{out}"
    );

    let (ok, out, err) = kubectl(
        &em,
        &cache,
        &["get", "-n", "kf-app", "deployment", "web", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);

    let (ok, out, err) = kubectl(
        &em,
        &cache,
        &["get", "secret", "-n", "kf-app", "db", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["data"]["password"], "czNjcmV0");
    assert_eq!(s["type"], "Opaque");

    let (ok, out, err) = kubectl(&em, &cache, &["get", "profiles", "-o", "json"]).await;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list["items"][0]["spec"]["owner"]["name"],
        "alice@example.com"
    );

    // kubectl's discovery: legacy documents (the emulator does not answer the aggregated form).
    let paths: Vec<String> = em
        .requests()
        .into_iter()
        .filter(|r| r.api == K8S && r.method == "GET")
        .map(|r| r.path)
        .collect();
    for p in [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps/v1",
        "/apis/kubeflow.org/v1",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not in {paths:?}");
    }

    let state = em.state();
    let managed =
        &state["kubernetes"]["apps/v1/Deployment"]["kf-app/web"]["metadata"]["managedFields"];
    assert_eq!(managed[0]["manager"], "kfsec");
    assert_eq!(managed[0]["operation"], "Apply");
    assert!(state["kubernetes"]["kubeflow.org/v1/Profile"]["alice"].is_object());

    let (ok, out, err) = kubectl(&em, &cache, &["delete", "namespace", "kf-app"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("namespace \"kf-app\" deleted"), "{out}");
    let state = em.state();
    assert!(
        state["kubernetes"].get("apps/v1/Deployment").is_none(),
        "{}",
        state["kubernetes"]
    );
    let (ok, _, err) = kubectl(
        &em,
        &cache,
        &["delete", "-f", manifest, "--ignore-not-found"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        em.state()["kubernetes"]
            .get("kubeflow.org/v1/Profile")
            .is_none()
    );
}

#[tokio::test]
async fn server_side_apply_semantics() {
    let em = emulator().await;
    // A namespaced object needs its namespace.
    let url = format!("{DEPLOY}?fieldManager=kfsec");
    let (status, err) = send(&em, Method::PATCH, &url, APPLY, &deployment(1, false)).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["kind"], "Status");
    assert_eq!(err["reason"], "NotFound");
    assert_eq!(err["message"], "namespaces \"kf-app\" not found");
    make_namespace(&em).await;

    // Apply needs a field manager.
    let (status, err) = send(&em, Method::PATCH, DEPLOY, APPLY, &deployment(1, false)).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["reason"], "BadRequest");
    assert!(
        err["message"].as_str().unwrap().contains("fieldManager"),
        "{err}"
    );

    // Body and URL must agree.
    let (status, err) = send(
        &em,
        Method::PATCH,
        &url.replace("/web?", "/other?"),
        APPLY,
        &deployment(1, false),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = send(
        &em,
        Method::PATCH,
        &url,
        APPLY,
        &deployment(1, false).replace("apps/v1", "apps/v2"),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    // Create, then a no-op apply keeps the resourceVersion.
    let (status, d) = send(&em, Method::PATCH, &url, APPLY, &deployment(1, true)).await;
    assert_eq!(status, 201, "{d}");
    let rv = d["metadata"]["resourceVersion"].clone();
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "kfsec");
    assert_eq!(
        d["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );
    assert!(d["metadata"]["uid"].is_string() && d["metadata"]["creationTimestamp"].is_string());
    let (status, again) = send(&em, Method::PATCH, &url, APPLY, &deployment(1, true)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(again, d);

    // JSON is YAML too; a label the manager drops is removed; a spec change bumps generation.
    let json_body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "kf-app", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "gcr.io/kf-dev/web:1"}]}},
        },
    });
    let (status, d2) = send(&em, Method::PATCH, &url, APPLY, &json_body.to_string()).await;
    assert_eq!(status, 200, "{d2}");
    assert_eq!(d2["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d2["spec"]["replicas"], 3);
    assert_eq!(d2["metadata"]["generation"], 2);
    assert_ne!(d2["metadata"]["resourceVersion"], rv);

    // A field set by another manager's update survives this manager's applies.
    let (status, patched) = send(
        &em,
        Method::PATCH,
        &format!("{DEPLOY}?fieldManager=kubectl-annotate"),
        "application/merge-patch+json",
        r#"{"metadata":{"annotations":{"note":"hi"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let (_, d3) = send(&em, Method::PATCH, &url, APPLY, &deployment(3, false)).await;
    assert_eq!(d3["metadata"]["annotations"]["note"], "hi");
    assert_eq!(
        d3["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );

    // Another applier setting the same field to another value conflicts, unless forced.
    let other = format!("{DEPLOY}?fieldManager=autoscaler");
    let (status, err) = send(&em, Method::PATCH, &other, APPLY, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: kf-app\nspec:\n  replicas: 5\n").await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["reason"], "Conflict");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("conflict with \"kfsec\""),
        "{err}"
    );
    let (status, forced) = send(&em, Method::PATCH, &format!("{other}&force=true"), APPLY, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: kf-app\nspec:\n  replicas: 5\n").await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 5);
    let managers: Vec<&str> = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kfsec", "kubectl-annotate", "autoscaler"]);

    // Replace with a stale resourceVersion conflicts; create of an existing name too.
    let mut stale = d2.clone();
    stale["spec"]["replicas"] = json!(1);
    let (status, err) = send(
        &em,
        Method::PUT,
        DEPLOY,
        "application/json",
        &stale.to_string(),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{err}"
    );
    let (status, err) = send(
        &em,
        Method::POST,
        "apis/apps/v1/namespaces/kf-app/deployments",
        "application/json",
        &stale.to_string(),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["reason"], "AlreadyExists");
    assert_eq!(
        err["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );

    // Lists, selectors, Status on a missing object, and the status subresource.
    let (status, list) = get(&em, "apis/apps/v1/deployments?labelSelector=app%3Dweb").await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "DeploymentList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, list) = get(
        &em,
        "apis/apps/v1/namespaces/kf-app/deployments?labelSelector=team",
    )
    .await;
    assert_eq!(list["items"], json!([]));
    let (status, err) = get(&em, "apis/apps/v1/namespaces/kf-app/deployments/nope").await;
    assert_eq!(status, 404);
    assert_eq!(err["message"], "deployments.apps \"nope\" not found");
    let (status, _) = get(&em, &format!("{DEPLOY}/status")).await;
    assert_eq!(status, 200);

    // Status in an apply body is ignored where there is a status subresource.
    let (_, d4) = send(
        &em,
        Method::PATCH,
        &url,
        APPLY,
        &format!("{}status:\n  replicas: 99\n", deployment(3, false)),
    )
    .await;
    assert_ne!(d4["status"]["replicas"], 99);

    // Discovery.
    let (_, apis) = get(&em, "apis").await;
    assert!(
        apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "networking.gke.io")
    );
    let (_, core) = get(&em, "api/v1").await;
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "namespaces" && r["namespaced"] == false)
    );
    let (status, _) = get(&em, "apis/nope.example.com/v1").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ingress_gets_an_address_and_backends_after_lro() {
    let em = with_controllers_after(Duration::from_millis(300)).await;
    let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: kf-app\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n";
    let url = "apis/networking.k8s.io/v1/namespaces/kf-app/ingresses/web";
    let (status, created) = apply(&em, url, ingress).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("status").is_none(), "{created}");
    let (_, early) = get(&em, url).await;
    assert!(early["status"]["loadBalancer"].is_null(), "{early}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, ready) = get(&em, url).await;
    let ip = ready["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap();
    assert!(ip.starts_with("34.120."), "{ready}");
    let backends: Value = serde_json::from_str(
        ready["metadata"]["annotations"]["ingress.kubernetes.io/backends"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&String> = backends.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 2, "{backends}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("k8s1-") && n.contains("-kf-app-web-80-")),
        "{backends}"
    );
    // GKE's default backend answers; the app's has no Service yet, so no health.
    let health = |backends: &Value, part: &str| {
        backends
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.contains(part))
            .map(|(_, v)| v.as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        health(&backends, "-kube-system-default-http-backend-80-"),
        "HEALTHY"
    );
    assert_eq!(
        health(&backends, "-kf-app-web-80-"),
        "Unknown",
        "{backends}"
    );
    assert_ne!(
        ready["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // Once the workload's Service exists, its backend turns healthy.
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: kf-app\nspec:\n  ports:\n  - port: 80\n";
    let (status, body) = send(
        &em,
        Method::PATCH,
        "api/v1/namespaces/kf-app/services/web?fieldManager=kfsec",
        APPLY,
        service,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, later) = get(&em, url).await;
    let backends: Value = serde_json::from_str(
        later["metadata"]["annotations"]["ingress.kubernetes.io/backends"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        backends
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "HEALTHY"),
        "{backends}"
    );

    // Stable: reading again changes nothing; re-applying keeps the controller's annotation.
    let (_, again) = get(&em, url).await;
    assert_eq!(again, later);
    let (_, reapplied) = apply(&em, url, ingress).await;
    assert_eq!(reapplied, later);
    assert_eq!(
        em.state()["kubernetes"]["networking.k8s.io/v1/Ingress"]["kf-app/web"]["status"]["loadBalancer"]
            ["ingress"][0]["ip"],
        ip
    );
}

#[tokio::test]
async fn a_crd_is_established_and_its_kind_served_after_lro() {
    let em = with_controllers_after(Duration::from_millis(300)).await;
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: notebooks.kubeflow.org\nspec:\n  group: kubeflow.org\n  scope: Namespaced\n  names: {kind: Notebook, plural: notebooks}\n  versions: [{name: v1, served: true, storage: true}]\n";
    let url = "apis/apiextensions.k8s.io/v1/customresourcedefinitions/notebooks.kubeflow.org";
    let (status, created) = apply(&em, url, crd).await;
    assert_eq!(status, 201, "{created}");
    let established = |crd: &Value| {
        crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    };
    assert!(!established(&created), "{created}");
    // Until then, discovery does not list the kind and its objects cannot be made.
    let notebook =
        "apiVersion: kubeflow.org/v1\nkind: Notebook\nmetadata:\n  name: nb\n  namespace: kf-app\n";
    let nb_url = "apis/kubeflow.org/v1/namespaces/kf-app/notebooks/nb";
    let (status, _) = get(&em, "apis/kubeflow.org/v1").await;
    assert_eq!(status, 404);
    let (status, _) = apply(&em, nb_url, notebook).await;
    assert_eq!(status, 404);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, ready) = get(&em, url).await;
    assert!(established(&ready), "{ready}");
    let (status, group) = get(&em, "apis/kubeflow.org/v1").await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["resources"][0]["kind"], "Notebook", "{group}");
    let (status, made) = apply(&em, nb_url, notebook).await;
    assert_eq!(status, 201, "{made}");
    // An update keeps it established, and applying it unchanged keeps its resourceVersion.
    let (_, reapplied) = apply(&em, url, crd).await;
    assert_eq!(reapplied, ready);
    let (status, updated) = apply(
        &em,
        url,
        &crd.replace("plural: notebooks}", "plural: notebooks, shortNames: [nb]}"),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert!(established(&updated), "{updated}");
}

#[tokio::test]
async fn faults_answer_status_objects() {
    let em = Emulator::start(EmulatorOptions {
        fault_rate: 1.0,
        fault_seed: 3,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let mut seen = 0;
    for _ in 0..12 {
        let url = format!("{}api/v1/namespaces", em.endpoint(K8S).unwrap());
        let Ok(resp) = client().get(url).send().await else {
            continue;
        };
        let status = resp.status().as_u16();
        if status == 200 {
            // An answer cut half-way: its body breaks off.
            assert!(resp.bytes().await.is_err(), "a 200 under faults is cut");
            continue;
        }
        let body: Value = resp.json().await.unwrap();
        assert!(status == 429 || status == 503, "{status}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["code"], status);
        seen += 1;
    }
    assert!(seen > 0);
}

#[tokio::test]
async fn every_kubeflow_document_is_accepted() {
    let em = emulator().await;
    let base = em.endpoint(K8S).unwrap().to_string();
    let docs = crate::kubeflow_fixture::documents();
    assert_eq!(docs.len(), 611, "the render's documents");
    let refused = crate::kubeflow_fixture::apply_all(&client(), &base, &docs).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
    // The names with ':' of cert-manager's RBAC objects were stored as given.
    let state = em.state();
    let roles = &state["kubernetes"]["rbac.authorization.k8s.io/v1/Role"];
    assert!(
        roles["cert-manager/cert-manager-webhook:dynamic-serving"].is_object(),
        "{}",
        serde_json::to_string(&roles.as_object().map(|m| m.keys().collect::<Vec<_>>())).unwrap()
    );
    assert!(
        state["kubernetes"]["rbac.authorization.k8s.io/v1/ClusterRole"]
            ["cert-manager-controller-approve:cert-manager-io"]
            .is_object()
    );
}

/// Creates an object of `kind` named `name` at `path`; returns status and answer.
async fn create(em: &Emulator, path: &str, kind: &str, name: &str) -> (u16, Value) {
    let api_version = if path.starts_with("apis/rbac") {
        "rbac.authorization.k8s.io/v1"
    } else {
        "v1"
    };
    let body = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    send(
        em,
        Method::POST,
        path,
        "application/json",
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn names_are_checked_per_kind() {
    let em = emulator().await;
    let cm = "api/v1/namespaces/default/configmaps";
    let role = "apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    let cluster_role = "apis/rbac.authorization.k8s.io/v1/clusterroles";
    let (status, v) = create(&em, cm, "ConfigMap", "a:b").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(
        v["message"],
        "ConfigMap \"a:b\" is invalid: metadata.name: Invalid value: \"a:b\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    let (status, v) = create(&em, role, "Role", "a:b").await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = create(&em, cluster_role, "ClusterRole", "system:a:b").await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = create(&em, cluster_role, "ClusterRole", "..").await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("may not be '..'"),
        "{v}"
    );
    for (path, kind) in [
        (cm, "ConfigMap"),
        ("api/v1/namespaces", "Namespace"),
        ("api/v1/namespaces/default/services", "Service"),
        ("api/v1/namespaces/default/secrets", "Secret"),
    ] {
        let (status, v) = create(&em, path, kind, "Foo").await;
        assert_eq!(
            (status, v["reason"].as_str()),
            (422, Some("Invalid")),
            "{kind}: {v}"
        );
    }
    // A Service name is a DNS-1035 label, a namespace's an RFC 1123 label.
    let (status, v) = create(&em, "api/v1/namespaces/default/services", "Service", "1svc").await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = create(&em, "api/v1/namespaces", "Namespace", "a.b").await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = create(&em, cm, "ConfigMap", "1.a-b").await;
    assert_eq!(status, 201, "{v}");
}
