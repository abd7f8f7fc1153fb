//! A concurrent writer between kfsec's read and write of IAP's policy: the write carries the
//! read's etag, IAP refuses it (ABORTED), and kfsec starts again from a fresh read, so the
//! other writer's member is kept. A stub on the SDK's trait plays IAP, as a live server cannot
//! be made to interleave on cue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, Status};
use google_cloud_gax::options::RequestOptions;
use google_cloud_gax::response::Response;
use google_cloud_iam_v1::model::{Binding, GetIamPolicyRequest, Policy, SetIamPolicyRequest};
use google_cloud_iap_v1::client::IdentityAwareProxyAdminService;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_resourcemanager_v3::model::{GetProjectRequest, Project};
use kfsec_core::{Outcome, Policies};
use kfsec_iapingress::{ACCESSOR_ROLE, Clients, IapIngress};

use crate::common::{connection, emulator, example_spec};

#[derive(Debug, Default)]
struct Iap {
    policy: Mutex<Policy>,
    writes: Mutex<Vec<Policy>>,
    /// Whether someone else writes just before kfsec's next write (once).
    interleave: Mutex<bool>,
}

#[derive(Debug, Clone)]
struct Stub(Arc<Iap>);

impl google_cloud_iap_v1::stub::IdentityAwareProxyAdminService for Stub {
    async fn get_iam_policy(
        &self,
        req: GetIamPolicyRequest,
        _: RequestOptions,
    ) -> google_cloud_gax::Result<Response<Policy>> {
        assert_eq!(req.resource, crate::common::IAP_RESOURCE);
        Ok(Response::from(self.0.policy.lock().unwrap().clone()))
    }

    async fn set_iam_policy(
        &self,
        req: SetIamPolicyRequest,
        _: RequestOptions,
    ) -> google_cloud_gax::Result<Response<Policy>> {
        let incoming = req.policy.unwrap();
        self.0.writes.lock().unwrap().push(incoming.clone());
        let mut live = self.0.policy.lock().unwrap();
        if std::mem::take(&mut *self.0.interleave.lock().unwrap()) {
            // Someone else's read-modify-write lands first.
            live.bindings[0]
                .members
                .push("user:carol@example.com".into());
            live.etag = bytes::Bytes::from_static(b"etag-2");
        }
        if incoming.etag != live.etag {
            return Err(Error::service(
                Status::default()
                    .set_code(Code::Aborted)
                    .set_message("There were concurrent policy changes."),
            ));
        }
        let mut next = incoming;
        next.etag = bytes::Bytes::from(format!("etag-{}", self.0.writes.lock().unwrap().len() + 2));
        *live = next.clone();
        Ok(Response::from(next))
    }
}

#[derive(Debug)]
struct Projs;

impl google_cloud_resourcemanager_v3::stub::Projects for Projs {
    async fn get_project(
        &self,
        req: GetProjectRequest,
        _: RequestOptions,
    ) -> google_cloud_gax::Result<Response<Project>> {
        assert_eq!(req.name, "projects/kf-dev");
        Ok(Response::from(
            Project::new()
                .set_name("projects/123456789012")
                .set_project_id("kf-dev"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_etag_is_refused_and_the_grant_starts_again_from_a_fresh_read() {
    let iap = Arc::new(Iap::default());
    *iap.policy.lock().unwrap() = Policy::new()
        .set_version(3)
        .set_etag(bytes::Bytes::from_static(b"etag-1"))
        .set_bindings([Binding::new()
            .set_role(ACCESSOR_ROLE)
            .set_members(["user:bob@example.com"])]);
    let emu = emulator(Duration::ZERO).await;
    let kube = kfsec_kube::kube_client(&connection(&emu)).await.unwrap();
    let ingress = IapIngress::from_clients(
        Clients::new(
            IdentityAwareProxyAdminService::from_stub(Stub(iap.clone())),
            Projects::from_stub(Projs),
            kube,
        )
        .with_policies(Policies::fast()),
    )
    .with_wait(None);

    let plan = ingress.plan(&example_spec()).await.unwrap();
    *iap.interleave.lock().unwrap() = true;
    let report = ingress.apply(&plan).await.unwrap();
    let access = report
        .entries
        .iter()
        .find(|e| e.resource.kind == "IAP access")
        .unwrap();
    assert_eq!(access.outcome, Outcome::Updated, "{}", report.render_text());

    let writes = iap.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 2, "one refused write, one after a fresh read");
    assert_eq!(writes[0].etag, bytes::Bytes::from_static(b"etag-1"));
    assert_eq!(writes[1].etag, bytes::Bytes::from_static(b"etag-2"));
    let live = iap.policy.lock().unwrap().clone();
    assert_eq!(live.bindings.len(), 1);
    assert_eq!(
        live.bindings[0].members,
        [
            "user:bob@example.com",
            "user:carol@example.com",
            "user:alice@example.com"
        ]
    );
    assert_eq!(live.version, 3);
}
