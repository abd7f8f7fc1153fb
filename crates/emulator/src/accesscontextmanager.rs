//! Access Context Manager v1: access policies, access levels and service perimeters.

use std::collections::{BTreeMap, BTreeSet};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, Policy, State};
use crate::wire::{
    ApiRequest, apply_mask, enum_name, is_number, list_response, normalize_enum_field,
    required_mask, valid_cidr, valid_short_name,
};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "accesscontextmanager";

const TYPE_PREFIX: &str = "type.googleapis.com/google.identity.accesscontextmanager.v1.";
const EMPTY: &str = "type.googleapis.com/google.protobuf.Empty";
const MAX_LEVELS: usize = 500;
const MAX_SCOPED_POLICIES: usize = 50;
const MAX_CONDITIONS: usize = 40;
const MAX_LIST_ITEMS: usize = 200;

const COMBINING: &[(i64, &str)] = &[(0, "AND"), (1, "OR")];
const PERIMETER_TYPE: &[(i64, &str)] =
    &[(0, "PERIMETER_TYPE_REGULAR"), (1, "PERIMETER_TYPE_BRIDGE")];
const IDENTITY_TYPE: &[(i64, &str)] = &[
    (0, "IDENTITY_TYPE_UNSPECIFIED"),
    (1, "ANY_IDENTITY"),
    (2, "ANY_USER_ACCOUNT"),
    (3, "ANY_SERVICE_ACCOUNT"),
];
const SOURCE_RESTRICTION: &[(i64, &str)] = &[
    (0, "SOURCE_RESTRICTION_UNSPECIFIED"),
    (1, "SOURCE_RESTRICTION_ENABLED"),
    (2, "SOURCE_RESTRICTION_DISABLED"),
];
const ENCRYPTION: &[(i64, &str)] = &[
    (0, "ENCRYPTION_UNSPECIFIED"),
    (1, "ENCRYPTION_UNSUPPORTED"),
    (2, "UNENCRYPTED"),
    (3, "ENCRYPTED"),
];
const MANAGEMENT: &[(i64, &str)] = &[
    (0, "MANAGEMENT_UNSPECIFIED"),
    (1, "NONE"),
    (2, "BASIC"),
    (3, "COMPLETE"),
];
const OS_TYPE: &[(i64, &str)] = &[
    (0, "OS_UNSPECIFIED"),
    (1, "DESKTOP_MAC"),
    (2, "DESKTOP_WINDOWS"),
    (3, "DESKTOP_LINUX"),
    (4, "ANDROID"),
    (5, "IOS"),
    (6, "DESKTOP_CHROME_OS"),
];

fn typed(kind: &str, value: Value) -> Value {
    let mut v = match value {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let type_url = if kind == "Empty" {
        EMPTY.to_string()
    } else {
        format!("{TYPE_PREFIX}{kind}")
    };
    v.insert("@type".into(), Value::String(type_url));
    Value::Object(v)
}

fn not_found_route(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}{}.",
        req.method,
        req.segments.join("/"),
        req.verb
            .as_deref()
            .map(|v| format!(":{v}"))
            .unwrap_or_default()
    ))
}

/// Handles one request; a write that succeeded also writes its admin-activity audit entry.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let answer = route(st, env, req)?;
    if let Some((policy_id, method, resource, request)) = audited(req) {
        let org = st
            .policies
            .get(&policy_id)
            .map(|p| p.parent.clone())
            .unwrap_or_default();
        if !org.is_empty() {
            crate::logging::admin_activity(st, &org, method, &resource, request);
        }
    }
    Ok(answer)
}

/// The audit record of a write: policy id, the method name Google logs (without
/// `google.identity.accesscontextmanager.v1.AccessContextManager.`), the resource name and
/// the request as Google's `request` field shows it (`@type`, the object as sent, the mask).
fn audited(req: &ApiRequest) -> Option<(String, &'static str, String, Value)> {
    let parts = req.parts();
    let m = &req.method;
    let request = |kind: &str, fields: Value| -> Value {
        let mut v = fields;
        v["@type"] = json!(format!("{TYPE_PREFIX}{kind}Request"));
        v
    };
    let mask = req.param("updateMask").unwrap_or("").to_string();
    let body = req.body.clone();
    let (p, method, resource, req_json) = match (parts.as_slice(), req.verb()) {
        (["v1", "accessPolicies", p, "accessLevels"], "") if m == Method::POST => {
            let parent = format!("accessPolicies/{p}");
            let name = req.body_str("name").to_string();
            (
                *p,
                "CreateAccessLevel",
                name,
                request(
                    "CreateAccessLevel",
                    json!({"parent": parent, "accessLevel": body}),
                ),
            )
        }
        (["v1", "accessPolicies", p, "accessLevels"], "replaceAll") if m == Method::POST => {
            let parent = format!("accessPolicies/{p}");
            let mut r = body;
            r["parent"] = json!(parent);
            (
                *p,
                "ReplaceAccessLevels",
                parent,
                request("ReplaceAccessLevels", r),
            )
        }
        (["v1", "accessPolicies", p, "accessLevels", l], "") if m == Method::PATCH => {
            let name = format!("accessPolicies/{p}/accessLevels/{l}");
            (
                *p,
                "UpdateAccessLevel",
                name,
                request(
                    "UpdateAccessLevel",
                    json!({"accessLevel": body, "updateMask": mask}),
                ),
            )
        }
        (["v1", "accessPolicies", p, "accessLevels", l], "") if m == Method::DELETE => {
            let name = format!("accessPolicies/{p}/accessLevels/{l}");
            (
                *p,
                "DeleteAccessLevel",
                name.clone(),
                request("DeleteAccessLevel", json!({"name": name})),
            )
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "") if m == Method::POST => {
            let parent = format!("accessPolicies/{p}");
            let name = req.body_str("name").to_string();
            (
                *p,
                "CreateServicePerimeter",
                name,
                request(
                    "CreateServicePerimeter",
                    json!({"parent": parent, "servicePerimeter": body}),
                ),
            )
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "replaceAll") if m == Method::POST => {
            let parent = format!("accessPolicies/{p}");
            let mut r = body;
            r["parent"] = json!(parent);
            (
                *p,
                "ReplaceServicePerimeters",
                parent,
                request("ReplaceServicePerimeters", r),
            )
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "commit") if m == Method::POST => {
            let parent = format!("accessPolicies/{p}");
            let mut r = body;
            r["parent"] = json!(parent);
            (
                *p,
                "CommitServicePerimeters",
                parent,
                request("CommitServicePerimeters", r),
            )
        }
        (["v1", "accessPolicies", p, "servicePerimeters", n], "") if m == Method::PATCH => {
            let name = format!("accessPolicies/{p}/servicePerimeters/{n}");
            (
                *p,
                "UpdateServicePerimeter",
                name,
                request(
                    "UpdateServicePerimeter",
                    json!({"servicePerimeter": body, "updateMask": mask}),
                ),
            )
        }
        (["v1", "accessPolicies", p, "servicePerimeters", n], "") if m == Method::DELETE => {
            let name = format!("accessPolicies/{p}/servicePerimeters/{n}");
            (
                *p,
                "DeleteServicePerimeter",
                name.clone(),
                request("DeleteServicePerimeter", json!({"name": name})),
            )
        }
        _ => return None,
    };
    Some((p.to_string(), method, resource, req_json))
}

fn route(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    match (parts.as_slice(), req.verb()) {
        (["v1", "operations", rest @ ..], "") if !rest.is_empty() && m == Method::GET => {
            st.get_operation(API, &format!("operations/{}", rest.join("/")))
        }
        (["v1", "accessPolicies"], "") if m == Method::GET => list_policies(st, req),
        (["v1", "accessPolicies"], "") if m == Method::POST => create_policy(st, env, req),
        (["v1", "accessPolicies", p], "") if m == Method::GET => Ok(policy(st, p)?.to_json()),
        (["v1", "accessPolicies", p], "") if m == Method::PATCH => update_policy(st, env, req, p),
        (["v1", "accessPolicies", p], "") if m == Method::DELETE => delete_policy(st, env, p),
        (["v1", "accessPolicies", p, "accessLevels"], "") if m == Method::GET => {
            let policy = policy(st, p)?;
            let items = policy.levels.values().cloned().collect();
            let (page, next) = req.paginate(items, 100, 1000)?;
            Ok(list_response("accessLevels", page, next))
        }
        (["v1", "accessPolicies", p, "accessLevels"], "") if m == Method::POST => {
            create_level(st, env, req, p)
        }
        (["v1", "accessPolicies", p, "accessLevels"], "replaceAll") if m == Method::POST => {
            replace_levels(st, env, req, p)
        }
        (["v1", "accessPolicies", p, "accessLevels", l], "") if m == Method::GET => {
            let policy = policy(st, p)?;
            policy
                .levels
                .get(*l)
                .cloned()
                .ok_or_else(|| level_not_found(p, l))
        }
        (["v1", "accessPolicies", p, "accessLevels", l], "") if m == Method::PATCH => {
            update_level(st, env, req, p, l)
        }
        (["v1", "accessPolicies", p, "accessLevels", l], "") if m == Method::DELETE => {
            delete_level(st, env, p, l)
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "") if m == Method::GET => {
            let policy = policy(st, p)?;
            let items = policy.perimeters.values().cloned().collect();
            let (page, next) = req.paginate(items, 100, 1000)?;
            Ok(list_response("servicePerimeters", page, next))
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "") if m == Method::POST => {
            create_perimeter(st, env, req, p)
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "replaceAll") if m == Method::POST => {
            replace_perimeters(st, env, req, p)
        }
        (["v1", "accessPolicies", p, "servicePerimeters"], "commit") if m == Method::POST => {
            commit_perimeters(st, env, req, p)
        }
        (["v1", "accessPolicies", p, "servicePerimeters", n], "") if m == Method::GET => {
            let policy = policy(st, p)?;
            policy
                .perimeters
                .get(*n)
                .cloned()
                .ok_or_else(|| perimeter_not_found(p, n))
        }
        (["v1", "accessPolicies", p, "servicePerimeters", n], "") if m == Method::PATCH => {
            update_perimeter(st, env, req, p, n)
        }
        (["v1", "accessPolicies", p, "servicePerimeters", n], "") if m == Method::DELETE => {
            delete_perimeter(st, env, p, n)
        }
        _ => Err(not_found_route(req)),
    }
}

fn policy<'a>(st: &'a State, id: &str) -> ApiResult<&'a Policy> {
    st.policies.get(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "Access Policy 'accessPolicies/{id}' was not found."
        ))
    })
}

fn level_not_found(p: &str, l: &str) -> ApiError {
    ApiError::not_found(format!(
        "Access Level 'accessPolicies/{p}/accessLevels/{l}' was not found."
    ))
}

fn perimeter_not_found(p: &str, n: &str) -> ApiError {
    ApiError::not_found(format!(
        "Service Perimeter 'accessPolicies/{p}/servicePerimeters/{n}' was not found."
    ))
}

/// Checks that a write on policy `id` may start: the policy exists and no other operation on it
/// is still running.
fn begin_write(st: &State, id: &str) -> ApiResult<()> {
    policy(st, id)?;
    if st.policy_busy(id) {
        return Err(ApiError::aborted(format!(
            "Another operation is in progress on this access policy (accessPolicies/{id}); retry."
        )));
    }
    Ok(())
}

/// Bumps the policy etag and returns the finished (or running) operation.
fn finish_write(st: &mut State, env: &Env, id: &str, kind: &str, response: Value) -> Value {
    let etag = st.next_etag();
    if let Some(p) = st.policies.get_mut(id) {
        p.etag = etag;
    }
    operation(st, env, id, kind, response)
}

fn operation(st: &mut State, env: &Env, id: &str, kind: &str, response: Value) -> Value {
    let n = st.next();
    let name = format!(
        "operations/accessPolicies/{id}/{kind}/{}",
        1_700_000_000_000 + n
    );
    st.new_operation(
        API,
        name,
        env.lro,
        typed("AccessContextManagerOperationMetadata", json!({})),
        response,
        Some(id.to_string()),
    )
}

fn check_etag(policy: &Policy, req: &ApiRequest) -> ApiResult<()> {
    let etag = req.body_str("etag");
    if !etag.is_empty() && etag != policy.etag {
        return Err(ApiError::aborted(format!(
            "The etag '{etag}' does not match the current etag of the access policy '{}' ('{}').",
            policy.name(),
            policy.etag
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- access policies

fn list_policies(st: &State, req: &ApiRequest) -> ApiResult<Value> {
    let parent = req.param("parent").unwrap_or("");
    if parent.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'parent' is required.",
        ));
    }
    if st.organization(parent).is_none() || !parent.starts_with("organizations/") {
        return Err(ApiError::permission_denied(format!(
            "Permission 'accesscontextmanager.policies.list' denied on resource '{parent}' (or it may not exist)."
        )));
    }
    let items = st
        .policies
        .values()
        .filter(|p| p.parent == parent)
        .map(Policy::to_json)
        .collect();
    let (page, next) = req.paginate(items, 100, 1000)?;
    Ok(list_response("accessPolicies", page, next))
}

fn validate_scopes(st: &State, scopes: &Value) -> ApiResult<Vec<String>> {
    let list = match scopes {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => {
            return Err(ApiError::invalid_argument(
                "Invalid value at 'policy.scopes': expected a list of strings.",
            ));
        }
    };
    if list.len() > 1 {
        return Err(ApiError::invalid_argument(
            "Invalid value for field 'policy.scopes': a policy may have at most one scope.",
        ));
    }
    let mut out = Vec::new();
    for s in list {
        let s = s.as_str().unwrap_or("");
        let ok = match s.split_once('/') {
            Some(("projects", n)) => is_number(n) && st.project(n).is_some(),
            Some(("folders", n)) => is_number(n),
            _ => false,
        };
        if !ok {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'policy.scopes': '{s}' is not a valid scope; use 'projects/<project number>' or 'folders/<folder number>'."
            )));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

fn create_policy(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parent = req.body_str("parent").to_string();
    if parent.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'parent' is required.",
        ));
    }
    if !parent.starts_with("organizations/") || st.organization(&parent).is_none() {
        return Err(ApiError::permission_denied(format!(
            "Permission 'accesscontextmanager.policies.create' denied on resource '{parent}' (or it may not exist)."
        )));
    }
    let title = req.body_str("title").to_string();
    if title.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'title' is required.",
        ));
    }
    let scopes = validate_scopes(st, req.body.get("scopes").unwrap_or(&Value::Null))?;
    let same_parent: Vec<&Policy> = st
        .policies
        .values()
        .filter(|p| p.parent == parent)
        .collect();
    if scopes.is_empty() {
        if same_parent.iter().any(|p| p.scopes.is_empty()) {
            return Err(ApiError::already_exists(format!(
                "Policy already exists with parent {parent}"
            )));
        }
    } else {
        if same_parent.iter().any(|p| p.scopes == scopes) {
            return Err(ApiError::already_exists(format!(
                "Policy already exists with parent {parent} and scopes {}",
                scopes.join(",")
            )));
        }
        if same_parent.iter().filter(|p| !p.scopes.is_empty()).count() >= MAX_SCOPED_POLICIES {
            return Err(ApiError::failed_precondition(format!(
                "The organization {parent} already has {MAX_SCOPED_POLICIES} scoped access policies."
            )));
        }
    }
    let id = (100_000_000_000 + st.next()).to_string();
    let etag = st.next_etag();
    let p = Policy {
        id: id.clone(),
        parent,
        title,
        scopes,
        etag,
        levels: BTreeMap::new(),
        perimeters: BTreeMap::new(),
    };
    let response = typed("AccessPolicy", p.to_json());
    st.policies.insert(id.clone(), p);
    Ok(operation(st, env, &id, "create", response))
}

fn update_policy(st: &mut State, env: &Env, req: &ApiRequest, id: &str) -> ApiResult<Value> {
    begin_write(st, id)?;
    let mask = required_mask(req, &["title", "scopes"])?;
    let mut title = None;
    let mut scopes = None;
    for path in &mask {
        match path.as_str() {
            "title" => {
                let t = req.body_str("title");
                if t.is_empty() {
                    return Err(ApiError::invalid_argument(
                        "Invalid value for field 'policy.title': must not be empty.",
                    ));
                }
                title = Some(t.to_string());
            }
            "scopes" => {
                scopes = Some(validate_scopes(
                    st,
                    req.body.get("scopes").unwrap_or(&Value::Null),
                )?);
            }
            other => {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid field mask path '{other}' in 'update_mask'."
                )));
            }
        }
    }
    let Some(p) = st.policies.get_mut(id) else {
        return Err(ApiError::not_found(format!(
            "Access Policy 'accessPolicies/{id}' was not found."
        )));
    };
    if let Some(t) = title {
        p.title = t;
    }
    if let Some(s) = scopes {
        p.scopes = s;
    }
    let etag = st.next_etag();
    let p = st
        .policies
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found("policy"))?;
    p.etag = etag;
    let response = typed("AccessPolicy", p.to_json());
    Ok(operation(st, env, id, "update", response))
}

fn delete_policy(st: &mut State, env: &Env, id: &str) -> ApiResult<Value> {
    begin_write(st, id)?;
    st.policies.remove(id);
    Ok(operation(st, env, id, "delete", typed("Empty", json!({}))))
}

// ---------------------------------------------------------------- access levels

fn short_name<'a>(
    name: &'a str,
    policy_id: &str,
    collection: &str,
    field: &str,
) -> ApiResult<&'a str> {
    let prefix = format!("accessPolicies/{policy_id}/{collection}/");
    let short = name.strip_prefix(&prefix).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Invalid value for field '{field}': '{name}' must be of the form '{prefix}<name>'."
        ))
    })?;
    if !valid_short_name(short) {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field '{field}': '{short}' is not a valid name. A name must start with a letter and contain only letters, digits and underscores, at most 50 characters."
        )));
    }
    Ok(short)
}

fn strings<'a>(v: Option<&'a Value>, field: &str) -> ApiResult<Vec<&'a str>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            if a.len() > MAX_LIST_ITEMS {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value for field '{field}': at most {MAX_LIST_ITEMS} items are allowed."
                )));
            }
            a.iter()
                .map(|x| {
                    x.as_str().ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "Invalid value at '{field}': expected a string, got {x}."
                        ))
                    })
                })
                .collect()
        }
        Some(other) => Err(ApiError::invalid_argument(format!(
            "Invalid value at '{field}': expected a list, got {other}."
        ))),
    }
}

fn as_object<'a>(v: &'a mut Value, field: &str) -> ApiResult<&'a mut Map<String, Value>> {
    v.as_object_mut().ok_or_else(|| {
        ApiError::invalid_argument(format!("Invalid value at '{field}': expected an object."))
    })
}

/// Drops nulls, empty lists and `false` booleans, as proto3 JSON does.
fn prune(obj: &mut Map<String, Value>) {
    obj.retain(|_, v| {
        !(v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_bool() == Some(false))
    });
}

fn normalize_enum_list(
    obj: &mut Map<String, Value>,
    key: &str,
    table: &[(i64, &str)],
    field: &str,
) -> ApiResult<()> {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        for item in items.iter_mut() {
            *item = Value::String(enum_name(item, table, field)?);
        }
    }
    Ok(())
}

fn normalize_condition(c: &mut Value, levels: &BTreeSet<String>) -> ApiResult<()> {
    let field = "access_level.basic.conditions";
    let obj = as_object(c, field)?;
    for m in strings(obj.get("members"), "access_level.basic.conditions.members")? {
        if !(m.starts_with("user:") || m.starts_with("serviceAccount:")) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_level.basic.conditions.members': '{m}'. Only 'user:' and 'serviceAccount:' members are supported."
            )));
        }
    }
    for ip in strings(
        obj.get("ipSubnetworks"),
        "access_level.basic.conditions.ip_subnetworks",
    )? {
        if !valid_cidr(ip) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_level.basic.conditions.ip_subnetworks': '{ip}' is not a valid IP subnetwork in CIDR notation with zero host bits."
            )));
        }
    }
    for l in strings(
        obj.get("requiredAccessLevels"),
        "access_level.basic.conditions.required_access_levels",
    )? {
        if !levels.contains(l) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_level.basic.conditions.required_access_levels': Level name '{l}' is not available in this Access Policy."
            )));
        }
    }
    for r in strings(obj.get("regions"), "access_level.basic.conditions.regions")? {
        if r.len() != 2 || !r.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_level.basic.conditions.regions': '{r}' is not an ISO 3166-1 alpha-2 region code."
            )));
        }
    }
    if let Some(dp) = obj.get_mut("devicePolicy") {
        let dp = as_object(dp, "access_level.basic.conditions.device_policy")?;
        normalize_enum_list(
            dp,
            "allowedEncryptionStatuses",
            ENCRYPTION,
            "access_level.basic.conditions.device_policy.allowed_encryption_statuses",
        )?;
        normalize_enum_list(
            dp,
            "allowedDeviceManagementLevels",
            MANAGEMENT,
            "access_level.basic.conditions.device_policy.allowed_device_management_levels",
        )?;
        if let Some(Value::Array(os)) = dp.get_mut("osConstraints") {
            for o in os.iter_mut() {
                if let Some(o) = o.as_object_mut()
                    && let Some(t) = o.get("osType")
                {
                    let name = enum_name(
                        t,
                        OS_TYPE,
                        "access_level.basic.conditions.device_policy.os_constraints.os_type",
                    )?;
                    o.insert("osType".into(), Value::String(name));
                }
            }
        }
        prune(dp);
    }
    prune(obj);
    Ok(())
}

/// Validates and normalizes an access level (enums as names, defaults omitted).
fn normalize_level(v: &Value, name: &str, levels: &BTreeSet<String>) -> ApiResult<Value> {
    let mut v = v.clone();
    let obj = as_object(&mut v, "access_level")?;
    obj.insert("name".into(), Value::String(name.to_string()));
    obj.remove("createTime");
    obj.remove("updateTime");
    if obj
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'access_level.title': the title of access level '{name}' must not be empty."
        )));
    }
    let has = |k: &str| obj.get(k).is_some_and(|x| !x.is_null());
    if has("basic") == has("custom") {
        return Err(ApiError::invalid_argument(format!(
            "Invalid access level '{name}': exactly one of 'basic' or 'custom' must be set."
        )));
    }
    if let Some(basic) = obj.get_mut("basic").filter(|b| !b.is_null()) {
        let b = as_object(basic, "access_level.basic")?;
        normalize_enum_field(
            b,
            "combiningFunction",
            COMBINING,
            "access_level.basic.combining_function",
        )?;
        let conditions = match b.get_mut("conditions") {
            Some(Value::Array(c)) if !c.is_empty() => c,
            _ => {
                return Err(ApiError::invalid_argument(
                    "Invalid value for field 'access_level.basic.conditions': at least one condition is required.",
                ));
            }
        };
        if conditions.len() > MAX_CONDITIONS {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_level.basic.conditions': at most {MAX_CONDITIONS} conditions are allowed."
            )));
        }
        for c in conditions.iter_mut() {
            normalize_condition(c, levels)?;
        }
    }
    if let Some(custom) = obj.get("custom").filter(|c| !c.is_null()) {
        let expr = custom
            .get("expr")
            .and_then(|e| e.get("expression"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if expr.is_empty() {
            return Err(ApiError::invalid_argument(
                "Invalid value for field 'access_level.custom.expr.expression': must not be empty.",
            ));
        }
    }
    prune(obj);
    Ok(v)
}

/// Names of perimeters (in `perimeters`) that use access level `full`.
fn level_users(perimeters: &BTreeMap<String, Value>, full: &str) -> Vec<String> {
    perimeters
        .values()
        .filter(|p| {
            ["status", "spec"].iter().any(|c| {
                p.get(*c)
                    .and_then(|c| c.get("accessLevels"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|l| l.as_str() == Some(full)))
            })
        })
        .filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

fn create_level(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let name = req.body_str("name").to_string();
    let short = short_name(&name, p, "accessLevels", "access_level.name")?.to_string();
    let policy = policy(st, p)?;
    if policy.levels.contains_key(&short) {
        return Err(ApiError::already_exists(format!(
            "Access Level '{name}' already exists."
        )));
    }
    if policy.levels.len() >= MAX_LEVELS {
        return Err(ApiError::failed_precondition(format!(
            "Access Policy '{}' already has the maximum of {MAX_LEVELS} access levels.",
            policy.name()
        )));
    }
    let level = normalize_level(&req.body, &name, &policy.level_names())?;
    if let Some(pol) = st.policies.get_mut(p) {
        pol.levels.insert(short, level.clone());
    }
    Ok(finish_write(
        st,
        env,
        p,
        "create",
        typed("AccessLevel", level),
    ))
}

fn update_level(st: &mut State, env: &Env, req: &ApiRequest, p: &str, l: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let mask = required_mask(req, &["title", "description", "basic", "custom"])?;
    let policy = policy(st, p)?;
    let mut level = policy
        .levels
        .get(l)
        .cloned()
        .ok_or_else(|| level_not_found(p, l))?;
    apply_mask(&mut level, &req.body, &mask);
    let name = format!("accessPolicies/{p}/accessLevels/{l}");
    let level = normalize_level(&level, &name, &policy.level_names())?;
    if let Some(pol) = st.policies.get_mut(p) {
        pol.levels.insert(l.to_string(), level.clone());
    }
    Ok(finish_write(
        st,
        env,
        p,
        "update",
        typed("AccessLevel", level),
    ))
}

fn delete_level(st: &mut State, env: &Env, p: &str, l: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let policy = policy(st, p)?;
    if !policy.levels.contains_key(l) {
        return Err(level_not_found(p, l));
    }
    let full = format!("accessPolicies/{p}/accessLevels/{l}");
    let users = level_users(&policy.perimeters, &full);
    if !users.is_empty() {
        return Err(ApiError::failed_precondition(format!(
            "Access Level '{full}' is in use by service perimeter(s): {}.",
            users.join(", ")
        )));
    }
    if let Some(pol) = st.policies.get_mut(p) {
        pol.levels.remove(l);
    }
    Ok(finish_write(
        st,
        env,
        p,
        "delete",
        typed("Empty", json!({})),
    ))
}

fn replace_levels(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let policy = policy(st, p)?;
    check_etag(policy, req)?;
    let given = match req.body.get("accessLevels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "Invalid value at 'access_levels': expected a list.",
            ));
        }
    };
    if given.len() > MAX_LEVELS {
        return Err(ApiError::failed_precondition(format!(
            "At most {MAX_LEVELS} access levels are allowed in an access policy."
        )));
    }
    let mut names = BTreeSet::new();
    let mut shorts = Vec::new();
    for level in &given {
        let name = level.get("name").and_then(Value::as_str).unwrap_or("");
        let short = short_name(name, p, "accessLevels", "access_levels.name")?;
        if !names.insert(name.to_string()) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'access_levels': duplicate access level '{name}'."
            )));
        }
        shorts.push(short.to_string());
    }
    let mut levels = BTreeMap::new();
    for (level, short) in given.iter().zip(shorts) {
        let name = format!("accessPolicies/{p}/accessLevels/{short}");
        levels.insert(short, normalize_level(level, &name, &names)?);
    }
    for short in policy.levels.keys() {
        let full = format!("accessPolicies/{p}/accessLevels/{short}");
        if !names.contains(&full) {
            let users = level_users(&policy.perimeters, &full);
            if !users.is_empty() {
                return Err(ApiError::failed_precondition(format!(
                    "Access Level '{full}' is in use by service perimeter(s): {}; it cannot be removed.",
                    users.join(", ")
                )));
            }
        }
    }
    let list: Vec<Value> = levels.values().cloned().collect();
    if let Some(pol) = st.policies.get_mut(p) {
        pol.levels = levels;
    }
    Ok(finish_write(
        st,
        env,
        p,
        "replaceAll",
        typed(
            "ReplaceAccessLevelsResponse",
            list_response("accessLevels", list, None),
        ),
    ))
}

// ---------------------------------------------------------------- service perimeters

fn normalize_config(
    cfg: &mut Value,
    field: &str,
    levels: &BTreeSet<String>,
    bridge: bool,
) -> ApiResult<()> {
    let obj = as_object(cfg, &format!("service_perimeter.{field}"))?;
    for r in strings(
        obj.get("resources"),
        &format!("service_perimeter.{field}.resources"),
    )? {
        let ok = r.strip_prefix("projects/").is_some_and(is_number)
            || r.starts_with("//compute.googleapis.com/projects/");
        if !ok {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'service_perimeter.{field}.resources': '{r}' must be of the form 'projects/<project number>'."
            )));
        }
    }
    let access_levels = strings(
        obj.get("accessLevels"),
        &format!("service_perimeter.{field}.access_levels"),
    )?;
    for l in &access_levels {
        if !levels.contains(*l) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'service_perimeter.{field}.access_levels': Level name '{l}' is not available in this Access Policy."
            )));
        }
    }
    let services = strings(
        obj.get("restrictedServices"),
        &format!("service_perimeter.{field}.restricted_services"),
    )?;
    for s in &services {
        if !(*s == "*" || (s.contains('.') && !s.contains(' '))) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'service_perimeter.{field}.restricted_services': '{s}' is not a valid service name."
            )));
        }
    }
    if bridge
        && (!access_levels.is_empty()
            || !services.is_empty()
            || ["vpcAccessibleServices", "ingressPolicies", "egressPolicies"]
                .iter()
                .any(|k| obj.get(*k).is_some_and(|v| !v.is_null())))
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'service_perimeter.{field}': a perimeter bridge may only list resources."
        )));
    }
    if let Some(vpc) = obj
        .get_mut("vpcAccessibleServices")
        .filter(|v| !v.is_null())
    {
        let vpc = as_object(
            vpc,
            &format!("service_perimeter.{field}.vpc_accessible_services"),
        )?;
        strings(
            vpc.get("allowedServices"),
            &format!("service_perimeter.{field}.vpc_accessible_services.allowed_services"),
        )?;
        prune(vpc);
    }
    for (key, side) in [
        ("ingressPolicies", "ingressFrom"),
        ("egressPolicies", "egressFrom"),
    ] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            for pol in list.iter_mut() {
                if let Some(from) = pol.get_mut(side).and_then(Value::as_object_mut) {
                    normalize_enum_field(
                        from,
                        "identityType",
                        IDENTITY_TYPE,
                        &format!("service_perimeter.{field}.{key}.{side}.identity_type"),
                    )?;
                    normalize_enum_field(
                        from,
                        "sourceRestriction",
                        SOURCE_RESTRICTION,
                        &format!("service_perimeter.{field}.{key}.{side}.source_restriction"),
                    )?;
                }
            }
        }
    }
    prune(obj);
    Ok(())
}

/// Validates and normalizes a service perimeter.
fn normalize_perimeter(v: &Value, name: &str, levels: &BTreeSet<String>) -> ApiResult<Value> {
    let mut v = v.clone();
    let obj = as_object(&mut v, "service_perimeter")?;
    obj.insert("name".into(), Value::String(name.to_string()));
    obj.remove("etag");
    obj.remove("createTime");
    obj.remove("updateTime");
    if obj
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'service_perimeter.title': the title of service perimeter '{name}' must not be empty."
        )));
    }
    normalize_enum_field(
        obj,
        "perimeterType",
        PERIMETER_TYPE,
        "service_perimeter.perimeter_type",
    )?;
    let bridge = obj.get("perimeterType").and_then(Value::as_str) == Some("PERIMETER_TYPE_BRIDGE");
    for key in ["status", "spec"] {
        if let Some(cfg) = obj.get_mut(key).filter(|c| !c.is_null()) {
            normalize_config(cfg, key, levels, bridge)?;
        }
    }
    match obj.get("useExplicitDryRunSpec") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'service_perimeter.use_explicit_dry_run_spec' (TYPE_BOOL), {other}"
            )));
        }
    }
    obj.retain(|_, v| !(v.is_null() || v.as_bool() == Some(false)));
    Ok(v)
}

/// A project may be in at most one regular perimeter's `status` per policy.
fn check_overlap(perimeters: &BTreeMap<String, Value>) -> ApiResult<()> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in perimeters.values() {
        if p.get("perimeterType").and_then(Value::as_str) == Some("PERIMETER_TYPE_BRIDGE") {
            continue;
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let resources = p
            .get("status")
            .and_then(|s| s.get("resources"))
            .and_then(Value::as_array);
        for r in resources.into_iter().flatten().filter_map(Value::as_str) {
            if let Some(other) = seen.insert(r, name)
                && other != name
            {
                return Err(ApiError::failed_precondition(format!(
                    "Resource '{r}' cannot be in both regular service perimeters '{other}' and '{name}': a resource can belong to at most one regular service perimeter."
                )));
            }
        }
    }
    Ok(())
}

fn create_perimeter(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let name = req.body_str("name").to_string();
    let short = short_name(&name, p, "servicePerimeters", "service_perimeter.name")?.to_string();
    let policy = policy(st, p)?;
    if policy.perimeters.contains_key(&short) {
        return Err(ApiError::already_exists(format!(
            "Service Perimeter '{name}' already exists."
        )));
    }
    let perimeter = normalize_perimeter(&req.body, &name, &policy.level_names())?;
    let mut all = policy.perimeters.clone();
    all.insert(short, perimeter.clone());
    check_overlap(&all)?;
    if let Some(pol) = st.policies.get_mut(p) {
        pol.perimeters = all;
    }
    Ok(finish_write(
        st,
        env,
        p,
        "create",
        typed("ServicePerimeter", perimeter),
    ))
}

fn update_perimeter(
    st: &mut State,
    env: &Env,
    req: &ApiRequest,
    p: &str,
    n: &str,
) -> ApiResult<Value> {
    begin_write(st, p)?;
    let mask = required_mask(
        req,
        &[
            "title",
            "description",
            "perimeterType",
            "status",
            "spec",
            "useExplicitDryRunSpec",
            "name",
        ],
    )?;
    let policy = policy(st, p)?;
    let name = format!("accessPolicies/{p}/servicePerimeters/{n}");
    // gcloud's `perimeters dry-run create` PATCHes a perimeter that does not exist yet, with
    // `name` in the mask: the service creates it (an upsert), as observed from gcloud 528.
    let upsert = mask.iter().any(|m| m == "name");
    let mut perimeter = match policy.perimeters.get(n) {
        Some(existing) => existing.clone(),
        None if upsert => {
            short_name(&name, p, "servicePerimeters", "service_perimeter.name")?;
            json!({ "name": name })
        }
        None => return Err(perimeter_not_found(p, n)),
    };
    apply_mask(&mut perimeter, &req.body, &mask);
    if upsert {
        perimeter["name"] = json!(name);
    }
    let perimeter = normalize_perimeter(&perimeter, &name, &policy.level_names())?;
    let mut all = policy.perimeters.clone();
    all.insert(n.to_string(), perimeter.clone());
    check_overlap(&all)?;
    if let Some(pol) = st.policies.get_mut(p) {
        pol.perimeters = all;
    }
    Ok(finish_write(
        st,
        env,
        p,
        "update",
        typed("ServicePerimeter", perimeter),
    ))
}

fn delete_perimeter(st: &mut State, env: &Env, p: &str, n: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let removed = st
        .policies
        .get_mut(p)
        .and_then(|pol| pol.perimeters.remove(n));
    if removed.is_none() {
        return Err(perimeter_not_found(p, n));
    }
    Ok(finish_write(
        st,
        env,
        p,
        "delete",
        typed("Empty", json!({})),
    ))
}

fn replace_perimeters(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let policy = policy(st, p)?;
    check_etag(policy, req)?;
    let given = match req.body.get("servicePerimeters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "Invalid value at 'service_perimeters': expected a list.",
            ));
        }
    };
    let levels = policy.level_names();
    let mut all = BTreeMap::new();
    for perimeter in &given {
        let name = perimeter.get("name").and_then(Value::as_str).unwrap_or("");
        let short = short_name(name, p, "servicePerimeters", "service_perimeters.name")?;
        let normalized = normalize_perimeter(perimeter, name, &levels)?;
        if all.insert(short.to_string(), normalized).is_some() {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'service_perimeters': duplicate service perimeter '{name}'."
            )));
        }
    }
    check_overlap(&all)?;
    let list: Vec<Value> = all.values().cloned().collect();
    if let Some(pol) = st.policies.get_mut(p) {
        pol.perimeters = all;
    }
    Ok(finish_write(
        st,
        env,
        p,
        "replaceAll",
        typed(
            "ReplaceServicePerimetersResponse",
            list_response("servicePerimeters", list, None),
        ),
    ))
}

fn commit_perimeters(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    begin_write(st, p)?;
    let policy = policy(st, p)?;
    check_etag(policy, req)?;
    let mut all = policy.perimeters.clone();
    for perimeter in all.values_mut() {
        let Some(obj) = perimeter.as_object_mut() else {
            continue;
        };
        if obj.get("useExplicitDryRunSpec").and_then(Value::as_bool) == Some(true) {
            match obj.remove("spec") {
                Some(spec) => {
                    obj.insert("status".into(), spec);
                }
                None => {
                    obj.remove("status");
                }
            }
            obj.remove("useExplicitDryRunSpec");
        }
    }
    check_overlap(&all)?;
    let list: Vec<Value> = all.values().cloned().collect();
    if let Some(pol) = st.policies.get_mut(p) {
        pol.perimeters = all;
    }
    Ok(finish_write(
        st,
        env,
        p,
        "commit",
        typed(
            "CommitServicePerimetersResponse",
            list_response("servicePerimeters", list, None),
        ),
    ))
}

/// The ACM part of the admin state.
pub(crate) fn state_json(st: &State) -> Value {
    let policies: Vec<Value> = st.policies.values().map(Policy::to_json).collect();
    let levels: Vec<Value> = st
        .policies
        .values()
        .flat_map(|p| p.levels.values().cloned())
        .collect();
    let perimeters: Vec<Value> = st
        .policies
        .values()
        .flat_map(|p| p.perimeters.values().cloned())
        .collect();
    json!({"accessPolicies": policies, "accessLevels": levels, "servicePerimeters": perimeters})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> BTreeSet<String> {
        ["accessPolicies/1/accessLevels/kubeflow".to_string()].into()
    }

    #[test]
    fn level_enums_normalized_and_members_checked() {
        let v = json!({"title": "t", "basic": {"combiningFunction": 1, "conditions": [{"members": ["user:a@example.com"], "negate": false}]}});
        let out = normalize_level(&v, "accessPolicies/1/accessLevels/a", &levels()).unwrap();
        assert_eq!(out["basic"]["combiningFunction"], "OR");
        assert!(out["basic"]["conditions"][0].get("negate").is_none());
        let v = json!({"title": "t", "basic": {"combiningFunction": 0, "conditions": [{"members": ["group:g@example.com"]}]}});
        let err = normalize_level(&v, "accessPolicies/1/accessLevels/a", &levels()).unwrap_err();
        assert!(err.message.contains("members"), "{}", err.message);
        let v = json!({"title": "t", "basic": {"conditions": [{"ipSubnetworks": ["10.0.0.1/8"]}]}});
        let err = normalize_level(&v, "accessPolicies/1/accessLevels/a", &levels()).unwrap_err();
        assert!(err.message.contains("ip_subnetworks"));
        let v = json!({"title": "t"});
        assert!(normalize_level(&v, "accessPolicies/1/accessLevels/a", &levels()).is_err());
    }

    #[test]
    fn perimeter_enums_and_levels() {
        let v = json!({"title": "t", "perimeterType": 0, "status": {"resources": ["projects/1"], "accessLevels": ["accessPolicies/1/accessLevels/kubeflow"], "restrictedServices": []}, "useExplicitDryRunSpec": false});
        let out =
            normalize_perimeter(&v, "accessPolicies/1/servicePerimeters/z", &levels()).unwrap();
        assert!(out.get("perimeterType").is_none());
        assert!(out.get("useExplicitDryRunSpec").is_none());
        assert!(out["status"].get("restrictedServices").is_none());
        let v = json!({"title": "t", "perimeterType": 1, "status": {"resources": ["projects/1"]}});
        let out =
            normalize_perimeter(&v, "accessPolicies/1/servicePerimeters/z", &levels()).unwrap();
        assert_eq!(out["perimeterType"], "PERIMETER_TYPE_BRIDGE");
        let v = json!({"title": "t", "status": {"accessLevels": ["accessPolicies/1/accessLevels/nope"]}});
        let err =
            normalize_perimeter(&v, "accessPolicies/1/servicePerimeters/z", &levels()).unwrap_err();
        assert!(
            err.message
                .contains("is not available in this Access Policy")
        );
        let v = json!({"title": "t", "status": {"resources": ["projects/kf-dev"]}});
        assert!(
            normalize_perimeter(&v, "accessPolicies/1/servicePerimeters/z", &levels()).is_err()
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            short_name(
                "accessPolicies/1/accessLevels/ok_1",
                "1",
                "accessLevels",
                "f"
            )
            .unwrap(),
            "ok_1"
        );
        assert!(short_name("accessPolicies/2/accessLevels/ok", "1", "accessLevels", "f").is_err());
        let err = short_name(
            "accessPolicies/1/accessLevels/bad-name",
            "1",
            "accessLevels",
            "access_level.name",
        )
        .unwrap_err();
        assert!(err.message.contains("access_level.name"));
    }

    #[test]
    fn overlap() {
        let mut all = BTreeMap::new();
        all.insert(
            "a".to_string(),
            json!({"name": "a", "status": {"resources": ["projects/1"]}}),
        );
        all.insert("b".to_string(), json!({"name": "b", "perimeterType": "PERIMETER_TYPE_BRIDGE", "status": {"resources": ["projects/1"]}}));
        assert!(check_overlap(&all).is_ok());
        all.insert(
            "c".to_string(),
            json!({"name": "c", "status": {"resources": ["projects/1"]}}),
        );
        assert_eq!(check_overlap(&all).unwrap_err().code, 400);
    }
}
