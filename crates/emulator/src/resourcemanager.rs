//! Cloud Resource Manager v3 (used by the Rust SDK) and v1 (used by gcloud 528): organizations and
//! projects (read-only), and the projects' IAM policies (`:getIamPolicy`, `:setIamPolicy`).

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, Organization, Project, SEED_TIME, State};
use crate::wire::{ApiRequest, base64, list_response, parse_mask, unbase64};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "cloudresourcemanager";

fn org_v3(o: &Organization) -> Value {
    json!({
        "name": format!("organizations/{}", o.id),
        "displayName": o.display_name,
        "directoryCustomerId": o.customer_id,
        "state": "ACTIVE",
        "createTime": SEED_TIME,
        "updateTime": SEED_TIME,
        "etag": "BwYAAAAAAAA=",
    })
}

fn org_v1(o: &Organization) -> Value {
    json!({
        "name": format!("organizations/{}", o.id),
        "displayName": o.display_name,
        "owner": {"directoryCustomerId": o.customer_id},
        "lifecycleState": "ACTIVE",
        "creationTime": SEED_TIME,
    })
}

fn project_v3(p: &Project) -> Value {
    json!({
        "name": format!("projects/{}", p.number),
        "projectId": p.id,
        "parent": p.parent,
        "state": "ACTIVE",
        "displayName": p.display_name,
        "createTime": SEED_TIME,
        "updateTime": SEED_TIME,
        "etag": "W/\"0000000000000000\"",
    })
}

fn project_v1(p: &Project) -> Value {
    let (kind, id) = p.parent.split_once('/').unwrap_or(("organizations", ""));
    let kind = if kind == "folders" {
        "folder"
    } else {
        "organization"
    };
    json!({
        "projectNumber": p.number,
        "projectId": p.id,
        "lifecycleState": "ACTIVE",
        "name": p.display_name,
        "createTime": SEED_TIME,
        "parent": {"type": kind, "id": id},
    })
}

fn org_denied(id: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Permission 'resourcemanager.organizations.get' denied on resource 'organizations/{id}' (or it may not exist)."
    ))
}

fn project_denied(id: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Permission 'resourcemanager.projects.get' denied on resource '//cloudresourcemanager.googleapis.com/projects/{id}' (or it may not exist)."
    ))
}

/// Does organization `o` match a search `query` (v3) or `filter` (v1)? Both are conjunctions of
/// `key:value` / `key=value` terms on `displayName`, `domain` or `directoryCustomerId`.
fn org_matches(o: &Organization, query: &str) -> ApiResult<bool> {
    for term in query
        .split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
    {
        let Some(idx) = term.find([':', '=']) else {
            return Err(ApiError::invalid_argument(format!(
                "Invalid query '{query}': expected terms of the form key:value."
            )));
        };
        let key = term[..idx].to_ascii_lowercase();
        let value = term[idx + 1..].trim_matches('"');
        let ok = match key.as_str() {
            "displayname" | "domain" => o.display_name == value,
            "directorycustomerid" | "owner.directorycustomerid" => o.customer_id == value,
            "lifecyclestate" | "state" => value == "ACTIVE",
            _ => {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid query '{query}': unknown field '{}'.",
                    &term[..idx]
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, _env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    match (parts.as_slice(), req.verb()) {
        (["v3", "organizations"], "search") if m == Method::GET => {
            let query = req.param("query").unwrap_or("");
            let mut items = Vec::new();
            for o in &st.organizations {
                if org_matches(o, query)? {
                    items.push(org_v3(o));
                }
            }
            let (page, next) = req.paginate(items, 100, 1000)?;
            Ok(list_response("organizations", page, next))
        }
        (["v3", "organizations", id], "") if m == Method::GET => st
            .organization(id)
            .map(org_v3)
            .ok_or_else(|| org_denied(id)),
        (["v3", "projects"], "" | "search") if m == Method::GET => {
            let parent = req.param("parent").unwrap_or("");
            let items = st
                .projects
                .iter()
                .filter(|p| parent.is_empty() || p.parent == parent)
                .map(project_v3)
                .collect();
            let (page, next) = req.paginate(items, 100, 1000)?;
            Ok(list_response("projects", page, next))
        }
        (["v3", "projects", id], "") if m == Method::GET => st
            .project(id)
            .map(project_v3)
            .ok_or_else(|| project_denied(id)),
        (["v1", "organizations"], "search") if m == Method::POST => {
            let filter = req.body_str("filter");
            let mut items = Vec::new();
            for o in &st.organizations {
                if org_matches(o, filter)? {
                    items.push(org_v1(o));
                }
            }
            let size = req
                .body
                .get("pageSize")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let size = if size == 0 { 100 } else { size.min(1000) };
            let start: usize = req.body_str("pageToken").parse().unwrap_or(0);
            let total = items.len();
            let end = (start + usize::try_from(size).unwrap_or(100)).min(total);
            let page = items
                .into_iter()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect();
            Ok(list_response(
                "organizations",
                page,
                (end < total).then(|| end.to_string()),
            ))
        }
        (["v1", "organizations", id], "") if m == Method::GET => st
            .organization(id)
            .map(org_v1)
            .ok_or_else(|| org_denied(id)),
        (["v1", "projects"], "") if m == Method::GET => {
            let items = st.projects.iter().map(project_v1).collect();
            let (page, next) = req.paginate(items, 500, 1000)?;
            Ok(list_response("projects", page, next))
        }
        (["v1", "projects", id], "") if m == Method::GET => st
            .project(id)
            .map(project_v1)
            .ok_or_else(|| project_denied(id)),
        (["v1" | "v3", "projects", id], "getIamPolicy") if m == Method::POST => {
            get_iam_policy(st, req, id)
        }
        (["v1" | "v3", "projects", id], "setIamPolicy") if m == Method::POST => {
            set_iam_policy(st, req, id)
        }
        (["v1", "projects", id], "getAncestry") if m == Method::POST => {
            let p = st.project(id).ok_or_else(|| project_denied(id))?;
            let (_, org) = p.parent.split_once('/').unwrap_or(("", ""));
            Ok(json!({"ancestor": [
                {"resourceId": {"type": "project", "id": p.id}},
                {"resourceId": {"type": "organization", "id": org}},
            ]}))
        }
        _ => Err(ApiError::not_found(format!(
            "Method {} not found for path /{}.",
            req.method,
            req.segments.join("/")
        ))),
    }
}

// ----- project IAM policies ------------------------------------------------------------------

/// The member seeded as owner of every project, so that tests can check that a client's
/// read-modify-write keeps what others granted.
pub(crate) const SEED_OWNER: &str = "user:alice@example.com";

/// The etag of a policy that was never written, as Google answers it.
pub(crate) const EMPTY_ETAG: &str = "ACAB";

/// One role binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) role: String,
    /// Sorted and deduplicated, as Google answers them.
    pub(crate) members: BTreeSet<String>,
    /// The IAM condition (`{expression, title, description, location}`), when conditional.
    pub(crate) condition: Option<Value>,
}

/// A project's IAM policy (`google.iam.v1.Policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IamPolicy {
    pub(crate) etag: String,
    /// Normalized: no binding without members, one binding per (role, condition), sorted by role.
    pub(crate) bindings: Vec<Binding>,
    pub(crate) audit_configs: Vec<Value>,
}

impl IamPolicy {
    /// The seeded policy: [`SEED_OWNER`] as `roles/owner`.
    pub(crate) fn seed() -> Self {
        Self {
            etag: etag_from(1),
            bindings: vec![Binding {
                role: "roles/owner".into(),
                members: BTreeSet::from([SEED_OWNER.to_string()]),
                condition: None,
            }],
            audit_configs: Vec::new(),
        }
    }

    /// A policy that was never written (etag `ACAB`).
    pub(crate) fn empty() -> Self {
        Self {
            etag: EMPTY_ETAG.into(),
            bindings: Vec::new(),
            audit_configs: Vec::new(),
        }
    }

    /// The policy as `getIamPolicy` answers it for a requested version: `version` is 3 when a
    /// binding is conditional, 1 otherwise; asked for less than 3, a conditional binding is
    /// shown without its condition and with its role suffixed `_withcond_<hash>`, as Google does.
    pub(crate) fn to_json(&self, requested: i64) -> Value {
        let conditional = self.bindings.iter().any(|b| b.condition.is_some());
        let version = if conditional && requested >= 3 { 3 } else { 1 };
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|b| {
                let mut v = json!({"role": b.role, "members": b.members});
                match &b.condition {
                    Some(c) if version == 3 => v["condition"] = c.clone(),
                    Some(c) => v["role"] = json!(format!("{}_withcond_{}", b.role, hash20(c))),
                    None => {}
                }
                v
            })
            .collect();
        let mut v = json!({"version": version, "etag": self.etag});
        if !bindings.is_empty() {
            v["bindings"] = json!(bindings);
        }
        if !self.audit_configs.is_empty() {
            v["auditConfigs"] = json!(self.audit_configs);
        }
        v
    }
}

/// A policy etag: base64 of 8 bytes starting `07 05`, so it reads `BwX...` like Google's.
pub(crate) fn etag_from(x: u64) -> String {
    let mut b = x.to_be_bytes();
    b[0] = 0x07;
    b[1] = 0x05;
    b[2] |= 0xc0;
    base64(&b)
}

fn next_policy_etag(st: &mut State) -> String {
    etag_from(u64::from_str_radix(&st.next_etag(), 16).unwrap_or_default())
}

/// 20 hex digits of a hash of `v` (FNV-1a), for `_withcond_` role suffixes.
fn hash20(v: &Value) -> String {
    let fnv = |seed: u64| {
        v.to_string().bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let a = fnv(0xcbf2_9ce4_8422_2325);
    let b = fnv(a);
    format!("{a:016x}{:04x}", b & 0xffff)
}

fn policy_denied() -> ApiError {
    ApiError::permission_denied("The caller does not have permission")
}

/// An int32 field sent as a number (the SDK) or a string; absent means 0.
pub(crate) fn int_field(v: Option<&Value>, field: &str) -> ApiResult<i64> {
    match v {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Invalid value at '{field}' (TYPE_INT32), {}",
            v.cloned().unwrap_or(Value::Null)
        ))
    })
}

pub(crate) fn check_version(version: i64, field: &str) -> ApiResult<()> {
    if matches!(version, 0 | 1 | 3) {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "Invalid value for field '{field}': {version}. Valid policy versions are 0, 1 and 3."
        )))
    }
}

/// `POST v1|v3/projects/{id}:getIamPolicy` with an optional
/// `{"options": {"requestedPolicyVersion": 3}}`.
fn get_iam_policy(st: &State, req: &ApiRequest, id: &str) -> ApiResult<Value> {
    let project = st.project(id).ok_or_else(policy_denied)?;
    let requested = int_field(
        req.body
            .get("options")
            .and_then(|o| o.get("requestedPolicyVersion")),
        "options.requested_policy_version",
    )?;
    check_version(requested, "options.requested_policy_version")?;
    Ok(st
        .iam_policies
        .get(&project.id)
        .cloned()
        .unwrap_or_else(IamPolicy::empty)
        .to_json(requested))
}

/// `POST v1|v3/projects/{id}:setIamPolicy` with `{"policy": {...}, "updateMask": "..."}` (the
/// mask defaults to `bindings,etag`, as Google's).
fn set_iam_policy(st: &mut State, req: &ApiRequest, id: &str) -> ApiResult<Value> {
    let project = st.project(id).ok_or_else(policy_denied)?.id.clone();
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
        .find(|p| !["bindings", "etag", "version", "auditConfigs"].contains(&p.as_str()))
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid field mask path '{path}' in 'update_mask': valid paths are bindings, etag, version and audit_configs."
        )));
    }
    let current = st
        .iam_policies
        .get(&project)
        .cloned()
        .unwrap_or_else(IamPolicy::empty);
    // Etags are `bytes`: gcloud sends them back in the URL-safe alphabet.
    if let Some(etag) = policy
        .get("etag")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        && unbase64(etag).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid value at 'policy.etag' (TYPE_BYTES), \"{etag}\""
            ))
        })? != unbase64(&current.etag).unwrap_or_default()
    {
        return Err(ApiError::aborted(format!(
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. The request's ETag '{etag}' did not match the current policy's ETag '{}'.",
            current.etag
        )));
    }
    let version = int_field(policy.get("version"), "policy.version")?;
    check_version(version, "policy.version")?;
    let mut next = current;
    if mask.iter().any(|p| p == "bindings") {
        let bindings = parse_bindings(st, policy.get("bindings"))?;
        if version < 3 && bindings.iter().any(|b| b.condition.is_some()) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'policy.version': {version}. A policy with conditional role bindings must have version 3."
            )));
        }
        next.bindings = bindings;
    }
    if mask.iter().any(|p| p == "auditConfigs") {
        next.audit_configs = policy
            .get("auditConfigs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    }
    next.etag = next_policy_etag(st);
    let answer = next.to_json(3);
    st.iam_policies.insert(project, next);
    Ok(answer)
}

/// Predefined roles (`roles/X`) and custom roles (`projects/P/roles/R`,
/// `organizations/O/roles/R`).
fn valid_role(role: &str) -> bool {
    match role.split('/').collect::<Vec<_>>().as_slice() {
        ["roles", r] => !r.is_empty(),
        ["projects" | "organizations", p, "roles", r] => !p.is_empty() && !r.is_empty(),
        _ => false,
    }
}

/// Checks one member: `user:`, `group:`, `serviceAccount:` (with an email), `domain:`,
/// `principal://`, `principalSet://`, `allUsers`, `allAuthenticatedUsers`, or `deleted:` before
/// a user, group or service account. A user-managed service account of a project this emulator
/// knows must exist, as Google checks.
fn check_member(st: &State, member: &str) -> ApiResult<()> {
    if member == "allUsers" || member == "allAuthenticatedUsers" {
        return Ok(());
    }
    let deleted = member.strip_prefix("deleted:");
    let (kind, value) = deleted
        .unwrap_or(member)
        .split_once(':')
        .unwrap_or(("", ""));
    let ok = match kind {
        "user" | "group" | "serviceAccount" => value.contains('@'),
        "domain" => deleted.is_none() && !value.is_empty(),
        "principal" | "principalSet" => deleted.is_none() && value.starts_with("//"),
        _ => false,
    };
    if !ok {
        return Err(ApiError::invalid_argument(format!(
            "Invalid member '{member}'. Policy members must be of the form \"<type>:<value>\"."
        )));
    }
    if kind == "serviceAccount" && deleted.is_none() && crate::iam::missing_account(st, value) {
        return Err(ApiError::invalid_argument(format!(
            "Service account {value} does not exist."
        )));
    }
    Ok(())
}

/// A binding's condition, keeping its non-empty string fields; the expression is required.
fn normalize_condition(v: Option<&Value>, i: usize) -> ApiResult<Option<Value>> {
    let Some(c) = v.filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let mut out = Map::new();
    for key in ["expression", "title", "description", "location"] {
        if let Some(text) = c.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
            out.insert(key.into(), json!(text));
        }
    }
    if !out.contains_key("expression") {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'policy.bindings[{i}].condition': the expression is empty."
        )));
    }
    Ok(Some(Value::Object(out)))
}

/// Validates and normalizes the bindings of a new policy.
pub(crate) fn parse_bindings(st: &State, v: Option<&Value>) -> ApiResult<Vec<Binding>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'policy.bindings', {other}: not a list."
            )));
        }
    };
    let mut out: Vec<Binding> = Vec::new();
    for (i, b) in items.iter().enumerate() {
        let role = b.get("role").and_then(Value::as_str).unwrap_or("");
        if !valid_role(role) {
            return Err(ApiError::invalid_argument(format!(
                "Role ({role}) does not exist in the resource's hierarchy."
            )));
        }
        let condition = normalize_condition(b.get("condition"), i)?;
        let mut members = BTreeSet::new();
        for m in b
            .get("members")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(m) = m.as_str() else {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at 'policy.bindings[{i}].members', {m}: not a string."
                )));
            };
            check_member(st, m)?;
            members.insert(m.to_string());
        }
        if members.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|x| x.role == role && x.condition == condition)
        {
            Some(same) => same.members.extend(members),
            None => out.push(Binding {
                role: role.to_string(),
                members,
                condition,
            }),
        }
    }
    out.sort_by_cached_key(|b| (b.role.clone(), b.condition.as_ref().map(Value::to_string)));
    Ok(out)
}

/// A service account was deleted: in every project policy, its member becomes
/// `deleted:serviceAccount:EMAIL?uid=UNIQUE_ID`, as Google rewrites it.
pub(crate) fn account_deleted(st: &mut State, member: &str, unique_id: &str) {
    let renamed = format!("deleted:{member}?uid={unique_id}");
    let mut changed = Vec::new();
    for (project, policy) in &mut st.iam_policies {
        let mut hit = false;
        for b in &mut policy.bindings {
            if b.members.remove(member) {
                b.members.insert(renamed.clone());
                hit = true;
            }
        }
        if hit {
            changed.push(project.clone());
        }
    }
    for project in changed {
        let etag = next_policy_etag(st);
        if let Some(policy) = st.iam_policies.get_mut(&project) {
            policy.etag = etag;
        }
    }
}

/// The Resource Manager part of the admin state.
pub(crate) fn state_json(st: &State) -> Value {
    json!({
        "organizations": st.organizations.iter().map(org_v3).collect::<Vec<_>>(),
        "projects": st.projects.iter().map(project_v3).collect::<Vec<_>>(),
        "iamPolicies": st
            .iam_policies
            .iter()
            .map(|(id, p)| (id.clone(), p.to_json(3)))
            .collect::<Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_queries() {
        let st = State::seed();
        let o = &st.organizations[0];
        assert!(org_matches(o, "").unwrap());
        assert!(org_matches(o, "displayName:example.com").unwrap());
        assert!(org_matches(o, "domain:example.com").unwrap());
        assert!(org_matches(o, "displayName=\"example.com\"").unwrap());
        assert!(!org_matches(o, "domain:other.org").unwrap());
        assert!(org_matches(o, "owner.directoryCustomerId:C0xxxxxxx").unwrap());
        assert!(org_matches(o, "bogus").is_err());
    }

    #[test]
    fn seed_policy_and_etags() {
        let p = IamPolicy::seed();
        assert_eq!(
            p.to_json(3),
            json!({"version": 1, "etag": "BwXAAAAAAAE=", "bindings": [
                {"role": "roles/owner", "members": ["user:alice@example.com"]}]})
        );
        assert!(etag_from(u64::MAX).starts_with("BwX"));
        assert_eq!(hash20(&json!({"expression": "true"})).len(), 20);
    }

    #[test]
    fn roles_and_members() {
        for role in [
            "roles/owner",
            "projects/kf-dev/roles/custom",
            "organizations/1/roles/x",
        ] {
            assert!(valid_role(role), "{role}");
        }
        for role in ["owner", "roles/", "roles/a/b", "projects/kf-dev/roles/", ""] {
            assert!(!valid_role(role), "{role}");
        }
        let st = State::seed();
        for m in [
            "user:alice@example.com",
            "group:g@example.com",
            "domain:example.com",
            "serviceAccount:123456789012-compute@developer.gserviceaccount.com",
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
            "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*",
            "deleted:serviceAccount:gone@kf-dev.iam.gserviceaccount.com?uid=1",
            "allUsers",
        ] {
            assert!(check_member(&st, m).is_ok(), "{m}");
        }
        for m in [
            "alice@example.com",
            "user:alice",
            "robot:x@y",
            "deleted:domain:x",
        ] {
            assert!(
                check_member(&st, m)
                    .unwrap_err()
                    .message
                    .contains("<type>:<value>"),
                "{m}"
            );
        }
        assert_eq!(
            check_member(
                &st,
                "serviceAccount:nope-nope@kf-dev.iam.gserviceaccount.com"
            )
            .unwrap_err()
            .message,
            "Service account nope-nope@kf-dev.iam.gserviceaccount.com does not exist."
        );
    }

    #[test]
    fn bindings_are_normalized() {
        let st = State::seed();
        let b = parse_bindings(
            &st,
            Some(&json!([
                {"role": "roles/viewer", "members": ["user:b@example.com", "user:a@example.com"]},
                {"role": "roles/editor", "members": []},
                {"role": "roles/viewer", "members": ["user:a@example.com", "user:c@example.com"]},
                {"role": "roles/browser", "members": ["user:a@example.com"],
                 "condition": {"expression": "request.time < timestamp('2030-01-01T00:00:00Z')", "title": "t", "description": ""}},
            ])),
        )
        .unwrap();
        let p = IamPolicy {
            etag: "x".into(),
            bindings: b,
            audit_configs: Vec::new(),
        };
        let v = p.to_json(3);
        assert_eq!(v["version"], 3);
        assert_eq!(v["bindings"][0]["role"], "roles/browser");
        assert_eq!(
            v["bindings"][0]["condition"],
            json!({"expression": "request.time < timestamp('2030-01-01T00:00:00Z')", "title": "t"})
        );
        assert_eq!(
            v["bindings"][1],
            json!({"role": "roles/viewer", "members": ["user:a@example.com", "user:b@example.com", "user:c@example.com"]})
        );
        assert_eq!(v["bindings"].as_array().unwrap().len(), 2);
        let v1 = p.to_json(1);
        assert_eq!(v1["version"], 1);
        assert!(
            v1["bindings"][0]["role"]
                .as_str()
                .unwrap()
                .starts_with("roles/browser_withcond_")
        );
        assert!(v1["bindings"][0].get("condition").is_none());
    }
}
