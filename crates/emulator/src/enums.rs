//! Enum numbers for clients that ask for them. Google's official SDKs send
//! `$alt=json;enum-encoding=int` with every request to a gRPC-transcoded API, and Google then
//! answers each enum field with its number instead of its name (proto3 JSON also leaves out a
//! field at its default, 0). gcloud does not ask, and gets names. The emulator stores names; this
//! module turns them into numbers on the way out, so the SDKs' number decoding is exercised as
//! it is against Google.
//!
//! The numbers are those of the APIs' protos (google/container/v1/cluster_service.proto,
//! google/devtools/cloudbuild/v1/cloudbuild.proto, ...), written out here: the emulator imports
//! no client crate. A name not listed stays a name, which every client also accepts.

use serde_json::Value;

/// Whether the query string asks for enum numbers (`$alt=json;enum-encoding=int`, escaped or
/// not).
pub(crate) fn wants_numbers(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            crate::wire::percent_decode(key) == "$alt"
                && crate::wire::percent_decode(value)
                    .split(';')
                    .any(|part| part.trim() == "enum-encoding=int")
        })
    })
}

/// Turns the enum names of one answer of `api` into their numbers, in place.
pub(crate) fn to_numbers(api: &str, body: &mut Value) {
    walk(api, body, "");
}

fn walk(api: &str, v: &mut Value, parent: &str) {
    match v {
        Value::Object(map) => {
            let operation = map.contains_key("operationType");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let number = map
                    .get(&key)
                    .and_then(Value::as_str)
                    .and_then(|name| number(api, parent, operation, &key, name));
                match number {
                    Some(0) => {
                        map.remove(&key);
                    }
                    Some(n) => {
                        map.insert(key, Value::from(n));
                    }
                    None => {
                        if let Some(child) = map.get_mut(&key) {
                            walk(api, child, &key);
                        }
                    }
                }
            }
        }
        // Items of a list keep the list's key as their parent (`nodePools` -> a node pool).
        Value::Array(items) => items.iter_mut().for_each(|item| walk(api, item, parent)),
        _ => {}
    }
}

/// The number of enum value `name` in field `key` of an object under `parent` (an object with
/// an `operationType` is an operation).
fn number(api: &str, parent: &str, operation: bool, key: &str, name: &str) -> Option<i64> {
    let table: &[(&str, i64)] = match (api, key) {
        ("accesscontextmanager", "perimeterType") => {
            &[("PERIMETER_TYPE_REGULAR", 0), ("PERIMETER_TYPE_BRIDGE", 1)]
        }
        ("accesscontextmanager", "combiningFunction") => &[("AND", 0), ("OR", 1)],
        ("accesscontextmanager", "identityType") => &[
            ("IDENTITY_TYPE_UNSPECIFIED", 0),
            ("ANY_IDENTITY", 1),
            ("ANY_USER_ACCOUNT", 2),
            ("ANY_SERVICE_ACCOUNT", 3),
        ],
        ("serviceusage", "state") => &[("STATE_UNSPECIFIED", 0), ("DISABLED", 1), ("ENABLED", 2)],
        // Resource Manager v3's Project, Folder and Organization (v1's `lifecycleState` is
        // asked for by gcloud only, which takes names).
        ("cloudresourcemanager", "state") => &[
            ("STATE_UNSPECIFIED", 0),
            ("ACTIVE", 1),
            ("DELETE_REQUESTED", 2),
        ],
        // Build.Status, also a step's status.
        ("cloudbuild", "status") => &[
            ("STATUS_UNKNOWN", 0),
            ("QUEUED", 1),
            ("WORKING", 2),
            ("SUCCESS", 3),
            ("FAILURE", 4),
            ("INTERNAL_ERROR", 5),
            ("TIMEOUT", 6),
            ("CANCELLED", 7),
            ("EXPIRED", 9),
            ("PENDING", 10),
        ],
        ("cloudbuild", "substitutionOption") => &[("MUST_MATCH", 0), ("ALLOW_LOOSE", 1)],
        ("cloudbuild", "type") if parent == "failureInfo" => &[
            ("FAILURE_TYPE_UNSPECIFIED", 0),
            ("PUSH_FAILED", 1),
            ("PUSH_IMAGE_NOT_FOUND", 2),
            ("PUSH_NOT_AUTHORIZED", 3),
            ("LOGGING_FAILURE", 4),
            ("USER_BUILD_STEP", 5),
            ("FETCH_SOURCE_FAILED", 6),
        ],
        // Operation.Status, NodePool.Status and Cluster.Status number alike names differently.
        ("container", "status") if operation => &[
            ("STATUS_UNSPECIFIED", 0),
            ("PENDING", 1),
            ("RUNNING", 2),
            ("DONE", 3),
            ("ABORTING", 4),
        ],
        ("container", "status") if parent == "nodePools" => &[
            ("STATUS_UNSPECIFIED", 0),
            ("PROVISIONING", 1),
            ("RUNNING", 2),
            ("RUNNING_WITH_ERROR", 3),
            ("RECONCILING", 4),
            ("STOPPING", 5),
            ("ERROR", 6),
        ],
        ("container", "status") => &[
            ("STATUS_UNSPECIFIED", 0),
            ("PROVISIONING", 1),
            ("RUNNING", 2),
            ("RECONCILING", 3),
            ("STOPPING", 4),
            ("ERROR", 5),
            ("DEGRADED", 6),
        ],
        ("container", "operationType") => &[
            ("TYPE_UNSPECIFIED", 0),
            ("CREATE_CLUSTER", 1),
            ("DELETE_CLUSTER", 2),
            ("UPGRADE_MASTER", 3),
            ("UPGRADE_NODES", 4),
            ("REPAIR_CLUSTER", 5),
            ("UPDATE_CLUSTER", 6),
            ("CREATE_NODE_POOL", 7),
            ("DELETE_NODE_POOL", 8),
            ("SET_NODE_POOL_MANAGEMENT", 9),
            ("AUTO_REPAIR_NODES", 10),
            ("AUTO_UPGRADE_NODES", 11),
            ("SET_LABELS", 12),
            ("SET_MASTER_AUTH", 13),
            ("SET_NODE_POOL_SIZE", 14),
            ("SET_NETWORK_POLICY", 15),
            ("SET_MAINTENANCE_POLICY", 16),
            ("RESIZE_CLUSTER", 18),
            ("FLEET_FEATURE_UPGRADE", 19),
        ],
        ("container", "channel") if parent == "releaseChannel" => &[
            ("UNSPECIFIED", 0),
            ("RAPID", 1),
            ("REGULAR", 2),
            ("STABLE", 3),
            ("EXTENDED", 4),
        ],
        ("container", "mode") if parent == "workloadMetadataConfig" => &[
            ("MODE_UNSPECIFIED", 0),
            ("GCE_METADATA", 1),
            ("GKE_METADATA", 2),
        ],
        _ => return None,
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sdks_query_asks_for_numbers_and_gclouds_does_not() {
        assert!(wants_numbers(Some("%24alt=json%3Benum-encoding%3Dint")));
        assert!(wants_numbers(Some(
            "pageSize=0&$alt=json;enum-encoding=int"
        )));
        assert!(!wants_numbers(Some("alt=json")));
        assert!(!wants_numbers(None));
    }

    #[test]
    fn names_become_numbers_by_where_they_are() {
        let mut cluster = json!({
            "name": "kf-private",
            "status": "RECONCILING",
            "nodePools": [{"name": "default-pool", "status": "RECONCILING",
                "config": {"workloadMetadataConfig": {"mode": "GKE_METADATA"}}}],
        });
        to_numbers("container", &mut cluster);
        assert_eq!(cluster["status"], 3);
        assert_eq!(cluster["nodePools"][0]["status"], 4);
        assert_eq!(
            cluster["nodePools"][0]["config"]["workloadMetadataConfig"]["mode"],
            2
        );
        let mut op = json!({"operationType": "CREATE_CLUSTER", "status": "DONE"});
        to_numbers("container", &mut op);
        assert_eq!(op, json!({"operationType": 1, "status": 3}));
        // A default leaves the field out; a name the table does not know stays a name.
        let mut perimeter = json!({"perimeterType": "PERIMETER_TYPE_REGULAR",
            "status": {"egressPolicies": [{"egressFrom": {"identityType": "ANY_IDENTITY"}}]}});
        to_numbers("accesscontextmanager", &mut perimeter);
        assert_eq!(
            perimeter,
            json!({"status": {"egressPolicies": [{"egressFrom": {"identityType": 1}}]}})
        );
        let mut service = json!({"state": "SOMETHING_NEW"});
        to_numbers("serviceusage", &mut service);
        assert_eq!(service["state"], "SOMETHING_NEW");
    }
}
