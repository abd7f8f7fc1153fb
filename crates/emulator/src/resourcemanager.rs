//! Cloud Resource Manager v3 (used by the Rust SDK) and v1 (used by gcloud 528): organizations and
//! projects, read-only.

use http::Method;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, Organization, Project, SEED_TIME, State};
use crate::wire::{ApiRequest, list_response};

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

/// The Resource Manager part of the admin state.
pub(crate) fn state_json(st: &State) -> Value {
    json!({
        "organizations": st.organizations.iter().map(org_v3).collect::<Vec<_>>(),
        "projects": st.projects.iter().map(project_v3).collect::<Vec<_>>(),
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
}
