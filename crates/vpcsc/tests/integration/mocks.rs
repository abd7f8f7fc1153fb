//! Mocks on the SDK's stub traits (`mockall`): the exact calls and the error paths that a live
//! server cannot easily be made to produce.

use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, Status};
use google_cloud_gax::options::RequestOptions;
use google_cloud_gax::response::Response;
use google_cloud_identity_accesscontextmanager_v1::client::AccessContextManager;
use google_cloud_identity_accesscontextmanager_v1::model::{
    AccessPolicy, CreateServicePerimeterRequest, GetAccessPolicyRequest, ListAccessPoliciesRequest,
    ListAccessPoliciesResponse, ListServicePerimetersRequest, ListServicePerimetersResponse,
    ServicePerimeter,
};
use google_cloud_longrunning::model::Operation;
use google_cloud_resourcemanager_v3::client::{Organizations, Projects};
use kfsec_core::Policies;
use kfsec_vpcsc::{Clients, PerimeterEdit, PerimeterOutcome, Vpcsc};

type Result<T> = google_cloud_gax::Result<T>;

mockall::mock! {
    #[derive(Debug)]
    Acm {}
    impl google_cloud_identity_accesscontextmanager_v1::stub::AccessContextManager for Acm {
        async fn list_access_policies(&self, req: ListAccessPoliciesRequest, options: RequestOptions) -> Result<Response<ListAccessPoliciesResponse>>;
        async fn get_access_policy(&self, req: GetAccessPolicyRequest, options: RequestOptions) -> Result<Response<AccessPolicy>>;
        async fn list_service_perimeters(&self, req: ListServicePerimetersRequest, options: RequestOptions) -> Result<Response<ListServicePerimetersResponse>>;
        async fn create_service_perimeter(&self, req: CreateServicePerimeterRequest, options: RequestOptions) -> Result<Response<Operation>>;
    }
}

mockall::mock! {
    #[derive(Debug)]
    Usage {}
    impl google_cloud_api_serviceusage_v1::stub::ServiceUsage for Usage {}
}

mockall::mock! {
    #[derive(Debug)]
    Projs {}
    impl google_cloud_resourcemanager_v3::stub::Projects for Projs {}
}

mockall::mock! {
    #[derive(Debug)]
    Orgs {}
    impl google_cloud_resourcemanager_v3::stub::Organizations for Orgs {}
}

fn handle(acm: MockAcm) -> Vpcsc {
    Vpcsc::from_clients(
        Clients::new(
            AccessContextManager::from_stub(acm),
            ServiceUsage::from_stub(MockUsage::new()),
            Projects::from_stub(MockProjs::new()),
            Organizations::from_stub(MockOrgs::new()),
        )
        .with_policies(Policies::fast()),
    )
}

fn status(code: Code, message: &str) -> Error {
    Error::service(Status::default().set_code(code).set_message(message))
}

fn done_perimeter(name: &str) -> Operation {
    let perimeter = ServicePerimeter::new().set_name(name);
    Operation::new()
        .set_name("operations/1")
        .set_done(true)
        .set_response(google_cloud_wkt::Any::from_msg(&perimeter).unwrap())
}

const POLICY: &str = "accessPolicies/111";
const PERIMETER: &str = "accessPolicies/111/servicePerimeters/KubeflowZone";

#[tokio::test]
async fn a_level_not_yet_available_is_retried_from_a_fresh_read() {
    let mut acm = MockAcm::new();
    acm.expect_get_access_policy().times(2).returning(|_, _| {
        Ok(Response::from(
            AccessPolicy::new().set_name(POLICY).set_etag("e1"),
        ))
    });
    acm.expect_list_service_perimeters()
        .times(2)
        .returning(|_, _| Ok(Response::from(ListServicePerimetersResponse::new())));
    let mut seq = mockall::Sequence::new();
    acm.expect_create_service_perimeter().times(1).in_sequence(&mut seq).returning(|_, _| {
        Err(status(
            Code::InvalidArgument,
            "Level name 'accessPolicies/111/accessLevels/kubeflow' is not available in this Access Policy.",
        ))
    });
    acm.expect_create_service_perimeter()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|req, _| {
            req.parent == POLICY
                && req
                    .service_perimeter
                    .as_ref()
                    .is_some_and(|p| p.name == PERIMETER)
        })
        .returning(|_, _| Ok(Response::from(done_perimeter(PERIMETER))));

    let mut edit = PerimeterEdit::add_resources("Kubeflow Zone", vec!["projects/1".into()]);
    edit.access_levels = vec!["accessPolicies/111/accessLevels/kubeflow".into()];
    let outcome = handle(acm)
        .edit_perimeter(POLICY, PERIMETER, edit)
        .await
        .unwrap();
    assert_eq!(outcome, PerimeterOutcome::Created);
}

#[tokio::test]
async fn permission_denied_stops_at_once_and_says_what_to_grant() {
    let mut acm = MockAcm::new();
    acm.expect_get_access_policy().times(1).returning(|_, _| {
        Err(status(
            Code::PermissionDenied,
            "Permission 'accesscontextmanager.policies.get' denied on resource.",
        ))
    });
    let edit = PerimeterEdit::add_resources("Kubeflow Zone", vec!["projects/1".into()]);
    let err = handle(acm)
        .edit_perimeter(POLICY, PERIMETER, edit)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("accesscontextmanager.policies.get"), "{text}");
    assert!(
        text.contains("roles/accesscontextmanager.policyAdmin"),
        "{text}"
    );
}

#[tokio::test]
async fn an_invalid_argument_is_final() {
    let mut acm = MockAcm::new();
    acm.expect_get_access_policy().times(1).returning(|_, _| {
        Ok(Response::from(
            AccessPolicy::new().set_name(POLICY).set_etag("e1"),
        ))
    });
    acm.expect_list_service_perimeters()
        .times(1)
        .returning(|_, _| Ok(Response::from(ListServicePerimetersResponse::new())));
    acm.expect_create_service_perimeter()
        .times(1)
        .returning(|_, _| {
            Err(status(
                Code::InvalidArgument,
                "Invalid value for field 'status.resources'",
            ))
        });
    let edit = PerimeterEdit::add_resources("Kubeflow Zone", vec!["projects/1".into()]);
    let err = handle(acm)
        .edit_perimeter(POLICY, PERIMETER, edit)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("status.resources"), "{err}");
}
