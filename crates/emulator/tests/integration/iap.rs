//! Identity-Aware Proxy: the real gcloud CLI (`iap web add-iam-policy-binding`,
//! `get-iam-policy`, `iap settings get` / `set`) and the wire a plain HTTP client sees (etag
//! conflicts, no-op sets, validation, id and number naming the same resource).

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const IAP: &str = "iap";
const ACCESSOR: &str = "roles/iap.httpsResourceAccessor";
const BY_NUMBER: &str = "v1/projects/123456789012/iap_web/compute/services/kf-web";
const BY_ID: &str = "v1/projects/kf-dev/iap_web/compute/services/kf-web";

async fn gcloud(config: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, None, &[], args).await
}

#[tokio::test]
async fn gcloud_binds_members_and_sets_settings() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let config = std::fs::read_to_string(cfg.join("configurations/config_default")).unwrap();
    assert!(
        config.contains(&format!("iap = {}\n", em.endpoint(IAP).unwrap())),
        "{config}"
    );

    // gcloud's own display of the answer is not the policy (`--format=json` prints `[]`).
    let add = gcloud(
        &cfg,
        &[
            "iap",
            "web",
            "add-iam-policy-binding",
            "--resource-type=backend-services",
            "--service=kf-web",
            "--member=user:alice@example.com",
            &format!("--role={ACCESSOR}"),
        ],
    )
    .await
    .expect_ok();
    assert!(
        add.stderr.contains(
            "Updated IAM policy for backend service [projects/123456789012/iap_web/compute/services/kf-web]."
        ),
        "{}",
        add.stderr
    );
    let policy = gcloud(
        &cfg,
        &[
            "iap",
            "web",
            "get-iam-policy",
            "--resource-type=backend-services",
            "--service=kf-web",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(
        policy["bindings"],
        json!([{"role": ACCESSOR, "members": ["user:alice@example.com"]}]),
        "{policy}"
    );

    // gcloud named the project by number; the id names the same policy.
    let (status, by_id) = call(
        &em,
        IAP,
        Method::POST,
        &format!("{BY_ID}:getIamPolicy"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["bindings"], policy["bindings"]);
    assert_eq!(by_id["etag"], policy["etag"]);

    // A second member through gcloud's read-modify-write keeps the first.
    gcloud(
        &cfg,
        &[
            "iap",
            "web",
            "add-iam-policy-binding",
            "--resource-type=backend-services",
            "--service=kf-web",
            "--member=group:admins@example.com",
            &format!("--role={ACCESSOR}"),
        ],
    )
    .await
    .expect_ok();
    let read = gcloud(
        &cfg,
        &[
            "iap",
            "web",
            "get-iam-policy",
            "--resource-type=backend-services",
            "--service=kf-web",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(
        read["bindings"][0]["members"],
        json!(["group:admins@example.com", "user:alice@example.com"])
    );
    assert_ne!(read["etag"], policy["etag"]);

    // gcloud reads the project through Resource Manager v1 to learn its number.
    let log = em.requests();
    assert!(
        log.iter()
            .any(|r| r.api == "cloudresourcemanager" && r.path == "/v1/projects/kf-dev"),
        "{log:?}"
    );
    assert!(
        log.iter().any(|r| r.api == IAP
            && r.path == "/v1/projects/123456789012/iap_web/compute/services/kf-web:setIamPolicy"),
        "{log:?}"
    );
    let state = em.state();
    assert_eq!(
        state["iap"]["policies"]["projects/kf-dev/iap_web/compute/services/kf-web"]["bindings"][0]
            ["role"],
        ACCESSOR
    );

    let settings = gcloud(
        &cfg,
        &[
            "iap",
            "settings",
            "get",
            "--project=kf-dev",
            "--resource-type=compute",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(settings, json!({"name": "projects/kf-dev/iap_web/compute"}));

    let file = dir.path().join("iap_settings.yaml");
    std::fs::write(
        &file,
        "accessSettings:\n  corsSettings:\n    allowHttpOptions: true\n",
    )
    .unwrap();
    let set = gcloud(
        &cfg,
        &[
            "iap",
            "settings",
            "set",
            file.to_str().unwrap(),
            "--project=kf-dev",
            "--resource-type=compute",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(
        set["accessSettings"]["corsSettings"]["allowHttpOptions"],
        true
    );
    let settings = gcloud(
        &cfg,
        &[
            "iap",
            "settings",
            "get",
            "--project=kf-dev",
            "--resource-type=compute",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(settings, set);
    assert_eq!(
        em.state()["iap"]["settings"]["projects/kf-dev/iap_web/compute"]["accessSettings"],
        json!({"corsSettings": {"allowHttpOptions": true}})
    );
}

fn policy(etag: Option<&str>, members: &[&str]) -> Value {
    let mut p = json!({"bindings": [{"role": ACCESSOR, "members": members}]});
    if let Some(etag) = etag {
        p["etag"] = json!(etag);
    }
    json!({ "policy": p })
}

#[tokio::test]
async fn etags_conflict_and_no_op_sets_keep_them() {
    let em = emulator().await;
    let get = format!("{BY_NUMBER}:getIamPolicy");
    let set = format!("{BY_NUMBER}:setIamPolicy");

    let (status, empty) = call(&em, IAP, Method::POST, &get, Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(empty, json!({"etag": "ACAB"}));

    let (status, first) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(policy(Some("ACAB"), &["user:alice@example.com"])),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let etag1 = first["etag"].as_str().unwrap().to_string();
    assert_ne!(etag1, "ACAB");

    // Same bindings (members in another order, duplicated): the etag stays.
    let (status, same) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(policy(
            Some(&etag1),
            &["user:alice@example.com", "user:alice@example.com"],
        )),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["etag"], etag1);

    // A writer that read the empty policy loses.
    let (status, err) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(policy(Some("ACAB"), &["user:bob@example.com"])),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ABORTED");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."),
        "{err}"
    );

    // Without an etag, a set overwrites.
    let (status, second) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(policy(None, &["group:admins@example.com"])),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["etag"], etag1);
    let (_, read) = call(
        &em,
        IAP,
        Method::POST,
        &format!("{BY_ID}:getIamPolicy"),
        Some(json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(
        read["bindings"][0]["members"],
        json!(["group:admins@example.com"])
    );
    assert_eq!(read["etag"], second["etag"]);
    assert_eq!(read["version"], 1);
}

#[tokio::test]
async fn bad_members_roles_resources_and_projects() {
    let em = emulator().await;
    let set = format!("{BY_ID}:setIamPolicy");
    let (status, err) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(policy(None, &["alice@example.com"])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice@example.com"),
        "{err}"
    );
    let (status, err) = call(
        &em,
        IAP,
        Method::POST,
        &set,
        Some(json!({"policy": {"bindings": [{"role": "iap.httpsResourceAccessor", "members": ["allUsers"]}]}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("iap.httpsResourceAccessor"),
        "{err}"
    );
    let (status, err) = call(
        &em,
        IAP,
        Method::POST,
        "v1/projects/nope/iap_web/compute:getIamPolicy",
        None,
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    let (status, err) = call(
        &em,
        IAP,
        Method::POST,
        "v1/projects/kf-dev/iap_web/bogus/services/x:getIamPolicy",
        None,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, held) = call(
        &em,
        IAP,
        Method::POST,
        &format!("{BY_ID}:testIamPermissions"),
        Some(json!({"permissions": ["iap.webServices.getIamPolicy", "compute.instances.get"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        held,
        json!({"permissions": ["iap.webServices.getIamPolicy"]})
    );

    // Settings: merge by mask, replace without one.
    let url = "v1/projects/123456789012/iap_web:iapSettings";
    let (status, s) = call(
        &em,
        IAP,
        Method::PATCH,
        url,
        Some(
            json!({"accessSettings": {"corsSettings": {"allowHttpOptions": true}},
                    "applicationSettings": {"cookieDomain": "example.com"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let (status, s) = call(
        &em,
        IAP,
        Method::PATCH,
        &format!("{url}?updateMask=applicationSettings.cookieDomain"),
        Some(json!({"applicationSettings": {"cookieDomain": "kf.example.com"}})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s,
        json!({"name": "projects/123456789012/iap_web",
               "accessSettings": {"corsSettings": {"allowHttpOptions": true}},
               "applicationSettings": {"cookieDomain": "kf.example.com"}})
    );
    let (status, s) = call(
        &em,
        IAP,
        Method::PATCH,
        url,
        Some(json!({"applicationSettings": {"cookieDomain": "x.example.com"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(s.get("accessSettings").is_none(), "{s}");
    let (status, err) = call(
        &em,
        IAP,
        Method::PATCH,
        &format!("{url}?updateMask=bogus"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
}
