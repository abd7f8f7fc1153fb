//! HTTP plumbing: one loopback listener per API, the common request pipeline (log, latency,
//! faults, dispatch), dropped connections and answers cut off half-way.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::RequestRecord;
use crate::error::{ApiError, ApiResult};
use crate::state::{Env, State};
use crate::wire::ApiRequest;

/// An API handler: applies one request to the state.
pub(crate) type Dispatch = fn(&mut State, &Env, &ApiRequest) -> ApiResult<Value>;

/// A handler of an API that does not speak Google's JSON (the OCI registry): it gets the raw
/// request and answers the whole response.
pub(crate) type RawDispatch = fn(&mut State, &Env, &RawRequest) -> Response;

/// The Kubernetes API's handler: it has its own state and lock (see [`Shared::kube`]).
pub(crate) type KubeDispatch = fn(&mut crate::kubernetes::KubeState, &Env, &RawRequest) -> Response;

/// A request as a [`RawDispatch`] sees it.
#[derive(Debug)]
pub(crate) struct RawRequest {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// How one API handles requests, behind the common pipeline (log, latency, faults).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handler {
    /// A Google REST API: JSON in, JSON or a Google error out.
    Google(Dispatch),
    /// An OCI distribution registry: bytes in and out, faults answered with the distribution
    /// error body, no body size limit.
    Registry(RawDispatch),
    /// A Kubernetes API server: JSON or YAML in, JSON out, errors and faults answered as
    /// `Status` objects, no body size limit (CustomResourceDefinitions are large).
    Kubernetes(KubeDispatch),
}

/// A fault injected instead of (or after) handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 429 RESOURCE_EXHAUSTED with `Retry-After`, before applying.
    ResourceExhausted,
    /// 503 UNAVAILABLE, before applying.
    Unavailable,
    /// Connection closed without a response, before applying.
    DropBefore,
    /// Connection closed without a response, after applying.
    DropAfter,
    /// After applying, the status, the headers (with the whole `Content-Length`) and the first
    /// half of the body are sent, then the connection is closed: an answer cut off on its way.
    /// An answer without a body (a `HEAD`, a 201 with nothing in it) is dropped instead, as
    /// with [`Fault::DropAfter`].
    CutAfter,
}

/// The seeded fault generator.
#[derive(Debug)]
pub(crate) struct Faults {
    rate: f64,
    seed: u64,
    rng: StdRng,
}

impl Faults {
    pub(crate) fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Decides the fate of one request.
    pub(crate) fn decide(&mut self) -> Option<Fault> {
        if self.rate <= 0.0 || !self.rng.gen_bool(self.rate) {
            return None;
        }
        Some(match self.rng.gen_range(0..5u8) {
            0 => Fault::ResourceExhausted,
            1 => Fault::Unavailable,
            2 => Fault::DropBefore,
            3 => Fault::DropAfter,
            _ => Fault::CutAfter,
        })
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }
}

/// What all servers of one emulator share. Whoever needs several locks takes them in the
/// order of the fields (`state`, then `kube`, then `log`).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The Google APIs' and the registry's state.
    pub(crate) state: Mutex<State>,
    /// The Kubernetes API's objects: a lock of their own, so Kubernetes requests and the
    /// other APIs' requests do not wait for each other.
    pub(crate) kube: Mutex<crate::kubernetes::KubeState>,
    /// The request log.
    pub(crate) log: Mutex<Vec<RequestRecord>>,
    /// What the state is made from (at start and on reset).
    pub(crate) seed: crate::state::Seed,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) latency: Duration,
    pub(crate) lro: Duration,
    /// When the emulator started (the request log's clock).
    pub(crate) started: std::time::Instant,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn kube(&self) -> MutexGuard<'_, crate::kubernetes::KubeState> {
        self.kube
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Restores the seed data (both states) and clears the request log.
    pub(crate) fn reset(&self) {
        let mut st = self.state();
        let mut kube = self.kube();
        *st = self.seed.state();
        *kube = crate::kubernetes::KubeState::seed();
        self.log().clear();
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Marks a response whose connection must be closed without sending it.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

fn dropped() -> Response {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(DropConnection);
    r
}

#[derive(Clone)]
struct ApiCtx {
    shared: Arc<Shared>,
    api: &'static str,
    handler: Handler,
}

/// The answer to an injected 429 or 503, in the API's own error format.
fn fault_response(handler: Handler, fault: Fault) -> Response {
    let throttled = fault == Fault::ResourceExhausted;
    let mut r = match (handler, throttled) {
        (Handler::Google(_), true) => ApiError::resource_exhausted(
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of the service (emulated fault).",
        )
        .into_response(),
        (Handler::Google(_), false) => {
            ApiError::unavailable("The service is currently unavailable (emulated fault).")
                .into_response()
        }
        (Handler::Registry(_), true) => crate::registry::RegError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "too many requests (emulated fault)",
        )
        .into_response(),
        (Handler::Registry(_), false) => crate::registry::RegError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "service unavailable (emulated fault)",
        )
        .into_response(),
        (Handler::Kubernetes(_), true) => crate::kubernetes::KubeError::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later (emulated fault)",
        )
        .into_response(),
        (Handler::Kubernetes(_), false) => crate::kubernetes::KubeError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request (emulated fault)",
        )
        .into_response(),
    };
    if throttled {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    r
}

async fn api_handler(
    AxState(ctx): AxState<ApiCtx>,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &ctx.shared;
    let method_is_head = method == Method::HEAD;
    shared.log().push(RequestRecord {
        api: ctx.api.to_string(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        at_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        read: crate::is_read(method.as_str(), uri.path()),
    });
    tracing::debug!(api = ctx.api, %method, %uri, "request");
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let fault = shared.faults().decide();
    match fault {
        Some(f @ (Fault::ResourceExhausted | Fault::Unavailable)) => {
            return fault_response(ctx.handler, f);
        }
        Some(Fault::DropBefore) => return dropped(),
        Some(Fault::DropAfter | Fault::CutAfter) | None => {}
    }
    let env = Env { lro: shared.lro };
    let response = match ctx.handler {
        Handler::Google(dispatch) => {
            let host = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            let result = match ApiRequest::parse(method, &uri, &body) {
                Ok(mut req) => {
                    req.host = host;
                    long_poll(shared, &env, &req, dispatch).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(mut v) => {
                    if crate::enums::wants_numbers(uri.query()) {
                        crate::enums::to_numbers(ctx.api, &mut v);
                    }
                    axum::Json(v).into_response()
                }
                Err(e) => {
                    tracing::debug!(api = ctx.api, status = e.status, message = %e.message, "error");
                    e.into_response()
                }
            }
        }
        Handler::Registry(dispatch) => {
            let req = RawRequest {
                method,
                uri,
                headers,
                body,
            };
            let mut st = shared.state();
            st.settle();
            dispatch(&mut st, &env, &req)
        }
        Handler::Kubernetes(dispatch) => {
            let req = RawRequest {
                method,
                uri,
                headers,
                body,
            };
            // The handler settles its controllers itself.
            dispatch(&mut shared.kube(), &env, &req)
        }
    };
    match fault {
        Some(Fault::DropAfter) => dropped(),
        Some(Fault::CutAfter) if method_is_head => dropped(),
        Some(Fault::CutAfter) => cut(response).await,
        _ => response,
    }
}

/// The answer with only the first half of its body sent, then the connection closed (see
/// [`Fault::CutAfter`]).
async fn cut(response: Response) -> Response {
    use futures::StreamExt as _;
    let (mut parts, body) = response.into_parts();
    let Ok(whole) = axum::body::to_bytes(body, usize::MAX).await else {
        return dropped();
    };
    if whole.len() < 2 {
        return dropped();
    }
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
    let half = whole.slice(..whole.len() / 2);
    // The pause lets hyper write the head and the half out before the error aborts the
    // connection: an error in the same poll would discard what is still buffered.
    let sent = futures::stream::once(async move { Ok(half) }).chain(futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(std::io::Error::other("answer cut off by fault injection"))
    }));
    Response::from_parts(parts, Body::from_stream(sent))
}

/// A handler that wants to wait for something (Compute's `operations/{op}/wait`) answers its
/// current result with this key set to the milliseconds until it is worth asking again; the
/// server then sleeps (without holding the state lock) and dispatches the request again, for at
/// most [`LONG_POLL_MAX`], and strips the key from the final answer.
pub(crate) const POLL_AGAIN_MS: &str = "$emulatorPollAgainMs";

/// How long a long poll (see [`POLL_AGAIN_MS`]) may last, as Google's `wait` (about 2 minutes).
const LONG_POLL_MAX: Duration = Duration::from_secs(120);

async fn long_poll(
    shared: &Shared,
    env: &Env,
    req: &ApiRequest,
    dispatch: Dispatch,
) -> ApiResult<Value> {
    let deadline = tokio::time::Instant::now() + LONG_POLL_MAX;
    loop {
        let mut result = {
            let mut st = shared.state();
            st.settle();
            dispatch(&mut st, env, req)
        };
        let again = match &mut result {
            Ok(Value::Object(obj)) => obj
                .remove(POLL_AGAIN_MS)
                .and_then(|v| v.as_u64())
                .map(Duration::from_millis),
            _ => None,
        };
        let now = tokio::time::Instant::now();
        match again {
            Some(wait) if now < deadline => {
                tokio::time::sleep(wait.max(Duration::from_millis(1)).min(deadline - now)).await;
            }
            _ => return result,
        }
    }
}

/// The router of one API. A registry takes bodies of any size (image layers).
pub(crate) fn api_router(shared: Arc<Shared>, api: &'static str, handler: Handler) -> Router {
    let router = Router::new().fallback(api_handler).with_state(ApiCtx {
        shared,
        api,
        handler,
    });
    match handler {
        Handler::Google(_) => router,
        Handler::Registry(_) | Handler::Kubernetes(_) => {
            router.layer(axum::extract::DefaultBodyLimit::disable())
        }
    }
}

/// Binds a loopback listener on an ephemeral port.
pub(crate) async fn bind() -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0)).await
}

/// Serves `router` on `listener` until the returned task is aborted (which also closes every
/// open connection). A response marked [`DropConnection`] closes its connection unanswered.
pub(crate) fn spawn_server(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let tower = TowerToHyperService::new(router.clone());
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let fut = hyper::service::Service::call(&tower, req);
                        async move {
                            let resp = match fut.await {
                                Ok(r) => r,
                                Err(never) => match never {},
                            };
                            if resp.extensions().get::<DropConnection>().is_some() {
                                Err(Dropped)
                            } else {
                                Ok(resp)
                            }
                        }
                    });
                    conns.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_seeded() {
        let seq = |seed| {
            let mut f = Faults::new(0.5, seed);
            (0..64).map(|_| f.decide()).collect::<Vec<_>>()
        };
        assert_eq!(seq(7), seq(7));
        assert_ne!(seq(7), seq(8));
        let mut all = Faults::new(1.0, 1);
        assert!((0..32).all(|_| all.decide().is_some()));
        let mut none = Faults::new(0.0, 1);
        assert!((0..32).all(|_| none.decide().is_none()));
    }
}
