//! Service Usage v1: enabling and listing services of a project.

use http::Method;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, Project, State};
use crate::wire::{ApiRequest, list_response};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "serviceusage";

const TYPE_PREFIX: &str = "type.googleapis.com/google.api.serviceusage.v1.";
const MAX_BATCH: usize = 20;

/// The services the emulator knows, with their titles.
pub(crate) const CATALOG: &[(&str, &str)] = &[
    (
        "accesscontextmanager.googleapis.com",
        "Access Context Manager API",
    ),
    ("artifactregistry.googleapis.com", "Artifact Registry API"),
    ("bigquery.googleapis.com", "BigQuery API"),
    ("bigquerystorage.googleapis.com", "BigQuery Storage API"),
    ("cloudbuild.googleapis.com", "Cloud Build API"),
    (
        "cloudkms.googleapis.com",
        "Cloud Key Management Service (KMS) API",
    ),
    (
        "cloudresourcemanager.googleapis.com",
        "Cloud Resource Manager API",
    ),
    ("compute.googleapis.com", "Compute Engine API"),
    ("container.googleapis.com", "Kubernetes Engine API"),
    ("containerregistry.googleapis.com", "Container Registry API"),
    ("dns.googleapis.com", "Cloud DNS API"),
    ("file.googleapis.com", "Cloud Filestore API"),
    (
        "iam.googleapis.com",
        "Identity and Access Management (IAM) API",
    ),
    (
        "iamcredentials.googleapis.com",
        "IAM Service Account Credentials API",
    ),
    ("iap.googleapis.com", "Cloud Identity-Aware Proxy API"),
    ("logging.googleapis.com", "Cloud Logging API"),
    ("ml.googleapis.com", "AI Platform Training & Prediction API"),
    ("monitoring.googleapis.com", "Cloud Monitoring API"),
    ("oslogin.googleapis.com", "Cloud OS Login API"),
    ("pubsub.googleapis.com", "Cloud Pub/Sub API"),
    ("secretmanager.googleapis.com", "Secret Manager API"),
    ("servicenetworking.googleapis.com", "Service Networking API"),
    ("serviceusage.googleapis.com", "Service Usage API"),
    ("sqladmin.googleapis.com", "Cloud SQL Admin API"),
    ("storage.googleapis.com", "Cloud Storage API"),
    (
        "storage-api.googleapis.com",
        "Google Cloud Storage JSON API",
    ),
    ("storage-component.googleapis.com", "Cloud Storage"),
];

fn title(service: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, t)| *t)
}

fn project<'a>(st: &'a State, p: &str) -> ApiResult<&'a Project> {
    st.project(p).ok_or_else(|| {
        ApiError::permission_denied(format!(
            "Permission denied to access project 'projects/{p}' (or it may not exist)."
        ))
    })
}

fn unknown(services: &[&str]) -> ApiError {
    ApiError::permission_denied(format!(
        "Not found or permission denied for service(s): {}.",
        services.join(", ")
    ))
}

fn service_json(st: &State, number: &str, service: &str) -> Value {
    let enabled = st
        .enabled
        .get(number)
        .is_some_and(|set| set.contains(service));
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": {"name": service, "title": title(service).unwrap_or(service)},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    match (parts.as_slice(), req.verb()) {
        (["v1", "operations", rest @ ..], "") if !rest.is_empty() && m == Method::GET => {
            st.get_operation(API, &format!("operations/{}", rest.join("/")))
        }
        (["v1", "projects", p, "services"], "") if m == Method::GET => list(st, req, p),
        (["v1", "projects", p, "services"], "batchEnable") if m == Method::POST => {
            batch_enable(st, env, req, p)
        }
        (["v1", "projects", p, "services"], "batchGet") if m == Method::GET => {
            let number = project(st, p)?.number.clone();
            let mut services = Vec::new();
            for (k, v) in &req.query {
                if k == "names" {
                    let s = v.rsplit('/').next().unwrap_or("");
                    if title(s).is_none() {
                        return Err(unknown(&[s]));
                    }
                    services.push(service_json(st, &number, s));
                }
            }
            Ok(list_response("services", services, None))
        }
        (["v1", "projects", p, "services", s], "") if m == Method::GET => {
            let number = project(st, p)?.number.clone();
            if title(s).is_none() {
                return Err(unknown(&[s]));
            }
            Ok(service_json(st, &number, s))
        }
        (["v1", "projects", p, "services", s], verb @ ("enable" | "disable"))
            if m == Method::POST =>
        {
            let number = project(st, p)?.number.clone();
            if title(s).is_none() {
                return Err(unknown(&[s]));
            }
            let set = st.enabled.entry(number.clone()).or_default();
            let kind = if verb == "enable" {
                set.insert(s.to_string());
                "EnableServiceResponse"
            } else {
                set.remove(*s);
                "DisableServiceResponse"
            };
            let mut response = json!({"service": service_json(st, &number, s)});
            response["@type"] = json!(format!("{TYPE_PREFIX}{kind}"));
            Ok(operation(st, env, &number, &[s], response))
        }
        _ => Err(ApiError::not_found(format!(
            "Method {} not found for path /{}.",
            req.method,
            req.segments.join("/")
        ))),
    }
}

fn operation(st: &mut State, env: &Env, number: &str, services: &[&str], response: Value) -> Value {
    let n = st.next();
    let name = format!("operations/acat.p2-{number}-{n:08x}-0000-4000-8000-000000000000");
    let metadata = json!({
        "@type": format!("{TYPE_PREFIX}OperationMetadata"),
        "resourceNames": services
            .iter()
            .map(|s| format!("services/{s}/projectSettings/{number}"))
            .collect::<Vec<_>>(),
    });
    st.new_operation(API, name, env.lro, metadata, response, None)
}

fn list(st: &State, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    let number = project(st, p)?.number.clone();
    let filter = req.param("filter").unwrap_or("").replace(' ', "");
    let want: Option<&str> = match filter.as_str() {
        "" => None,
        "state:ENABLED" | "state=ENABLED" => Some("ENABLED"),
        "state:DISABLED" | "state=DISABLED" => Some("DISABLED"),
        other => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid filter '{other}': only 'state:ENABLED' and 'state:DISABLED' are supported."
            )));
        }
    };
    let items: Vec<Value> = CATALOG
        .iter()
        .map(|(s, _)| service_json(st, &number, s))
        .filter(|v| want.is_none_or(|w| v["state"] == w))
        .collect();
    let (page, next) = req.paginate(items, 50, 200)?;
    Ok(list_response("services", page, next))
}

fn batch_enable(st: &mut State, env: &Env, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    let number = project(st, p)?.number.clone();
    let ids: Vec<&str> = match req.body.get("serviceIds") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'service_ids' must not be empty.",
        ));
    }
    if ids.len() > MAX_BATCH {
        return Err(ApiError::invalid_argument(format!(
            "Request contains an invalid argument: no more than {MAX_BATCH} services may be enabled in a single request (got {}).",
            ids.len()
        )));
    }
    let missing: Vec<&str> = ids.iter().copied().filter(|s| title(s).is_none()).collect();
    if !missing.is_empty() {
        return Err(unknown(&missing));
    }
    let set = st.enabled.entry(number.clone()).or_default();
    for s in &ids {
        set.insert((*s).to_string());
    }
    let services: Vec<Value> = ids.iter().map(|s| service_json(st, &number, s)).collect();
    let response = json!({
        "@type": format!("{TYPE_PREFIX}BatchEnableServicesResponse"),
        "services": services,
    });
    Ok(operation(st, env, &number, &ids, response))
}

/// The Service Usage part of the admin state: enabled services.
pub(crate) fn state_json(st: &State) -> Value {
    let services: Vec<Value> = st
        .enabled
        .iter()
        .flat_map(|(number, set)| set.iter().map(move |s| (number, s)))
        .map(|(number, s)| service_json(st, number, s))
        .collect();
    json!({"services": services})
}
