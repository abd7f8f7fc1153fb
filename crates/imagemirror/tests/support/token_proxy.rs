//! A proxy that puts bearer-token auth in front of a registry, the way Docker Hub, gcr.io and
//! Artifact Registry do: every `/v2/` request needs a token whose scope covers the repository
//! and the action (`pull` for GET and HEAD, `push` for the rest, and `pull` on `from` for a
//! cross-repository mount), else 401 with a `WWW-Authenticate: Bearer realm=...` challenge; its
//! `/token` service hands out tokens for a user and password (answering `token` and
//! `access_token` in turn), or, to an OAuth2 `POST` with `grant_type=refresh_token`, for the
//! password as an identity token, and records the scopes asked for. Blob downloads are redirected to a
//! "storage" URL on another host name (`localhost` instead of `127.0.0.1`) that refuses any
//! request carrying an Authorization header, as signed storage URLs do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::net::TcpListener;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    me: String,
    user: String,
    password: String,
    http: reqwest::Client,
    /// token -> the scopes it grants.
    tokens: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// Each token request's scopes, in order.
    asked: Arc<Mutex<Vec<Vec<String>>>>,
    /// Requests to storage, and those that carried an Authorization header.
    storage: Arc<Mutex<(usize, usize)>>,
    /// Token requests that were OAuth2 refresh-token `POST`s.
    oauth: Arc<Mutex<usize>>,
    /// Refuse tokens that name more than one repository (as a token service does when the
    /// credentials cannot read the other one).
    one_repository: bool,
}

/// A running proxy; stops when dropped.
pub(crate) struct TokenProxy {
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    asked: Arc<Mutex<Vec<Vec<String>>>>,
    storage: Arc<Mutex<(usize, usize)>>,
    oauth: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenProxy {
    /// The scopes of each token request so far.
    pub(crate) fn token_requests(&self) -> Vec<Vec<String>> {
        self.asked.lock().unwrap().clone()
    }

    /// How many tokens were asked for with an identity token (OAuth2 `POST`).
    #[allow(dead_code)] // only the identity token test uses it
    pub(crate) fn oauth_requests(&self) -> usize {
        *self.oauth.lock().unwrap()
    }

    /// Blob downloads served from "storage", and how many of them carried an Authorization.
    pub(crate) fn storage_requests(&self) -> (usize, usize) {
        *self.storage.lock().unwrap()
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a proxy to `upstream` (`127.0.0.1:PORT`, no auth of its own) that gives tokens to
/// `user` with `password`.
pub(crate) async fn start(upstream: &str, user: &str, password: &str) -> TokenProxy {
    start_with(upstream, user, password, false).await
}

/// Like [`start`], but its token service refuses a token for two repositories (a mount's).
#[allow(dead_code)] // only the mount fallback test uses it
pub(crate) async fn start_refusing_mounts(
    upstream: &str,
    user: &str,
    password: &str,
) -> TokenProxy {
    start_with(upstream, user, password, true).await
}

async fn start_with(
    upstream: &str,
    user: &str,
    password: &str,
    one_repository: bool,
) -> TokenProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let proxy = Proxy {
        upstream: upstream.to_string(),
        me: addr.clone(),
        user: user.to_string(),
        password: password.to_string(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        tokens: Arc::default(),
        asked: Arc::default(),
        storage: Arc::default(),
        oauth: Arc::default(),
        one_repository,
    };
    let asked = proxy.asked.clone();
    let storage = proxy.storage.clone();
    let oauth = proxy.oauth.clone();
    let router = Router::new().fallback(handle).with_state(proxy);
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    TokenProxy {
        addr,
        asked,
        storage,
        oauth,
        task,
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The scopes a `/v2/` request needs.
fn needed(method: &http::Method, path: &str, query: &str) -> Vec<String> {
    let rest = path.trim_start_matches("/v2/");
    let repo = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| &rest[..i]);
    let Some(repo) = repo else {
        return vec![];
    };
    let read = method == http::Method::GET || method == http::Method::HEAD;
    let mut out = vec![format!(
        "repository:{repo}:{}",
        if read { "pull" } else { "push" }
    )];
    for (k, v) in query_pairs(query) {
        if k == "from" {
            out.push(format!("repository:{v}:pull"));
        }
    }
    out
}

/// Whether `granted` (`repository:R:pull,push`, ...) covers `need` (`repository:R:push`).
fn covers(granted: &[String], need: &str) -> bool {
    let Some((resource, action)) = need.rsplit_once(':') else {
        return false;
    };
    granted.iter().any(|g| {
        g.rsplit_once(':')
            .is_some_and(|(r, actions)| r == resource && actions.split(',').any(|a| a == action))
    })
}

async fn handle(State(p): State<Proxy>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    if path == "/token" {
        let scopes: Vec<String> = if req.method() == http::Method::POST {
            // OAuth2: the password is the identity (refresh) token, the scopes one field.
            let body = axum::body::to_bytes(req.into_body(), 1 << 16)
                .await
                .unwrap_or_default();
            let form = query_pairs(&String::from_utf8_lossy(&body));
            let field = |name: &str| {
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if field("grant_type") != "refresh_token"
                || field("refresh_token") != p.password
                || field("client_id").is_empty()
                || authorization.is_some()
            {
                return (http::StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
            }
            *p.oauth.lock().unwrap() += 1;
            field("scope").split(' ').map(str::to_string).collect()
        } else {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", p.user, p.password))
            );
            if authorization.as_deref() != Some(want.as_str()) {
                return (http::StatusCode::UNAUTHORIZED, "bad credentials").into_response();
            }
            query_pairs(&query)
                .into_iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v)
                .collect()
        };
        if p.one_repository && scopes.len() > 1 {
            return (http::StatusCode::FORBIDDEN, "one repository per token").into_response();
        }
        let n = {
            let mut asked = p.asked.lock().unwrap();
            asked.push(scopes.clone());
            asked.len()
        };
        let token = format!("tok-{n}");
        p.tokens.lock().unwrap().insert(token.clone(), scopes);
        let body = if n % 2 == 0 {
            serde_json::json!({"token": token, "expires_in": 300})
        } else {
            serde_json::json!({"access_token": token, "expires_in": 300})
        };
        return axum::Json(body).into_response();
    }

    if let Some(rest) = path.strip_prefix("/storage/") {
        {
            let mut s = p.storage.lock().unwrap();
            s.0 += 1;
            if authorization.is_some() {
                s.1 += 1;
                return (
                    http::StatusCode::BAD_REQUEST,
                    "an Authorization header reached storage",
                )
                    .into_response();
            }
        }
        let url = format!("http://{}/v2/{rest}", p.upstream);
        let Ok(answer) = p.http.get(url).send().await else {
            return http::StatusCode::BAD_GATEWAY.into_response();
        };
        let status = answer.status();
        let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
        *response.status_mut() = status;
        return response;
    }

    // The registry API: a token covering what the request needs.
    let granted = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| p.tokens.lock().unwrap().get(t).cloned());
    let need = needed(req.method(), &path, &query);
    let allowed = match &granted {
        None => false,
        Some(g) => need.iter().all(|n| covers(g, n)),
    };
    if !allowed {
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="kfsec-test",scope="{}""#,
            p.me,
            need.join(" ")
        );
        return (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, challenge)],
            "authentication required",
        )
            .into_response();
    }
    if req.method() == http::Method::GET && path.contains("/blobs/sha256:") {
        let rest = path.trim_start_matches("/v2/");
        let port = p.me.rsplit_once(':').unwrap().1;
        return (
            http::StatusCode::TEMPORARY_REDIRECT,
            [(
                http::header::LOCATION,
                format!("http://localhost:{port}/storage/{rest}?signature=x"),
            )],
        )
            .into_response();
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
        if name != http::header::HOST
            && name != http::header::CONTENT_LENGTH
            && name != http::header::AUTHORIZATION
        {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.body(body).send().await else {
        return http::StatusCode::BAD_GATEWAY.into_response();
    };
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
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    headers.remove(http::header::TRANSFER_ENCODING);
    *response.headers_mut() = headers;
    response
}
