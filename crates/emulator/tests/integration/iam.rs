//! IAM service accounts and project IAM policies: the real gcloud CLI (create, describe, list,
//! a refused second create, add and remove a project binding, delete), the wire a plain HTTP
//! client sees (the Rust SDK's paths and query, a stale etag), and the Rust SDK itself.

use std::path::Path;

use google_cloud_auth::credentials::anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions};
use google_cloud_resourcemanager_v3::client::Projects;
use kfsec_emulator::Emulator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const IAM: &str = "iam";
const CRM: &str = "cloudresourcemanager";
/// What the Rust SDK (google-cloud-iam-admin-v1, google-cloud-resourcemanager-v3) appends to
/// every request.
const SDK: &str = "%24alt=json%3Benum-encoding%3Dint";
const EMAIL: &str = "kf-private-nodes@kf-dev.iam.gserviceaccount.com";
const MEMBER: &str = "serviceAccount:kf-private-nodes@kf-dev.iam.gserviceaccount.com";
const NODE_ROLE: &str = "roles/container.defaultNodeServiceAccount";
const OWNER: &str = "user:alice@example.com";

async fn gcloud(config: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, None, &[], args).await
}

/// The members of `role`'s unconditional binding in a policy.
fn members(policy: &Value, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b.get("condition").is_none())
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn gcloud_manages_service_accounts_and_project_bindings() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let config = std::fs::read_to_string(cfg.join("configurations/config_default")).unwrap();
    assert!(
        config.contains(&format!("iam = {}\n", em.endpoint(IAM).unwrap())),
        "{config}"
    );

    let run = gcloud(
        &cfg,
        &[
            "iam",
            "service-accounts",
            "create",
            "kf-private-nodes",
            "--display-name=kfsec nodes of kf-private",
            "--description=Managed by kfsec",
        ],
    )
    .await
    .expect_ok();
    assert!(
        run.stderr
            .contains("Created service account [kf-private-nodes]"),
        "{}",
        run.stderr
    );

    let sa = gcloud(
        &cfg,
        &[
            "iam",
            "service-accounts",
            "describe",
            EMAIL,
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(sa["email"], EMAIL);
    assert_eq!(
        sa["name"],
        format!("projects/kf-dev/serviceAccounts/{EMAIL}")
    );
    assert_eq!(sa["projectId"], "kf-dev");
    assert_eq!(sa["displayName"], "kfsec nodes of kf-private");
    assert_eq!(sa["description"], "Managed by kfsec");
    let unique_id = sa["uniqueId"].as_str().unwrap().to_string();
    assert_eq!(unique_id.len(), 21, "{unique_id}");
    assert!(unique_id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(sa["oauth2ClientId"], unique_id.as_str());

    let list = gcloud(&cfg, &["iam", "service-accounts", "list", "--format=json"])
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["email"], EMAIL);

    gcloud(
        &cfg,
        &["iam", "service-accounts", "create", "kf-private-nodes"],
    )
    .await
    .expect_err("Service account kf-private-nodes already exists within project projects/kf-dev.");

    let policy = gcloud(
        &cfg,
        &[
            "projects",
            "add-iam-policy-binding",
            "kf-dev",
            &format!("--member={MEMBER}"),
            &format!("--role={NODE_ROLE}"),
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(members(&policy, NODE_ROLE), [MEMBER]);
    let policy = gcloud(
        &cfg,
        &["projects", "get-iam-policy", "kf-dev", "--format=json"],
    )
    .await
    .json();
    assert_eq!(members(&policy, "roles/owner"), [OWNER], "{policy}");
    assert_eq!(members(&policy, NODE_ROLE), [MEMBER], "{policy}");
    assert_eq!(policy["version"], 1);
    assert!(policy["etag"].as_str().unwrap().starts_with("BwX"));

    // An account that does not exist cannot be granted a role.
    gcloud(
        &cfg,
        &[
            "projects",
            "add-iam-policy-binding",
            "kf-dev",
            "--member=serviceAccount:nobody-here@kf-dev.iam.gserviceaccount.com",
            "--role=roles/viewer",
        ],
    )
    .await
    .expect_err("Service account nobody-here@kf-dev.iam.gserviceaccount.com does not exist.");

    gcloud(
        &cfg,
        &[
            "projects",
            "remove-iam-policy-binding",
            "kf-dev",
            &format!("--member={MEMBER}"),
            &format!("--role={NODE_ROLE}"),
            "--format=json",
        ],
    )
    .await
    .expect_ok();
    let policy = gcloud(
        &cfg,
        &["projects", "get-iam-policy", "kf-dev", "--format=json"],
    )
    .await
    .json();
    assert_eq!(
        policy["bindings"],
        json!([{"role": "roles/owner", "members": [OWNER]}])
    );

    // Deleting a bound account leaves `deleted:` members behind, as Google does.
    gcloud(
        &cfg,
        &[
            "projects",
            "add-iam-policy-binding",
            "kf-dev",
            &format!("--member={MEMBER}"),
            &format!("--role={NODE_ROLE}"),
        ],
    )
    .await
    .expect_ok();
    let run = gcloud(
        &cfg,
        &["iam", "service-accounts", "delete", EMAIL, "--quiet"],
    )
    .await
    .expect_ok();
    assert!(
        run.stderr
            .contains(&format!("deleted service account [{EMAIL}]")),
        "{}",
        run.stderr
    );
    gcloud(&cfg, &["iam", "service-accounts", "describe", EMAIL])
        .await
        .expect_err("Unknown service account");
    let policy = gcloud(
        &cfg,
        &["projects", "get-iam-policy", "kf-dev", "--format=json"],
    )
    .await
    .json();
    assert_eq!(
        members(&policy, NODE_ROLE),
        [format!("deleted:{MEMBER}?uid={unique_id}")]
    );
    let list = gcloud(&cfg, &["iam", "service-accounts", "list", "--format=json"])
        .await
        .json();
    assert_eq!(list, json!([]));

    // gcloud reads accounts through the `-` project and writes policies through v1.
    let log = em.requests();
    assert!(log.iter().any(|r| r.api == IAM
        && r.method == "GET"
        && r.path == format!("/v1/projects/-/serviceAccounts/{EMAIL}")));
    assert!(log.iter().any(|r| r.api == IAM
        && r.method == "POST"
        && r.path == "/v1/projects/kf-dev/serviceAccounts"));
    assert!(log.iter().any(|r| r.api == CRM
        && r.method == "POST"
        && r.path == "/v1/projects/kf-dev:setIamPolicy"));
}

async fn create_account(em: &Emulator, id: &str, body: Value) -> (u16, Value) {
    call(
        em,
        IAM,
        Method::POST,
        &format!("v1/projects/kf-dev/serviceAccounts?{SDK}"),
        Some(json!({"accountId": id, "serviceAccount": body})),
    )
    .await
}

#[tokio::test]
async fn service_accounts_over_the_sdk_wire() {
    let em = emulator().await;
    let (status, sa) = create_account(
        &em,
        "kf-private-nodes",
        json!({"displayName": "nodes", "description": "the node pool"}),
    )
    .await;
    assert_eq!(status, 200, "{sa}");
    let unique_id = sa["uniqueId"].as_str().unwrap().to_string();
    assert_eq!(
        sa,
        json!({
            "name": format!("projects/kf-dev/serviceAccounts/{EMAIL}"),
            "projectId": "kf-dev",
            "uniqueId": unique_id,
            "email": EMAIL,
            "displayName": "nodes",
            "description": "the node pool",
            "etag": "MDEwMjE5MjA=",
            "oauth2ClientId": unique_id,
        })
    );
    // Without a description (and display name), the keys are omitted.
    let (status, other) = create_account(&em, "kf-builder", json!({})).await;
    assert_eq!(status, 200, "{other}");
    assert!(other.get("description").is_none(), "{other}");
    assert!(other.get("displayName").is_none(), "{other}");
    assert_ne!(other["uniqueId"], sa["uniqueId"]);

    let (status, err) = create_account(&em, "kf-private-nodes", json!({})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(
        err["error"]["message"],
        "Service account kf-private-nodes already exists within project projects/kf-dev."
    );
    for (bad, says) in [
        ("short", "does not have a length between 6 and 30"),
        (
            "a-very-long-account-id-of-31-ch",
            "does not have a length between 6 and 30",
        ),
        ("Kf-nodes", "accountId"),
        ("1kf-nodes", "accountId"),
        ("kf-nodes-", "accountId"),
        ("kf_nodes", "accountId"),
    ] {
        let (status, err) = create_account(&em, bad, json!({})).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(says) && message.contains(bad), "{message}");
    }
    let (status, err) = call(
        &em,
        IAM,
        Method::POST,
        &format!("v1/projects/nope/serviceAccounts?{SDK}"),
        Some(json!({"accountId": "kf-private-nodes"})),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");

    // Get by email (in its project, by number, or through `-`) or by unique id.
    for path in [
        format!("v1/projects/kf-dev/serviceAccounts/{EMAIL}"),
        format!("v1/projects/123456789012/serviceAccounts/{EMAIL}"),
        format!("v1/projects/-/serviceAccounts/{EMAIL}"),
        format!("v1/projects/-/serviceAccounts/{unique_id}"),
        "v1/projects/-/serviceAccounts/kf-private-nodes%40kf-dev.iam.gserviceaccount.com"
            .to_string(),
    ] {
        let (status, got) = call(&em, IAM, Method::GET, &format!("{path}?{SDK}"), None).await;
        assert_eq!(status, 200, "{path}: {got}");
        assert_eq!(got, sa);
    }
    let (status, err) = call(
        &em,
        IAM,
        Method::GET,
        &format!("v1/projects/-/serviceAccounts/nobody-here@kf-dev.iam.gserviceaccount.com?{SDK}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(
        err["error"],
        json!({"code": 404, "message": "Unknown service account", "status": "NOT_FOUND"})
    );

    // List, paged.
    let (status, page) = call(
        &em,
        IAM,
        Method::GET,
        &format!("v1/projects/kf-dev/serviceAccounts?pageSize=1&{SDK}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["accounts"].as_array().unwrap().len(), 1);
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = call(
        &em,
        IAM,
        Method::GET,
        &format!("v1/projects/kf-dev/serviceAccounts?pageSize=1&pageToken={token}&{SDK}"),
        None,
    )
    .await;
    assert_eq!(rest["accounts"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextPageToken").is_none());
    assert_ne!(page["accounts"][0], rest["accounts"][0]);

    // Patch (what `gcloud iam service-accounts update` sends).
    let (status, patched) = call(
        &em,
        IAM,
        Method::PATCH,
        &format!("v1/projects/kf-dev/serviceAccounts/{EMAIL}"),
        Some(json!({"serviceAccount": {"displayName": "renamed"}, "updateMask": "displayName"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["displayName"], "renamed");
    assert_eq!(patched["description"], "the node pool");

    // The admin state lists accounts; delete answers `{}`; reset forgets them.
    assert_eq!(
        em.state()["iam"]["serviceAccounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, empty) = call(
        &em,
        IAM,
        Method::DELETE,
        &format!("v1/projects/kf-dev/serviceAccounts/{EMAIL}?{SDK}"),
        None,
    )
    .await;
    assert_eq!((status, empty), (200, json!({})));
    let (status, _) = call(
        &em,
        IAM,
        Method::DELETE,
        &format!("v1/projects/kf-dev/serviceAccounts/{EMAIL}?{SDK}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        em.state()["iam"]["serviceAccounts"][0]["email"],
        "kf-builder@kf-dev.iam.gserviceaccount.com"
    );
    let (status, list) = call(
        &em,
        IAM,
        Method::GET,
        "v1/projects/kf-dev/serviceAccounts",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);

    let log = em.requests();
    assert_eq!(log[0].path, "/v1/projects/kf-dev/serviceAccounts");
    assert_eq!(log[0].query, SDK);
    em.reset();
    assert_eq!(em.state()["iam"], json!({"serviceAccounts": []}));
}

async fn get_policy(em: &Emulator, version: &str) -> Value {
    let (status, policy) = call(
        em,
        CRM,
        Method::POST,
        &format!("{version}/projects/kf-dev:getIamPolicy?{SDK}"),
        Some(json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    policy
}

async fn set_policy(em: &Emulator, version: &str, body: Value) -> (u16, Value) {
    call(
        em,
        CRM,
        Method::POST,
        &format!("{version}/projects/kf-dev:setIamPolicy?{SDK}"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn project_policies_keep_others_bindings_and_refuse_stale_etags() {
    let em = emulator().await;
    let seed = get_policy(&em, "v3").await;
    assert_eq!(
        seed,
        json!({"version": 1, "etag": "BwXAAAAAAAE=", "bindings": [
            {"role": "roles/owner", "members": [OWNER]}]})
    );
    assert_eq!(get_policy(&em, "v1").await, seed);
    // An empty body (gcloud before policy versions) reads the same policy.
    let (status, v1) = call(
        &em,
        CRM,
        Method::POST,
        "v1/projects/123456789012:getIamPolicy",
        None,
    )
    .await;
    assert_eq!((status, &v1), (200, &seed));
    assert_eq!(
        em.state()["cloudresourcemanager"]["iamPolicies"]["kf-dev"],
        seed
    );

    // The node account must exist before it is granted anything.
    let grant = json!({"policy": {"version": 3, "etag": seed["etag"], "bindings": [
        {"role": "roles/owner", "members": [OWNER]},
        {"role": NODE_ROLE, "members": [MEMBER]},
    ]}});
    let (status, err) = set_policy(&em, "v3", grant.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        err["error"]["message"],
        format!("Service account {EMAIL} does not exist.")
    );
    assert_eq!(
        create_account(&em, "kf-private-nodes", json!({})).await.0,
        200
    );
    let (status, set) = set_policy(&em, "v3", grant.clone()).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(members(&set, NODE_ROLE), [MEMBER]);
    assert_eq!(members(&set, "roles/owner"), [OWNER]);
    assert_ne!(set["etag"], seed["etag"]);
    assert!(set["etag"].as_str().unwrap().starts_with("BwX"), "{set}");
    assert_eq!(get_policy(&em, "v1").await, set);

    // A writer that read before that write gets ABORTED, and nothing changes.
    let stale = seed["etag"].as_str().unwrap();
    let current = set["etag"].as_str().unwrap();
    let (status, err) = set_policy(
        &em,
        "v1",
        json!({"policy": {"etag": stale, "bindings": [{"role": "roles/viewer", "members": [OWNER]}]}}),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ABORTED");
    assert_eq!(
        err["error"]["message"],
        format!(
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. The request's ETag '{stale}' did not match the current policy's ETag '{current}'."
        )
    );
    assert_eq!(get_policy(&em, "v3").await, set);

    // Normalized: members sorted and deduplicated, same roles merged, empty bindings dropped.
    let (status, set) = set_policy(
        &em,
        "v1",
        json!({"policy": {"etag": current, "bindings": [
            {"role": "roles/viewer", "members": ["user:zed@example.com", OWNER, OWNER]},
            {"role": "roles/owner", "members": [OWNER]},
            {"role": "roles/editor", "members": []},
            {"role": "roles/viewer", "members": ["group:admins@example.com"]},
        ]}, "updateMask": "bindings,etag"}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["bindings"],
        json!([
            {"role": "roles/owner", "members": [OWNER]},
            {"role": "roles/viewer", "members": ["group:admins@example.com", OWNER, "user:zed@example.com"]},
        ])
    );

    // Etags are bytes: the URL-safe alphabet without padding (as gcloud sends them back) names
    // the same etag; what is not base64 is refused.
    let url_safe = set["etag"]
        .as_str()
        .unwrap()
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let (status, set) = set_policy(
        &em,
        "v1",
        json!({"policy": {"etag": url_safe, "bindings": set["bindings"]}}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let (status, err) = set_policy(
        &em,
        "v1",
        json!({"policy": {"etag": "not base64!", "bindings": set["bindings"]}}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "Invalid value at 'policy.etag' (TYPE_BYTES), \"not base64!\""
    );

    // Without an etag, the write is unconditional.
    let (status, _) = set_policy(
        &em,
        "v3",
        json!({"policy": {"bindings": [{"role": "roles/owner", "members": [OWNER]}]}}),
    )
    .await;
    assert_eq!(status, 200);

    // Malformed members and roles are refused.
    for (binding, says) in [
        (
            json!({"role": "roles/viewer", "members": ["alice@example.com"]}),
            "Policy members must be of the form \"<type>:<value>\".",
        ),
        (
            json!({"role": "roles/viewer", "members": ["robot:x@example.com"]}),
            "Invalid member 'robot:x@example.com'",
        ),
        (
            json!({"role": "viewer", "members": [OWNER]}),
            "Role (viewer) does not exist in the resource's hierarchy.",
        ),
    ] {
        let (status, err) = set_policy(&em, "v3", json!({"policy": {"bindings": [binding]}})).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(says),
            "{err}"
        );
    }
    // Conditional bindings need version 3.
    let conditional = json!({"role": "roles/viewer", "members": [OWNER],
        "condition": {"title": "until 2030", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}});
    let (status, err) = set_policy(
        &em,
        "v3",
        json!({"policy": {"version": 1, "bindings": [conditional]}}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, set) = set_policy(
        &em,
        "v3",
        json!({"policy": {"version": 3, "bindings": [conditional, {"role": "roles/owner", "members": [OWNER]}]}}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["version"], 3);
    assert_eq!(get_policy(&em, "v3").await["bindings"][1], conditional);

    // An unknown project is PERMISSION_DENIED, as Google answers.
    let (status, err) = call(
        &em,
        CRM,
        Method::POST,
        &format!("v3/projects/nope:getIamPolicy?{SDK}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(
        err["error"]["message"],
        "The caller does not have permission"
    );

    // The exact wire of the Rust SDK.
    let log = em.requests();
    assert_eq!(log[0].path, "/v3/projects/kf-dev:getIamPolicy");
    assert_eq!(log[0].query, SDK);

    em.reset();
    assert_eq!(get_policy(&em, "v3").await, seed);
}

#[tokio::test]
async fn the_rust_sdk_creates_reads_and_grants() {
    let em = emulator().await;
    let endpoint = |api: &str| em.endpoint(api).unwrap().trim_end_matches('/').to_string();
    let iam = Iam::builder()
        .with_endpoint(endpoint(IAM))
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let projects = Projects::builder()
        .with_endpoint(endpoint(CRM))
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();

    let created = iam
        .create_service_account()
        .set_name("projects/kf-dev")
        .set_account_id("kf-private-nodes")
        .set_service_account(
            ServiceAccount::new()
                .set_display_name("kfsec nodes of kf-private")
                .set_description("Managed by kfsec"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.email, EMAIL);
    assert_eq!(created.project_id, "kf-dev");
    assert_eq!(created.unique_id.len(), 21);
    let got = iam
        .get_service_account()
        .set_name(format!("projects/kf-dev/serviceAccounts/{EMAIL}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got, created);
    let err = iam
        .get_service_account()
        .set_name("projects/-/serviceAccounts/nobody-here@kf-dev.iam.gserviceaccount.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound), "{err}");
    let err = iam
        .create_service_account()
        .set_name("projects/kf-dev")
        .set_account_id("kf-private-nodes")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.status().map(|s| s.code),
        Some(Code::AlreadyExists),
        "{err}"
    );
    let list = iam
        .list_service_accounts()
        .set_name("projects/kf-dev")
        .send()
        .await
        .unwrap();
    assert_eq!(list.accounts, std::slice::from_ref(&created));

    let policy = projects
        .get_iam_policy()
        .set_resource("projects/kf-dev")
        .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.version, 1);
    assert_eq!(policy.bindings.len(), 1);
    assert_eq!(policy.bindings[0].members, [OWNER]);
    let mut wanted = policy.clone().set_version(3);
    wanted
        .bindings
        .push(Binding::new().set_role(NODE_ROLE).set_members([MEMBER]));
    let set = projects
        .set_iam_policy()
        .set_resource("projects/kf-dev")
        .set_policy(wanted.clone())
        .send()
        .await
        .unwrap();
    assert_ne!(set.etag, policy.etag);
    assert_eq!(set.bindings.len(), 2);
    assert!(
        set.bindings
            .iter()
            .any(|b| b.role == NODE_ROLE && b.members == [MEMBER])
    );
    // The same write again carries the old etag: ABORTED.
    let err = projects
        .set_iam_policy()
        .set_resource("projects/kf-dev")
        .set_policy(wanted)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.code), Some(Code::Aborted), "{err}");

    let log = em.requests();
    let paths: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/v1/projects/kf-dev/serviceAccounts"),
            (
                "GET",
                &*format!("/v1/projects/kf-dev/serviceAccounts/{EMAIL}")
            ),
            (
                "GET",
                "/v1/projects/-/serviceAccounts/nobody-here@kf-dev.iam.gserviceaccount.com"
            ),
            ("POST", "/v1/projects/kf-dev/serviceAccounts"),
            ("GET", "/v1/projects/kf-dev/serviceAccounts"),
            ("POST", "/v3/projects/kf-dev:getIamPolicy"),
            ("POST", "/v3/projects/kf-dev:setIamPolicy"),
            ("POST", "/v3/projects/kf-dev:setIamPolicy"),
        ]
    );
    assert!(log.iter().all(|r| r.query.contains(SDK)), "{log:?}");
}
