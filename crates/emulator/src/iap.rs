//! Identity-Aware Proxy v1 (`iap.googleapis.com`): IAM policies of IAP resources
//! (`:getIamPolicy`, `:setIamPolicy`, `:testIamPermissions`) and IAP settings (`:iapSettings`), as
//! gcloud 528 (`gcloud iap web ...`, `gcloud iap settings ...`) calls them.
//!
//! Resources are `projects/{P}/iap_web[/{type}[/services/{S}[/versions/{V}]]]` where `{type}` is
//! `compute`, `compute-{region}`, `appengine-{app}`, `cloud_run-{region}`, `forwarding_rule` or
//! `forwarding_rule-{region}`, and `projects/{P}/iap_tunnel[/zones/{Z}[/instances/{I}] |
//! /locations/{L}[/destGroups/{G}]]`; settings also live on `projects/{P}`, `folders/{F}` and
//! `organizations/{O}`. `{P}` is a project id or number: both name the same resource (gcloud
//! sends the number).

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::resourcemanager::{
    EMPTY_ETAG, IamPolicy, check_version, etag_from, int_field, parse_bindings,
};
use crate::state::{Env, State};
use crate::wire::{ApiRequest, apply_mask, parse_mask, unbase64};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "iap";

/// The fields of `IapSettings` besides `name`.
const SETTINGS_FIELDS: &[&str] = &["accessSettings", "applicationSettings"];

/// One resource's IAM policy and its write counter (the etag is derived from it).
#[derive(Debug, Clone)]
struct IapPolicy {
    policy: IamPolicy,
    writes: u64,
}

/// The IAP part of the state, keyed by normalized resource name (project by id).
#[derive(Debug, Clone, Default)]
pub(crate) struct IapState {
    policies: BTreeMap<String, IapPolicy>,
    /// IapSettings without `name`.
    settings: BTreeMap<String, Value>,
}

fn invalid_resource(name: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "Invalid resource name '{name}': expected projects/{{project}}/iap_web[/{{type}}[/services/{{service}}[/versions/{{version}}]]] or projects/{{project}}/iap_tunnel[/...]."
    ))
}

/// A path segment naming a service, version, zone or group: `[A-Za-z0-9._-]+`.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Region- or app-suffixed web types (`compute-us-central1`, `appengine-kf-dev`) and plain ones.
fn valid_web_type(t: &str) -> bool {
    if matches!(t, "compute" | "forwarding_rule") {
        return true;
    }
    ["compute-", "appengine-", "cloud_run-", "forwarding_rule-"]
        .iter()
        .any(|p| t.strip_prefix(p).is_some_and(valid_id))
}

/// Resolves the resource named by `segs` (after `v1`) to its normalized key, with the project
/// by id. `settings` also allows `projects/P`, `folders/F` and `organizations/O`.
fn resource_key(st: &State, segs: &[&str], settings: bool) -> ApiResult<String> {
    let name = segs.join("/");
    match segs {
        ["organizations", o] if settings => {
            st.organization(o)
                .ok_or_else(|| ApiError::not_found(format!("Organization '{o}' not found.")))?;
            return Ok(name);
        }
        ["folders", f] if settings => {
            return if crate::wire::is_number(f) {
                Ok(name)
            } else {
                Err(invalid_resource(&name))
            };
        }
        _ => {}
    }
    let ["projects", p, rest @ ..] = segs else {
        return Err(invalid_resource(&name));
    };
    let ok = match rest {
        [] => settings,
        ["iap_web"] => true,
        ["iap_web", t] => valid_web_type(t),
        ["iap_web", t, "services", s] => valid_web_type(t) && valid_id(s),
        ["iap_web", t, "services", s, "versions", v] => {
            t.starts_with("appengine-") && valid_id(s) && valid_id(v)
        }
        ["iap_tunnel"] => true,
        ["iap_tunnel", "zones" | "locations", z] => valid_id(z),
        ["iap_tunnel", "zones", z, "instances", i] => valid_id(z) && valid_id(i),
        ["iap_tunnel", "locations", l, "destGroups", g] => valid_id(l) && valid_id(g),
        _ => false,
    };
    if !ok || p.is_empty() {
        return Err(invalid_resource(&name));
    }
    let project = st.project(p).ok_or_else(|| {
        ApiError::not_found(format!(
            "Project '{p}' not found or the caller does not have permission."
        ))
    })?;
    let mut key = format!("projects/{}", project.id);
    for s in rest {
        key.push('/');
        key.push_str(s);
    }
    Ok(key)
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, _env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    let Some((&"v1", resource)) = parts.split_first() else {
        return Err(not_found(req));
    };
    match req.verb() {
        "getIamPolicy" if m == Method::POST => {
            let key = resource_key(st, resource, false)?;
            get_policy(st, req, &key)
        }
        "setIamPolicy" if m == Method::POST => {
            let key = resource_key(st, resource, false)?;
            set_policy(st, req, &key)
        }
        "testIamPermissions" if m == Method::POST => {
            resource_key(st, resource, false)?;
            test_permissions(req)
        }
        "iapSettings" if m == Method::GET => {
            let key = resource_key(st, resource, true)?;
            Ok(settings_json(st, &key, &resource.join("/")))
        }
        "iapSettings" if m == Method::PATCH => {
            let key = resource_key(st, resource, true)?;
            patch_settings(st, req, &key, &resource.join("/"))
        }
        _ => Err(not_found(req)),
    }
}

fn not_found(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}{}.",
        req.method,
        req.segments.join("/"),
        req.verb
            .as_ref()
            .map(|v| format!(":{v}"))
            .unwrap_or_default()
    ))
}

/// A policy as IAP answers it: a never-written (or emptied before any write) policy is just
/// `{"etag": "ACAB"}`.
fn policy_json(p: Option<&IapPolicy>, requested: i64) -> Value {
    match p {
        Some(p) if p.writes > 0 => p.policy.to_json(requested),
        _ => json!({"etag": EMPTY_ETAG}),
    }
}

/// `POST /v1/{resource}:getIamPolicy` with `{}` or `{"options": {"requestedPolicyVersion": 3}}`.
fn get_policy(st: &State, req: &ApiRequest, key: &str) -> ApiResult<Value> {
    let requested = int_field(
        req.body
            .get("options")
            .and_then(|o| o.get("requestedPolicyVersion")),
        "options.requested_policy_version",
    )?;
    check_version(requested, "options.requested_policy_version")?;
    Ok(policy_json(st.iap.policies.get(key), requested))
}

/// `POST /v1/{resource}:setIamPolicy` with `{"policy": {...}, "updateMask"?}` (default mask
/// `bindings,etag`). A set that changes no binding keeps the etag.
fn set_policy(st: &mut State, req: &ApiRequest, key: &str) -> ApiResult<Value> {
    let Some(policy) = req.body.get("policy").filter(|p| p.is_object()) else {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'policy' is required.",
        ));
    };
    let mut mask = parse_mask(req.body_str("updateMask"));
    if mask.is_empty() {
        mask = vec!["bindings".into(), "etag".into()];
    }
    if let Some(path) = mask
        .iter()
        .find(|p| !["bindings", "etag", "version"].contains(&p.as_str()))
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid field mask path '{path}' in 'update_mask': valid paths are bindings, etag and version."
        )));
    }
    let current = st.iap.policies.get(key).cloned().unwrap_or(IapPolicy {
        policy: IamPolicy::empty(),
        writes: 0,
    });
    if let Some(etag) = policy
        .get("etag")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        let sent = unbase64(etag).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid value at 'policy.etag' (TYPE_BYTES), \"{etag}\""
            ))
        })?;
        if sent != unbase64(&current.policy.etag).unwrap_or_default() {
            return Err(ApiError::aborted(
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
    }
    let version = int_field(policy.get("version"), "policy.version")?;
    check_version(version, "policy.version")?;
    if !mask.iter().any(|p| p == "bindings") {
        return Ok(policy_json(Some(&current), 3));
    }
    let bindings = parse_bindings(st, policy.get("bindings"))?;
    if version < 3 && bindings.iter().any(|b| b.condition.is_some()) {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'policy.version': {version}. A policy with conditional role bindings must have version 3."
        )));
    }
    if bindings == current.policy.bindings {
        return Ok(policy_json(Some(&current), 3));
    }
    let mut next = current;
    next.writes += 1;
    next.policy.bindings = bindings;
    next.policy.etag = etag_from(next.writes);
    let answer = policy_json(Some(&next), 3);
    st.iap.policies.insert(key.to_string(), next);
    Ok(answer)
}

/// `POST /v1/{resource}:testIamPermissions` with `{"permissions": [...]}`: the caller (there are
/// no credentials) holds every IAP permission (`iap.*`) it asks about, and nothing else.
fn test_permissions(req: &ApiRequest) -> ApiResult<Value> {
    let asked = match req.body.get("permissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'permissions', {other}: not a list."
            )));
        }
    };
    let mut held = Vec::new();
    for p in &asked {
        let Some(p) = p.as_str() else {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'permissions', {p}: not a string."
            )));
        };
        if p.split('.').count() != 3 || p.split('.').any(str::is_empty) {
            return Err(ApiError::invalid_argument(format!(
                "Permission {p} is not valid: permissions have the form service.resource.verb."
            )));
        }
        if p.starts_with("iap.") {
            held.push(json!(p));
        }
    }
    Ok(if held.is_empty() {
        json!({})
    } else {
        json!({ "permissions": held })
    })
}

fn settings_json(st: &State, key: &str, name: &str) -> Value {
    let mut v = st
        .iap
        .settings
        .get(key)
        .cloned()
        .unwrap_or_else(|| json!({}));
    v["name"] = json!(name);
    v
}

/// Checks an `IapSettings` body: an object of known fields, objects where objects belong.
fn check_settings(body: &Value) -> ApiResult<Map<String, Value>> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_argument(
            "Invalid JSON payload received. IapSettings must be an object.",
        ));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k == "name" {
            continue;
        }
        if !SETTINGS_FIELDS.contains(&k.as_str()) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            )));
        }
        if !v.is_object() && !v.is_null() {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at '{k}', {v}: not an object."
            )));
        }
        if !v.is_null() {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// `PATCH /v1/{name}:iapSettings[?updateMask=a.b,c]`: with a mask, each path is taken from the
/// body (absent clears it); without one, the settings are replaced.
fn patch_settings(st: &mut State, req: &ApiRequest, key: &str, name: &str) -> ApiResult<Value> {
    let body = check_settings(&req.body)?;
    let mask = parse_mask(req.param("updateMask").unwrap_or(""));
    let next = if mask.is_empty() {
        Value::Object(body)
    } else {
        if let Some(path) = mask
            .iter()
            .find(|p| !SETTINGS_FIELDS.contains(&p.split('.').next().unwrap_or("")))
        {
            return Err(ApiError::invalid_argument(format!(
                "Invalid field mask path '{path}' in 'update_mask': paths start with accessSettings or applicationSettings."
            )));
        }
        let mut cur = st
            .iap
            .settings
            .get(key)
            .cloned()
            .unwrap_or_else(|| json!({}));
        apply_mask(&mut cur, &Value::Object(body), &mask);
        cur
    };
    st.iap.settings.insert(key.to_string(), next);
    Ok(settings_json(st, key, name))
}

/// The IAP part of the admin state: `{"policies": {resource: policy}, "settings": {resource:
/// settings}}`, resources named with the project id.
pub(crate) fn state_json(st: &State) -> Value {
    json!({
        "policies": st
            .iap
            .policies
            .iter()
            .map(|(k, p)| (k.clone(), policy_json(Some(p), 3)))
            .collect::<Map<_, _>>(),
        "settings": st
            .iap
            .settings
            .keys()
            .map(|k| (k.clone(), settings_json(st, k, k)))
            .collect::<Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(st: &State, name: &str, settings: bool) -> ApiResult<String> {
        let segs: Vec<&str> = name.split('/').collect();
        resource_key(st, &segs, settings)
    }

    #[test]
    fn resources_are_normalized_to_the_project_id() {
        let st = State::seed();
        for (name, want) in [
            (
                "projects/123456789012/iap_web/compute/services/S",
                "projects/kf-dev/iap_web/compute/services/S",
            ),
            (
                "projects/kf-dev/iap_web/compute-us-central1/services/web",
                "projects/kf-dev/iap_web/compute-us-central1/services/web",
            ),
            ("projects/kf-dev/iap_web", "projects/kf-dev/iap_web"),
            (
                "projects/kf-dev/iap_web/appengine-kf-dev/services/default/versions/v1",
                "projects/kf-dev/iap_web/appengine-kf-dev/services/default/versions/v1",
            ),
            (
                "projects/123456789012/iap_tunnel/zones/us-central1-a/instances/vm",
                "projects/kf-dev/iap_tunnel/zones/us-central1-a/instances/vm",
            ),
        ] {
            assert_eq!(key(&st, name, false).unwrap(), want, "{name}");
        }
        assert_eq!(
            key(&st, "projects/kf-dev", true).unwrap(),
            "projects/kf-dev"
        );
        assert_eq!(key(&st, "projects/kf-dev", false).unwrap_err().code, 400);
        for bad in [
            "projects/kf-dev/iap_web/bogus",
            "projects/kf-dev/iap_web/compute/services",
            "projects/kf-dev/iap_web/compute/services/S/versions/1",
            "projects/kf-dev/other",
            "iap_web",
            "projects/kf-dev/iap_web/compute-/services/S",
        ] {
            assert_eq!(key(&st, bad, false).unwrap_err().code, 400, "{bad}");
        }
        assert_eq!(
            key(&st, "projects/nope/iap_web/compute", false)
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn settings_bodies_are_checked() {
        assert!(check_settings(&json!({"name": "x", "accessSettings": {}})).is_ok());
        let e = check_settings(&json!({"bogus": 1})).unwrap_err();
        assert!(e.message.contains("bogus"), "{}", e.message);
        assert!(check_settings(&json!({"accessSettings": 3})).is_err());
    }
}
