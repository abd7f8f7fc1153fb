//! Mocks on the SDK's stub traits (`mockall`): the exact calls and the error paths a live server
//! cannot easily be made to produce.

use std::sync::{Arc, Mutex};

use google_cloud_compute_v1::client::{Firewalls, Networks, Routes, Subnetworks};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::{
    Cluster, CreateClusterRequest, GetClusterRequest, GetOperationRequest, Operation, operation,
};
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, Status};
use google_cloud_gax::options::RequestOptions;
use google_cloud_gax::response::Response;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_v1::model::{GetIamPolicyRequest, Policy, SetIamPolicyRequest};
use google_cloud_resourcemanager_v3::client::Projects;
use kfsec_core::{Policies, Progress, ProgressEvent, RetryDecision};

use crate::error::GkeError;
use crate::handle::{Clients, GkePrivate};
use crate::spec::Spec;

type Result<T> = google_cloud_gax::Result<T>;

mockall::mock! {
    #[derive(Debug)]
    Gke {}
    impl google_cloud_container_v1::stub::ClusterManager for Gke {
        async fn get_cluster(&self, req: GetClusterRequest, options: RequestOptions) -> Result<Response<Cluster>>;
        async fn create_cluster(&self, req: CreateClusterRequest, options: RequestOptions) -> Result<Response<Operation>>;
        async fn get_operation(&self, req: GetOperationRequest, options: RequestOptions) -> Result<Response<Operation>>;
    }
}

mockall::mock! {
    #[derive(Debug)]
    Projs {}
    impl google_cloud_resourcemanager_v3::stub::Projects for Projs {
        async fn get_iam_policy(&self, req: GetIamPolicyRequest, options: RequestOptions) -> Result<Response<Policy>>;
        async fn set_iam_policy(&self, req: SetIamPolicyRequest, options: RequestOptions) -> Result<Response<Policy>>;
    }
}

mockall::mock! {
    #[derive(Debug)]
    Nets {}
    impl google_cloud_compute_v1::stub::Networks for Nets {}
}

mockall::mock! {
    #[derive(Debug)]
    Subnets {}
    impl google_cloud_compute_v1::stub::Subnetworks for Subnets {}
}

mockall::mock! {
    #[derive(Debug)]
    Rts {}
    impl google_cloud_compute_v1::stub::Routes for Rts {}
}

mockall::mock! {
    #[derive(Debug)]
    Fws {}
    impl google_cloud_compute_v1::stub::Firewalls for Fws {}
}

mockall::mock! {
    #[derive(Debug)]
    Accounts {}
    impl google_cloud_iam_admin_v1::stub::Iam for Accounts {}
}

fn handle(gke: MockGke, projects: MockProjs) -> GkePrivate {
    GkePrivate::from_clients(
        Clients::new(
            Networks::from_stub(MockNets::new()),
            Subnetworks::from_stub(MockSubnets::new()),
            Routes::from_stub(MockRts::new()),
            Firewalls::from_stub(MockFws::new()),
            ClusterManager::from_stub(gke),
            Iam::from_stub(MockAccounts::new()),
            Projects::from_stub(projects),
        )
        .with_policies(Policies::fast()),
    )
}

fn spec() -> Spec {
    kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap()
}

fn status(code: Code, message: &str) -> Error {
    Error::service(Status::default().set_code(code).set_message(message))
}

fn not_found() -> Error {
    status(
        Code::NotFound,
        "Not found: projects/kf-dev/locations/us-central1-a/clusters/kf-private.",
    )
}

fn op(status: operation::Status) -> Operation {
    Operation::new()
        .set_name("operation-1")
        .set_status(status)
        .set_operation_type(operation::Type::CreateCluster)
}

const CLUSTER: &str = "projects/kf-dev/locations/us-central1-a/clusters/kf-private";
const OPERATION: &str = "projects/kf-dev/locations/us-central1-a/operations/operation-1";

#[tokio::test]
async fn cluster_creation_is_polled_through_a_transient_error_with_progress() {
    let mut gke = MockGke::new();
    gke.expect_get_cluster()
        .withf(|r, _| r.name == CLUSTER)
        .times(1)
        .returning(|_, _| Err(not_found()));
    gke.expect_create_cluster()
        .withf(|r, _| {
            r.parent == "projects/kf-dev/locations/us-central1-a"
                && r.cluster.as_ref().is_some_and(|c| c.name == "kf-private")
        })
        .times(1)
        .returning(|_, _| Ok(Response::from(op(operation::Status::Running))));
    let mut seq = mockall::Sequence::new();
    gke.expect_get_operation()
        .withf(|r, _| r.name == OPERATION)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(Response::from(op(operation::Status::Running))));
    gke.expect_get_operation()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(status(Code::Unavailable, "try again")));
    gke.expect_get_operation()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(Response::from(op(operation::Status::Done))));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let gke = handle(gke, MockProjs::new())
        .with_progress(Progress::new(move |e| sink.lock().unwrap().push(e.clone())));

    let (outcome, detail) = gke.ensure_cluster(&spec()).await.unwrap();
    assert_eq!(outcome, kfsec_core::Outcome::Created);
    assert_eq!(detail, None);
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(|e| matches!(e,
            ProgressEvent::Waiting { step, status: Some(s), .. }
                if step == "cluster kf-private" && s == "RUNNING")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_failed_cluster_operation_carries_googles_message() {
    let mut gke = MockGke::new();
    gke.expect_get_cluster().returning(|_, _| Err(not_found()));
    gke.expect_create_cluster()
        .returning(|_, _| Ok(Response::from(op(operation::Status::Running))));
    let message = "Insufficient regional quota to satisfy request: resource \"CPUS\".";
    let failed: Operation = serde_json::from_value(serde_json::json!({
        "name": "operation-1",
        "operationType": "CREATE_CLUSTER",
        "status": "DONE",
        "error": {"code": 8, "message": message},
        "clusterConditions": [{"code": "GCE_QUOTA_EXCEEDED", "message": message}],
    }))
    .unwrap();
    gke.expect_get_operation()
        .returning(move |_, _| Ok(Response::from(failed.clone())));
    let err = handle(gke, MockProjs::new())
        .ensure_cluster(&spec())
        .await
        .unwrap_err();
    assert!(matches!(err, GkeError::OperationFailed { .. }), "{err:?}");
    assert!(err.to_string().contains(message), "{err}");
    assert!(
        err.to_string().contains("create cluster kf-private failed"),
        "{err}"
    );
    assert_eq!(err.retry_decision(), RetryDecision::Stop);
}

#[tokio::test]
async fn a_refused_create_is_not_retried_and_names_what_was_done() {
    let mut gke = MockGke::new();
    gke.expect_get_cluster().returning(|_, _| Err(not_found()));
    gke.expect_create_cluster().times(1).returning(|_, _| {
        Err(status(
            Code::PermissionDenied,
            "Required \"container.clusters.create\" permission(s) for \"projects/kf-dev\".",
        ))
    });
    let err = handle(gke, MockProjs::new())
        .ensure_cluster(&spec())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("create cluster kf-private"), "{text}");
    assert!(text.contains("container.clusters.create"), "{text}");
    assert_eq!(err.retry_decision(), RetryDecision::Stop);
}

fn policy(etag: &'static [u8]) -> Policy {
    Policy::new()
        .set_etag(bytes::Bytes::from_static(etag))
        .set_bindings([google_cloud_iam_v1::model::Binding::new()
            .set_role("roles/owner")
            .set_members(["user:alice@example.com"])])
}

#[tokio::test]
async fn a_concurrent_policy_change_is_retried_from_a_fresh_read_and_never_overwritten() {
    let mut projects = MockProjs::new();
    projects
        .expect_get_iam_policy()
        .withf(|r, _| {
            r.resource == "projects/kf-dev"
                && r.options
                    .as_ref()
                    .is_some_and(|o| o.requested_policy_version == 3)
        })
        .returning(|_, _| Ok(Response::from(policy(b"e1"))));
    projects
        .expect_set_iam_policy()
        .withf(|r, _| {
            r.policy.as_ref().is_some_and(|p| {
                p.etag == bytes::Bytes::from_static(b"e1")
                    && p.bindings[0].role == "roles/owner"
                    && p.bindings.len() == 1 + crate::NODE_ROLES.len()
            })
        })
        .times(1)
        .returning(|_, _| {
            Err(status(
                Code::Aborted,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ))
        });
    let err = handle(MockGke::new(), projects)
        .ensure_node_roles(&spec())
        .await
        .unwrap_err();
    assert_eq!(err.retry_decision(), RetryDecision::Retry, "{err:?}");
}

#[tokio::test]
async fn a_service_account_not_yet_visible_to_iam_is_retried() {
    let mut projects = MockProjs::new();
    projects
        .expect_get_iam_policy()
        .returning(|_, _| Ok(Response::from(policy(b"e1"))));
    projects.expect_set_iam_policy().times(1).returning(|_, _| {
        Err(status(
            Code::InvalidArgument,
            "Service account kf-private-nodes@kf-dev.iam.gserviceaccount.com does not exist.",
        ))
    });
    let err = handle(MockGke::new(), projects)
        .ensure_node_roles(&spec())
        .await
        .unwrap_err();
    assert_eq!(err.retry_decision(), RetryDecision::Retry, "{err:?}");
}
