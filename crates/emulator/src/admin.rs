//! The admin API: state, request log, reset and faults. Never faulted, delayed or logged.

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Method, Uri};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::server::{Faults, Shared};
use crate::state::State;

/// The API name of the admin endpoint.
pub(crate) const API: &str = "admin";

/// Every resource, keyed by API name.
pub(crate) fn state_json(st: &State, kube: &crate::kubernetes::KubeState) -> Value {
    json!({
        crate::accesscontextmanager::API: crate::accesscontextmanager::state_json(st),
        crate::serviceusage::API: crate::serviceusage::state_json(st),
        crate::resourcemanager::API: crate::resourcemanager::state_json(st),
        crate::iam::API: crate::iam::state_json(st),
        crate::dns::API: crate::dns::state_json(st),
        crate::compute::API: crate::compute::state_json(st),
        crate::container::API: crate::container::state_json(st),
        crate::cloudbuild::API: crate::cloudbuild::state_json(st),
        crate::registry::API: crate::registry::state_json(st),
        crate::iap::API: crate::iap::state_json(st),
        crate::kubernetes::API: crate::kubernetes::state_json(kube),
        crate::logging::API: crate::logging::state_json(st),
    })
}

async fn handler(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    // The admin API is served at the root of its endpoint; `/admin/...` is accepted too.
    let path = path
        .strip_prefix("/admin")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    match (method, path) {
        (Method::GET, "/state") => {
            let mut st = shared.state();
            let mut kube = shared.kube();
            st.settle();
            crate::kubernetes::settle(&mut kube, std::time::Instant::now());
            axum::Json(state_json(&st, &kube)).into_response()
        }
        (Method::GET, "/requests") => axum::Json(shared.log().clone()).into_response(),
        (Method::POST, "/reset") => {
            shared.reset();
            axum::Json(json!({})).into_response()
        }
        (Method::GET, "/faults") => {
            let f = shared.faults();
            axum::Json(json!({"rate": f.rate(), "seed": f.seed()})).into_response()
        }
        (Method::POST, "/faults") => {
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return ApiError::invalid_argument(format!(
                        "Invalid JSON payload received. {e}"
                    ))
                    .into_response();
                }
            };
            let rate = v.get("rate").and_then(Value::as_f64).unwrap_or(0.0);
            let seed = v.get("seed").and_then(Value::as_u64).unwrap_or(0);
            if !(0.0..=1.0).contains(&rate) {
                return ApiError::invalid_argument(format!(
                    "Invalid value for field 'rate': {rate} is not between 0 and 1."
                ))
                .into_response();
            }
            *shared.faults() = Faults::new(rate, seed);
            axum::Json(json!({"rate": rate, "seed": seed})).into_response()
        }
        (Method::GET, "/operation-failures") => {
            axum::Json(json!(shared.state().operation_failures)).into_response()
        }
        (Method::POST, "/operation-failures") => {
            match serde_json::from_slice::<crate::state::OperationFailure>(&body) {
                Ok(rule) => {
                    let v = json!(rule);
                    shared.state().operation_failures.push(rule);
                    axum::Json(v).into_response()
                }
                Err(e) => ApiError::invalid_argument(format!(
                    "Invalid operation failure: {e}; send {{\"api\":\"compute\",\"match\":\"insert networks/kf-net\",\"message\":\"...\",\"count\":1}}"
                ))
                .into_response(),
            }
        }
        (Method::POST, "/access-attempts") => {
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return ApiError::invalid_argument(format!(
                        "Invalid JSON payload received. {e}"
                    ))
                    .into_response();
                }
            };
            match crate::vpcsc::evaluate(&mut shared.state(), &v) {
                Ok(v) => axum::Json(v).into_response(),
                Err(e) => e.into_response(),
            }
        }
        (Method::POST, "/logging/age") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(seconds) = v.get("seconds").and_then(Value::as_u64) else {
                return ApiError::invalid_argument(
                    "Invalid logging age: send {\"seconds\": N} with N a non-negative integer.",
                )
                .into_response();
            };
            let mut st = shared.state();
            st.logging.age(seconds);
            axum::Json(json!({"seconds": seconds, "entries": st.logging.entries.len()}))
                .into_response()
        }
        (m, p) => {
            ApiError::not_found(format!("Method {m} not found for admin path {p}.")).into_response()
        }
    }
}

/// The admin router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handler).with_state(shared)
}
