//! A proxy in front of a registry that fails a share of requests the way networks and busy
//! registries do: 429 with `Retry-After`, 503, connections dropped before or after the request
//! reached the registry, and answers cut off half-way (a blob's bytes stop after its headers
//! promised them all); or that throttles its first requests with a `Retry-After`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// Marks a response whose connection is closed unanswered.
#[derive(Clone, Copy)]
struct Drop;

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the faulty proxy")
    }
}

impl std::error::Error for Dropped {}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    me: String,
    rate: f64,
    rng: Arc<Mutex<StdRng>>,
    http: reqwest::Client,
    faults: Arc<Mutex<usize>>,
    /// How many of the next requests to answer 429 with `retry_after`.
    throttle: Arc<Mutex<usize>>,
    retry_after: &'static str,
    /// When each request came, and whether it was throttled.
    seen: Arc<Mutex<Vec<(Instant, bool)>>>,
}

/// A running proxy; stops when dropped.
pub(crate) struct FaultyProxy {
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    faults: Arc<Mutex<usize>>,
    seen: Arc<Mutex<Vec<(Instant, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// How many requests it failed so far.
    pub(crate) fn faults(&self) -> usize {
        *self.faults.lock().unwrap()
    }

    /// When each request came so far, and whether it was throttled.
    #[allow(dead_code)] // only the Retry-After test reads it
    pub(crate) fn seen(&self) -> Vec<(Instant, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

impl std::ops::Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a proxy to `upstream` (`127.0.0.1:PORT`) failing `rate` of requests, seeded.
pub(crate) async fn start(upstream: &str, rate: f64, seed: u64) -> FaultyProxy {
    start_with(upstream, rate, seed, 0, "0").await
}

/// Starts a proxy to `upstream` that answers its first `first` requests with 429 and
/// `Retry-After: retry_after`, and passes the rest.
#[allow(dead_code)] // only the Retry-After test uses it
pub(crate) async fn start_throttling(
    upstream: &str,
    first: usize,
    retry_after: &'static str,
) -> FaultyProxy {
    start_with(upstream, 0.0, 0, first, retry_after).await
}

async fn start_with(
    upstream: &str,
    rate: f64,
    seed: u64,
    throttle: usize,
    retry_after: &'static str,
) -> FaultyProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let faults = Arc::new(Mutex::new(0));
    let proxy = Proxy {
        upstream: upstream.to_string(),
        me: addr.clone(),
        rate,
        rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        faults: faults.clone(),
        throttle: Arc::new(Mutex::new(throttle)),
        retry_after,
        seen: Arc::default(),
    };
    let seen = proxy.seen.clone();
    let router = Router::new().fallback(handle).with_state(proxy);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tower = TowerToHyperService::new(router.clone());
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let fut = hyper::service::Service::call(&tower, req);
                    async move {
                        let resp: Response = match fut.await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        if resp.extensions().get::<Drop>().is_some() {
                            Err(Dropped)
                        } else {
                            Ok(resp)
                        }
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    FaultyProxy {
        addr,
        faults,
        seen,
        task,
    }
}

fn dropped() -> Response {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(Drop);
    r
}

async fn handle(State(p): State<Proxy>, req: Request) -> Response {
    let throttled = {
        let mut left = p.throttle.lock().unwrap();
        let hit = *left > 0;
        *left = left.saturating_sub(1);
        hit
    };
    p.seen.lock().unwrap().push((Instant::now(), throttled));
    if throttled {
        return (
            http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", p.retry_after)],
            "slow down",
        )
            .into_response();
    }
    let fault = {
        let mut rng = p.rng.lock().unwrap();
        (rng.r#gen::<f64>() < p.rate).then(|| rng.gen_range(0..5u8))
    };
    if fault.is_some() {
        *p.faults.lock().unwrap() += 1;
    }
    match fault {
        Some(0) => {
            return (
                http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "too many requests",
            )
                .into_response();
        }
        Some(1) => return (http::StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response(),
        Some(2) => return dropped(),
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let url = format!(
        "http://{}{}",
        p.upstream,
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let mut forward = p.http.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.body(body).send().await else {
        return dropped();
    };
    if fault == Some(3) {
        // The registry did it; the client never hears.
        return dropped();
    }
    let status = answer.status();
    let mut headers = answer.headers().clone();
    if let Some(location) = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        let rewritten = location.replace(&p.upstream, &p.me);
        headers.insert(http::header::LOCATION, rewritten.parse().unwrap());
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let body = if fault == Some(4) {
        if bytes.len() < 2 {
            // Nothing to cut: the client never hears instead.
            return dropped();
        }
        // The headers (with the whole Content-Length) and half the bytes, then the
        // connection breaks.
        let half = bytes.slice(..bytes.len() / 2);
        Body::from_stream(futures::stream::iter([Ok(half), Err(Dropped)]))
    } else {
        Body::from(bytes)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    headers.remove(http::header::TRANSFER_ENCODING);
    *response.headers_mut() = headers;
    response
}
