//! An in-memory OCI distribution registry (the Docker Registry HTTP API v2), anonymous, serving
//! many registry hosts at once: a repository's name starts with the host it stands for
//! (`docker.io/library/busybox`, `us-docker.pkg.dev/kf-dev/mirror/docker.io/library/busybox`).
//!
//! Blobs are stored once by digest and shared by every repository; each repository records which
//! blobs it holds (what a blob `GET`, a cross-repository mount and a manifest `PUT` check),
//! its manifests (byte for byte, with the media type they were pushed with) and its tags. Errors
//! are the distribution spec's `{"errors":[{"code","message","detail"}]}`.

mod seed;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

pub use self::seed::SEEDED_IMAGES;
use crate::server::RawRequest;
use crate::sha256::{digest, hex, is_sha256_digest, sha256, uuid_from};
use crate::state::{Env, State};
use crate::wire::{form_decode, percent_decode};

/// The API name (the endpoints file's key).
pub(crate) const API: &str = "registry";

/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Layers that registries do not store (Windows base layers): not checked at manifest `PUT`.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

const API_VERSION_HEADER: &str = "docker-distribution-api-version";
const CONTENT_DIGEST: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";

/// A manifest as pushed: its bytes and the media type of the `PUT`.
#[derive(Debug, Clone)]
struct Manifest {
    media_type: String,
    bytes: Bytes,
}

/// One repository.
#[derive(Debug, Clone, Default)]
struct Repo {
    /// Tag -> manifest digest.
    tags: BTreeMap<String, String>,
    /// Digest -> manifest.
    manifests: BTreeMap<String, Manifest>,
    /// Digests of the blobs this repository holds.
    blobs: BTreeSet<String>,
}

impl Repo {
    /// The digest a tag or digest reference names, when this repository has that manifest.
    fn resolve(&self, reference: &str) -> Option<String> {
        if reference.contains(':') {
            self.manifests
                .contains_key(reference)
                .then(|| reference.to_string())
        } else {
            self.tags.get(reference).cloned()
        }
    }
}

/// An upload session.
#[derive(Debug, Clone)]
struct Upload {
    repo: String,
    data: Vec<u8>,
}

/// The registry part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryState {
    /// Digest -> content, shared by every repository.
    blobs: BTreeMap<String, Bytes>,
    repos: BTreeMap<String, Repo>,
    uploads: BTreeMap<String, Upload>,
    /// Upload sessions started so far (numbers their ids).
    sessions: u64,
}

impl RegistryState {
    /// The seeded registry (see [`SEEDED_IMAGES`]).
    pub(crate) fn seed() -> Self {
        let mut reg = Self::default();
        seed::seed(&mut reg);
        reg
    }

    /// Adds a synthetic image for each image reference of `images` (see
    /// [`seed::seed_reference`]); returns, for each reference by digest, the digest of the
    /// image standing in for it (tagged [`seed::STAND_IN_TAG`]).
    pub(crate) fn seed_images(
        &mut self,
        images: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        let mut stand_ins = BTreeMap::new();
        for image in images {
            if let Some(d) = seed::seed_reference(self, image)? {
                stand_ins.insert(image.clone(), d);
            }
        }
        Ok(stand_ins)
    }

    /// Stores `data` as a blob of `repo`; returns its digest.
    fn add_blob(&mut self, repo: &str, data: Bytes) -> String {
        let d = digest(&data);
        self.blobs.entry(d.clone()).or_insert(data);
        self.repo_mut(repo).blobs.insert(d.clone());
        d
    }

    /// Stores a manifest in `repo` (tagged `tag` when given) without checks; returns its digest.
    fn add_manifest(
        &mut self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: Bytes,
    ) -> String {
        let d = digest(&bytes);
        let r = self.repo_mut(repo);
        r.manifests.insert(
            d.clone(),
            Manifest {
                media_type: media_type.to_string(),
                bytes,
            },
        );
        if let Some(tag) = tag {
            r.tags.insert(tag.to_string(), d.clone());
        }
        d
    }

    fn repo_mut(&mut self, name: &str) -> &mut Repo {
        self.repos.entry(name.to_string()).or_default()
    }

    /// Whether `repo` holds the blob `digest`.
    fn has_blob(&self, repo: &str, digest: &str) -> bool {
        self.blobs.contains_key(digest)
            && self
                .repos
                .get(repo)
                .is_some_and(|r| r.blobs.contains(digest))
    }

    /// The digest of the manifest that image reference `image` (`HOST/PATH:TAG`,
    /// `HOST/PATH@sha256:...`) names, if the registry has it.
    pub(crate) fn image_digest(&self, image: &str) -> Option<String> {
        let r = ImageRef::parse(image)?;
        self.repos.get(&r.repo)?.resolve(&r.reference)
    }

    /// Copies image `src` to `dst` (both image references, every host being a repository of
    /// this registry), as `crane copy` does: the manifest byte for byte, an index with all its
    /// children, and every blob they reference; `dst` is tagged when it names a tag. Returns the
    /// digest of the copied manifest, or a message saying what went wrong (nothing is changed
    /// then).
    pub(crate) fn copy_image(&mut self, src: &str, dst: &str) -> Result<String, String> {
        let s = ImageRef::parse(src).ok_or_else(|| {
            format!("parsing reference {src:?}: could not parse reference: {src}")
        })?;
        let d = ImageRef::parse(dst).ok_or_else(|| {
            format!("parsing reference {dst:?}: could not parse reference: {dst}")
        })?;
        let repo = self.repos.get(&s.repo);
        let top = repo.and_then(|r| r.resolve(&s.reference)).ok_or_else(|| {
            format!(
                "GET {src}: MANIFEST_UNKNOWN: manifest unknown; unknown {} {}",
                if s.reference.contains(':') {
                    "digest"
                } else {
                    "tag"
                },
                s.reference
            )
        })?;
        let repo = repo.ok_or_else(|| format!("{src}: repository not found"))?;
        if d.reference.contains(':') && d.reference != top {
            return Err(format!(
                "PUT {dst}: DIGEST_INVALID: provided digest did not match uploaded content (the source is {top})"
            ));
        }
        // Everything the image needs: manifests (children first) and blobs.
        let mut manifests: Vec<(String, Manifest)> = Vec::new();
        let mut blobs = BTreeSet::new();
        let mut todo = vec![top.clone()];
        while let Some(md) = todo.pop() {
            let m = repo.manifests.get(&md).ok_or_else(|| {
                format!("GET {}@{md}: MANIFEST_UNKNOWN: manifest unknown", s.repo)
            })?;
            let refs = references(&m.bytes);
            for child in refs.manifests {
                todo.push(child);
            }
            for b in refs.blobs {
                if !repo.blobs.contains(&b) || !self.blobs.contains_key(&b) {
                    return Err(format!(
                        "GET {}@{b}: BLOB_UNKNOWN: blob unknown to registry",
                        s.repo
                    ));
                }
                blobs.insert(b);
            }
            manifests.push((md, m.clone()));
        }
        let target = self.repo_mut(&d.repo);
        target.blobs.extend(blobs);
        for (md, m) in manifests {
            target.manifests.insert(md, m);
        }
        if !d.reference.contains(':') {
            target.tags.insert(d.reference, top.clone());
        }
        Ok(top)
    }
}

/// What a manifest references: child manifests (an index) and blobs (an image manifest).
#[derive(Debug, Default, PartialEq, Eq)]
struct References {
    manifests: Vec<String>,
    blobs: Vec<String>,
}

/// The references of a manifest, by structure: `manifests[].digest` of an index or manifest
/// list, `config.digest` and `layers[].digest` of an image manifest (foreign layers and layers
/// with `urls` excepted, as distribution does).
fn references(bytes: &[u8]) -> References {
    let mut out = References::default();
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return out;
    };
    let digest_of = |d: &Value| d.get("digest").and_then(Value::as_str).map(str::to_string);
    if let Some(children) = v.get("manifests").and_then(Value::as_array) {
        out.manifests.extend(children.iter().filter_map(digest_of));
    }
    if let Some(config) = v.get("config") {
        out.blobs.extend(digest_of(config));
    }
    if let Some(layers) = v.get("layers").and_then(Value::as_array) {
        out.blobs.extend(
            layers
                .iter()
                .filter(|l| {
                    let media = l.get("mediaType").and_then(Value::as_str).unwrap_or("");
                    let has_urls = l
                        .get("urls")
                        .and_then(Value::as_array)
                        .is_some_and(|u| !u.is_empty());
                    !FOREIGN_LAYERS.contains(&media) && !has_urls
                })
                .filter_map(digest_of),
        );
    }
    out
}

/// An image reference, `HOST/PATH:TAG` or `HOST/PATH@DIGEST`, normalized as Docker does
/// (`busybox` is `docker.io/library/busybox:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageRef {
    /// The repository of this registry: `HOST/PATH`.
    repo: String,
    /// A tag, or a digest (`sha256:...`).
    reference: String,
}

impl ImageRef {
    fn parse(s: &str) -> Option<Self> {
        let (name, reference) = match s.split_once('@') {
            Some((name, d)) => {
                if !is_sha256_digest(d) {
                    return None;
                }
                // A tag next to a digest is ignored, as the digest wins.
                let name = match name.rsplit_once(':') {
                    Some((n, tag)) if !tag.contains('/') => n,
                    _ => name,
                };
                (name, d.to_string())
            }
            None => match s.rsplit_once(':') {
                Some((n, tag)) if !tag.contains('/') => (n, tag.to_string()),
                _ => (s, "latest".to_string()),
            },
        };
        if !valid_reference(&reference) {
            return None;
        }
        let first = name.split('/').next().unwrap_or("");
        let has_host = name.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let repo = if has_host {
            name.to_string()
        } else if name.contains('/') {
            format!("docker.io/{name}")
        } else {
            format!("docker.io/library/{name}")
        };
        let repo = repo.replacen("index.docker.io/", "docker.io/", 1);
        valid_name(&repo).then_some(Self { repo, reference })
    }
}

fn valid_reference(r: &str) -> bool {
    is_sha256_digest(r) || valid_tag(r)
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A repository name: `/`-separated components of lower-case letters and digits, joined inside a
/// component by `.`, `_`, `__` or runs of `-`; at most 255 characters.
fn valid_name(name: &str) -> bool {
    fn component(c: &str) -> bool {
        let b = c.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            let sep_start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &c[sep_start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                return false;
            }
        }
        true
    }
    fn is_alnum(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    }
    !name.is_empty() && name.len() <= 255 && name.split('/').all(component)
}

// ----- errors --------------------------------------------------------------------------------

/// A registry error: an HTTP status and the distribution spec's error body.
#[derive(Debug, Clone)]
pub(crate) struct RegError {
    status: StatusCode,
    errors: Vec<Value>,
}

impl RegError {
    /// An error with one entry `{"code","message"}`.
    pub(crate) fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            errors: vec![json!({"code": code, "message": message})],
        }
    }

    /// Sets the `detail` of the (last) entry.
    fn detail(mut self, detail: Value) -> Self {
        if let Some(last) = self.errors.last_mut() {
            last["detail"] = detail;
        }
        self
    }

    fn blob_unknown(d: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(json!(d))
    }

    fn upload_unknown(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
        .detail(json!(id))
    }

    fn digest_invalid(detail: Value) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        )
        .detail(detail)
    }

    fn manifest_unknown(reference: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
        .detail(json!({"Tag": reference}))
    }

    fn unsupported() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "The operation is unsupported.",
        )
    }
}

impl IntoResponse for RegError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&json!({"errors": self.errors})).unwrap_or_default();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
        r
    }
}

type RegResult = Result<Response, RegError>;

// ----- responses -----------------------------------------------------------------------------

/// A response with `status`, headers and body; `Content-Length` is always set (also for `HEAD`,
/// whose body is dropped).
fn respond(
    status: StatusCode,
    headers: &[(&'static str, String)],
    body: Bytes,
    head: bool,
) -> Response {
    let len = body.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn json_body(status: StatusCode, v: &Value, extra: &[(&'static str, String)]) -> Response {
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend_from_slice(extra);
    respond(
        status,
        &headers,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        false,
    )
}

fn blob_created(name: &str, d: &str) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            (CONTENT_DIGEST, d.to_string()),
        ],
        Bytes::new(),
        false,
    )
}

/// The answer about an upload session: `Location`, `Range` and `Docker-Upload-UUID`.
fn upload_status(status: StatusCode, name: &str, id: &str, size: usize) -> Response {
    respond(
        status,
        &[
            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("range", format!("0-{}", size.saturating_sub(1))),
            (UPLOAD_UUID, id.to_string()),
        ],
        Bytes::new(),
        false,
    )
}

// ----- routing -------------------------------------------------------------------------------

/// What a `/v2/...` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
}

fn route(path: &str) -> Option<Route> {
    // `http://127.0.0.1:PORT/` + `/v2/` is a frequent way to spell the base: allow `//v2/`.
    let rest = path.trim_start_matches('/').strip_prefix("v2")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let name = |k: usize| segs[..segs.len() - k].join("/");
    let parts: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match parts.as_slice() {
        [] => Route::Base,
        ["_catalog"] => Route::Catalog,
        [_, .., "tags", "list"] => Route::Tags(name(2)),
        [_, .., "manifests", r] => Route::Manifest(name(2), (*r).to_string()),
        [_, .., "blobs", "uploads"] => Route::Uploads(name(2)),
        [_, .., "blobs", "uploads", id] => Route::Upload(name(3), (*id).to_string()),
        [_, .., "blobs", d] => Route::Blob(name(2), (*d).to_string()),
        _ => return None,
    })
}

/// The registry API handler.
pub(crate) fn dispatch(st: &mut State, _env: &Env, req: &RawRequest) -> Response {
    let mut r = handle(&mut st.registry, req).unwrap_or_else(IntoResponse::into_response);
    r.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    r
}

/// The query parameters of a request, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(req: &RawRequest) -> Self {
        Self(
            req.uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (form_decode(k), form_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn handle(reg: &mut RegistryState, req: &RawRequest) -> RegResult {
    let path = req.uri.path();
    let route = route(path).ok_or_else(|| {
        RegError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "404 page not found").detail(json!(path))
    })?;
    let q = Query::of(req);
    let m = &req.method;
    let head = m == Method::HEAD;
    let name = match &route {
        Route::Base | Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _) => Some(n.as_str()),
    };
    if let Some(n) = name
        && !valid_name(n)
    {
        return Err(RegError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "invalid repository name",
        )
        .detail(json!(n)));
    }
    match route {
        Route::Base if m == Method::GET || head => Ok(respond(
            StatusCode::OK,
            &[("content-type", "application/json".to_string())],
            Bytes::from_static(b"{}"),
            head,
        )),
        Route::Catalog if m == Method::GET => {
            let names: Vec<&String> = reg.repos.keys().collect();
            Ok(paged(
                &q,
                "/v2/_catalog",
                names,
                |page| json!({ "repositories": page }),
            ))
        }
        Route::Tags(name) if m == Method::GET => {
            let repo = reg.repos.get(&name).ok_or_else(|| {
                RegError::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    "repository name not known to registry",
                )
                .detail(json!({ "name": name }))
            })?;
            let tags: Vec<&String> = repo.tags.keys().collect();
            Ok(paged(
                &q,
                &format!("/v2/{name}/tags/list"),
                tags,
                |page| json!({"name": name, "tags": page}),
            ))
        }
        Route::Manifest(name, r) if m == Method::GET || head => get_manifest(reg, &name, &r, head),
        Route::Manifest(name, r) if m == Method::PUT => put_manifest(reg, &name, &r, req),
        Route::Manifest(name, r) if m == Method::DELETE => delete_manifest(reg, &name, &r),
        Route::Blob(name, d) if m == Method::GET || head => {
            if !reg.has_blob(&name, &d) {
                return Err(RegError::blob_unknown(&d));
            }
            let data = reg.blobs[&d].clone();
            Ok(respond(
                StatusCode::OK,
                &[
                    ("content-type", "application/octet-stream".to_string()),
                    (CONTENT_DIGEST, d.clone()),
                    ("etag", format!("\"{d}\"")),
                    ("cache-control", "max-age=31536000".to_string()),
                ],
                data,
                head,
            ))
        }
        Route::Uploads(name) if m == Method::POST => start_upload(reg, &name, &q, req),
        Route::Upload(name, id) => {
            let size = match reg.uploads.get(&id) {
                Some(u) if u.repo == name => u.data.len(),
                _ => return Err(RegError::upload_unknown(&id)),
            };
            match *m {
                Method::GET => Ok(upload_status(StatusCode::NO_CONTENT, &name, &id, size)),
                Method::PATCH => patch_upload(reg, &name, &id, req),
                Method::PUT => finish_upload(reg, &name, &id, &q, req),
                Method::DELETE => {
                    reg.uploads.remove(&id);
                    Ok(respond(StatusCode::NO_CONTENT, &[], Bytes::new(), false))
                }
                _ => Err(RegError::unsupported()),
            }
        }
        _ => Err(RegError::unsupported()),
    }
}

/// A list answer paged with `n` and `last` as distribution does, with a `Link` header to the
/// next page.
fn paged(
    q: &Query,
    path: &str,
    items: Vec<&String>,
    body: impl FnOnce(Vec<&String>) -> Value,
) -> Response {
    let mut items: Vec<&String> = match q.get("last") {
        Some(last) if !last.is_empty() => items.into_iter().filter(|i| i.as_str() > last).collect(),
        _ => items,
    };
    let mut extra = Vec::new();
    if let Some(n) = q.get("n").and_then(|n| n.parse::<usize>().ok())
        && n > 0
        && items.len() > n
    {
        items.truncate(n);
        let last = items.last().map(|s| s.as_str()).unwrap_or("");
        extra.push(("link", format!("<{path}?last={last}&n={n}>; rel=\"next\"")));
    }
    json_body(StatusCode::OK, &body(items), &extra)
}

fn get_manifest(reg: &RegistryState, name: &str, reference: &str, head: bool) -> RegResult {
    let repo = reg
        .repos
        .get(name)
        .ok_or_else(|| RegError::manifest_unknown(reference))?;
    let d = repo
        .resolve(reference)
        .ok_or_else(|| RegError::manifest_unknown(reference))?;
    let man = &repo.manifests[&d];
    Ok(respond(
        StatusCode::OK,
        &[
            ("content-type", man.media_type.clone()),
            (CONTENT_DIGEST, d.clone()),
            ("etag", format!("\"{d}\"")),
        ],
        man.bytes.clone(),
        head,
    ))
}

fn put_manifest(
    reg: &mut RegistryState,
    name: &str,
    reference: &str,
    req: &RawRequest,
) -> RegResult {
    let is_digest = reference.contains(':');
    if !is_digest && !valid_tag(reference) {
        return Err(RegError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            "manifest tag did not match URI",
        )
        .detail(json!(reference)));
    }
    let bytes = req.body.clone();
    let d = digest(&bytes);
    if is_digest && reference != d {
        return Err(RegError::digest_invalid(json!(format!(
            "the manifest's digest is {d}, not {reference}"
        ))));
    }
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| {
        RegError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "manifest invalid",
        )
        .detail(json!(e.to_string()))
    })?;
    let header_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty());
    let media_type = header_type
        .or_else(|| {
            parsed
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    let refs = references(&bytes);
    let repo = reg.repos.get(name);
    let mut missing = Vec::new();
    for child in &refs.manifests {
        if !repo.is_some_and(|r| r.manifests.contains_key(child)) {
            missing.push(child.clone());
        }
    }
    for b in &refs.blobs {
        if !reg.has_blob(name, b) {
            missing.push(b.clone());
        }
    }
    if !missing.is_empty() {
        return Err(RegError {
            status: StatusCode::BAD_REQUEST,
            errors: missing
                .iter()
                .map(|m| {
                    json!({"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": m})
                })
                .collect(),
        });
    }
    let tag = (!is_digest).then_some(reference);
    reg.add_manifest(name, tag, &media_type, bytes);
    Ok(respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/manifests/{d}")),
            (CONTENT_DIGEST, d),
        ],
        Bytes::new(),
        false,
    ))
}

fn delete_manifest(reg: &mut RegistryState, name: &str, reference: &str) -> RegResult {
    let repo = reg
        .repos
        .get_mut(name)
        .ok_or_else(|| RegError::manifest_unknown(reference))?;
    if reference.contains(':') {
        if repo.manifests.remove(reference).is_none() {
            return Err(RegError::manifest_unknown(reference));
        }
        repo.tags.retain(|_, d| d != reference);
    } else if repo.tags.remove(reference).is_none() {
        return Err(RegError::manifest_unknown(reference));
    }
    Ok(respond(StatusCode::ACCEPTED, &[], Bytes::new(), false))
}

/// Checks that `data` has digest `expected` and stores it as a blob of `name`.
fn store_verified(reg: &mut RegistryState, name: &str, expected: &str, data: Bytes) -> RegResult {
    if !is_sha256_digest(expected) {
        return Err(RegError::digest_invalid(json!(format!(
            "unsupported or malformed digest {expected:?}"
        ))));
    }
    let actual = format!("sha256:{}", hex(&sha256(&data)));
    if actual != expected {
        return Err(RegError::digest_invalid(json!(format!(
            "the uploaded content's digest is {actual}, not {expected}"
        ))));
    }
    reg.add_blob(name, data);
    Ok(blob_created(name, expected))
}

fn start_upload(reg: &mut RegistryState, name: &str, q: &Query, req: &RawRequest) -> RegResult {
    if let Some(mount) = q.get("mount") {
        let from = q.get("from").unwrap_or("");
        if reg.has_blob(from, mount) {
            reg.repo_mut(name).blobs.insert(mount.to_string());
            return Ok(blob_created(name, mount));
        }
    } else if let Some(expected) = q.get("digest") {
        return store_verified(reg, name, expected, req.body.clone());
    }
    reg.sessions += 1;
    let id = uuid_from(&format!("kfsec-emulator upload {}", reg.sessions));
    reg.uploads.insert(
        id.clone(),
        Upload {
            repo: name.to_string(),
            data: Vec::new(),
        },
    );
    Ok(upload_status(StatusCode::ACCEPTED, name, &id, 0))
}

fn patch_upload(reg: &mut RegistryState, name: &str, id: &str, req: &RawRequest) -> RegResult {
    let Some(upload) = reg.uploads.get_mut(id) else {
        return Err(RegError::upload_unknown(id));
    };
    if let Some(range) = req
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        let start = range
            .trim()
            .trim_start_matches("bytes ")
            .trim_start_matches("bytes=")
            .split('-')
            .next()
            .and_then(|s| s.trim().parse::<usize>().ok());
        if start != Some(upload.data.len()) {
            return Err(RegError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "blob upload invalid",
            )
            .detail(json!(format!(
                "Content-Range {range} does not continue the {} bytes received",
                upload.data.len()
            ))));
        }
    }
    upload.data.extend_from_slice(&req.body);
    let size = upload.data.len();
    Ok(upload_status(StatusCode::ACCEPTED, name, id, size))
}

fn finish_upload(
    reg: &mut RegistryState,
    name: &str,
    id: &str,
    q: &Query,
    req: &RawRequest,
) -> RegResult {
    let Some(mut upload) = reg.uploads.remove(id) else {
        return Err(RegError::upload_unknown(id));
    };
    upload.data.extend_from_slice(&req.body);
    let expected = q.get("digest").unwrap_or("").to_string();
    store_verified(reg, name, &expected, Bytes::from(upload.data))
}

/// The registry part of the admin state: each repository's tags, manifests and blobs (digests
/// only).
pub(crate) fn state_json(st: &State) -> Value {
    let repos: serde_json::Map<String, Value> = st
        .registry
        .repos
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                json!({
                    "tags": r.tags,
                    "manifests": r.manifests.keys().collect::<Vec<_>>(),
                    "blobs": r.blobs,
                }),
            )
        })
        .collect();
    json!({ "repositories": repos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("//v2/"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            route("/v2/docker.io/library/busybox/manifests/1.36"),
            Some(Route::Manifest(
                "docker.io/library/busybox".into(),
                "1.36".into()
            ))
        );
        assert_eq!(
            route("/v2/a/b/blobs/uploads/"),
            Some(Route::Uploads("a/b".into()))
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/x-y"),
            Some(Route::Upload("a".into(), "x-y".into()))
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob("a".into(), "sha256:00".into()))
        );
        assert_eq!(route("/v2/a/tags/list"), Some(Route::Tags("a".into())));
        assert_eq!(route("/v2/manifests/x"), None);
        assert_eq!(route("/v3/"), None);
        assert_eq!(route("/v2x/"), None);
    }

    #[test]
    fn names_and_tags() {
        assert!(valid_name("docker.io/library/busybox"));
        assert!(valid_name(
            "us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox"
        ));
        assert!(valid_name("a__b/c---d/e_f.g"));
        assert!(!valid_name("Docker.io/x"));
        assert!(!valid_name("a//b"));
        assert!(!valid_name("a/-b"));
        assert!(!valid_name("a/b."));
        assert!(!valid_name("a___b"));
        assert!(!valid_name(""));
        assert!(valid_tag("1.36"));
        assert!(valid_tag("_x-Y.z"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn image_references() {
        fn r(s: &str) -> Option<(String, String)> {
            ImageRef::parse(s).map(|r| (r.repo, r.reference))
        }
        assert_eq!(
            r("busybox"),
            Some(("docker.io/library/busybox".into(), "latest".into()))
        );
        assert_eq!(
            r("jetstack/cert-manager:v1"),
            Some(("docker.io/jetstack/cert-manager".into(), "v1".into()))
        );
        assert_eq!(
            r("gcr.io/ml-pipeline/frontend:2.0.5"),
            Some(("gcr.io/ml-pipeline/frontend".into(), "2.0.5".into()))
        );
        let d = digest(b"x");
        assert_eq!(
            r(&format!("quay.io/a/b:v1@{d}")),
            Some(("quay.io/a/b".into(), d))
        );
        assert_eq!(
            r("index.docker.io/library/busybox:1.36"),
            Some(("docker.io/library/busybox".into(), "1.36".into()))
        );
        assert_eq!(r("quay.io/a/b@sha256:12"), None);
        assert_eq!(r("Quay.io/a/b"), None);
    }

    #[test]
    fn references_of_manifests() {
        let index = br#"{"manifests":[{"digest":"sha256:1"},{"digest":"sha256:2"}]}"#;
        assert_eq!(references(index).manifests, vec!["sha256:1", "sha256:2"]);
        let image = br#"{"config":{"digest":"sha256:c"},"layers":[{"digest":"sha256:l"},
            {"digest":"sha256:f","mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"},
            {"digest":"sha256:u","urls":["https://example.com/u"]}]}"#;
        assert_eq!(references(image).blobs, vec!["sha256:c", "sha256:l"]);
        assert_eq!(references(b"not json"), References::default());
    }

    #[test]
    fn copy_image_copies_an_index_with_its_children() {
        let mut reg = RegistryState::seed();
        let src = reg.image_digest("docker.io/library/busybox:1.36").unwrap();
        let got = reg
            .copy_image(
                "docker.io/library/busybox:1.36",
                "us-docker.pkg.dev/kf-dev/mirror/docker.io/library/busybox:1.36",
            )
            .unwrap();
        assert_eq!(got, src);
        let from = &reg.repos["docker.io/library/busybox"];
        let to = &reg.repos["us-docker.pkg.dev/kf-dev/mirror/docker.io/library/busybox"];
        assert_eq!(from.manifests.len(), 3);
        assert_eq!(
            from.manifests.keys().collect::<Vec<_>>(),
            to.manifests.keys().collect::<Vec<_>>()
        );
        assert_eq!(from.blobs, to.blobs);
        assert_eq!(to.tags["1.36"], src);
        let err = reg
            .copy_image("docker.io/library/busybox:nope", "x.io/y:z")
            .unwrap_err();
        assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
        assert!(!reg.repos.contains_key("x.io/y"));
    }
}
