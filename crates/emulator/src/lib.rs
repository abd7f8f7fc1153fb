#![doc = include_str!("../README.md")]

mod accesscontextmanager;
mod admin;
mod cloudbuild;
mod compute;
mod container;
mod dns;
mod enums;
mod error;
mod gcloud_config;
mod iam;
mod iap;
mod kubernetes;
mod logging;
mod registry;
mod resourcemanager;
mod server;
mod serviceusage;
mod sha256;
mod state;
mod vpcsc;
mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use crate::registry::SEEDED_IMAGES;
use crate::server::{Faults, Handler, Shared};
use crate::state::State;

/// The emulated APIs: gcloud's API name and its handler. Adding an API is one module plus one
/// line here.
const APIS: &[(&str, Handler)] = &[
    (
        accesscontextmanager::API,
        Handler::Google(accesscontextmanager::dispatch),
    ),
    (serviceusage::API, Handler::Google(serviceusage::dispatch)),
    (
        resourcemanager::API,
        Handler::Google(resourcemanager::dispatch),
    ),
    (iam::API, Handler::Google(iam::dispatch)),
    (dns::API, Handler::Google(dns::dispatch)),
    (compute::API, Handler::Google(compute::dispatch)),
    (container::API, Handler::Google(container::dispatch)),
    (cloudbuild::API, Handler::Google(cloudbuild::dispatch)),
    (iap::API, Handler::Google(iap::dispatch)),
    (logging::API, Handler::Google(logging::dispatch)),
    (kubernetes::API, Handler::Kubernetes(kubernetes::dispatch)),
    (registry::API, Handler::Registry(registry::dispatch)),
];

/// How an [`Emulator`] behaves. The default is instant and fault-free.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EmulatorOptions {
    /// Delay before answering each (non-admin) request.
    pub latency: Duration,
    /// How long a long-running operation takes to become done (its effect is immediate).
    pub lro: Duration,
    /// Probability in `0.0..=1.0` that a (non-admin) request fails: 429, 503, a dropped
    /// connection (before or after the change is applied) or, after it, an answer cut off
    /// half-way through its body.
    pub fault_rate: f64,
    /// Seed of the fault generator: the same seed gives the same sequence of outcomes.
    pub fault_seed: u64,
}

/// One request received by an emulated API (admin requests are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The API name, e.g. `accesscontextmanager`.
    pub api: String,
    /// The HTTP method, e.g. `PATCH`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// When it arrived, in milliseconds since the emulator started (for measuring how long
    /// each step of a client took, and how steps overlapped).
    #[serde(default)]
    pub at_ms: u64,
    /// Whether it only read: GET and HEAD, and the reads Google's APIs take as POST
    /// (see [`is_read`]). A client's "sent nothing" means no record with `read: false`.
    #[serde(default)]
    pub read: bool,
}

impl RequestRecord {
    /// Whether it could change something: not a read (see [`is_read`]).
    pub fn is_mutating(&self) -> bool {
        !self.read
    }
}

/// Whether a request with this method and path only reads. GET and HEAD, and the reads
/// Google's APIs take as POST: `:getIamPolicy`, `:testIamPermissions`, `:getAncestry`,
/// Resource Manager's `organizations:search`, Cloud Logging's `entries:list`, and waiting on an
/// operation (Compute's `operations/NAME/wait`, `:wait`).
///
/// ```
/// use kfsec_emulator::is_read;
/// assert!(is_read("GET", "/compute/v1/projects/kf-dev/global/networks/kf-net"));
/// assert!(is_read("POST", "/v1/projects/kf-dev:getIamPolicy"));
/// assert!(!is_read("POST", "/v1/projects/kf-dev:setIamPolicy"));
/// assert!(is_read("POST", "/v2/entries:list"));
/// assert!(!is_read("PATCH", "/v1/accessPolicies/1/servicePerimeters/KubeflowZone"));
/// ```
pub fn is_read(method: &str, path: &str) -> bool {
    match method {
        "GET" | "HEAD" | "OPTIONS" => true,
        "POST" => {
            [
                ":getIamPolicy",
                ":testIamPermissions",
                ":getAncestry",
                ":wait",
                "/wait",
            ]
            .iter()
            .any(|end| path.ends_with(end))
                || path.ends_with("/organizations:search")
                || path.ends_with("/entries:list")
        }
        _ => false,
    }
}

/// Errors of the emulator itself (not of the APIs it serves).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding a port or writing a file failed.
    #[error("emulator I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Serializing JSON failed.
    #[error("emulator JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A seed image reference (see [`Emulator::start_with_seed_images`]) does not parse.
    #[error("seed image: {0}")]
    SeedImage(String),
}

/// The image references of a seed list (the binary's `--seed-images FILE`): one per line,
/// surrounding whitespace trimmed, blank lines and lines starting with `#` ignored.
pub fn parse_seed_images(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// A running emulator: one loopback HTTP server per API, sharing one in-memory state.
/// Dropping it stops all its servers.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    endpoints: BTreeMap<String, String>,
    stand_ins: BTreeMap<String, String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Binds one port per API on 127.0.0.1 and starts serving. Must be called within a Tokio
    /// runtime; the servers run as tasks of that runtime.
    pub async fn start(options: EmulatorOptions) -> Result<Emulator, EmulatorError> {
        Self::start_with_seed_images(options, Vec::new()).await
    }

    /// Starts as [`Emulator::start`] does, with the registry also holding a small synthetic
    /// single-platform image (an OCI manifest, a config and one layer, with content of its own
    /// so that digests differ) for each image reference of `seed_images`, at start and after a
    /// reset. References are normalized as Docker does (`mysql:8.0.29` is
    /// `docker.io/library/mysql:8.0.29`, `a/b:v1` is `docker.io/a/b:v1`, no tag is `latest`).
    /// A reference by digest (`HOST/PATH@sha256:...`) cannot be made (the content would have
    /// to hash to the digest): its repository gets the synthetic image under the tag
    /// `kfsec-seed` instead, and [`Emulator::seed_stand_ins`] maps the reference to that
    /// image's digest, for a test to substitute. A reference that does not parse is an
    /// [`EmulatorError::SeedImage`].
    pub async fn start_with_seed_images(
        options: EmulatorOptions,
        seed_images: Vec<String>,
    ) -> Result<Emulator, EmulatorError> {
        let seed = crate::state::Seed {
            images: seed_images,
        };
        let mut state = State::seed();
        let stand_ins = state
            .registry
            .seed_images(&seed.images)
            .map_err(EmulatorError::SeedImage)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            kube: Mutex::new(kubernetes::KubeState::seed()),
            log: Mutex::new(Vec::new()),
            seed,
            faults: Mutex::new(Faults::new(options.fault_rate, options.fault_seed)),
            latency: options.latency,
            lro: options.lro,
            started: std::time::Instant::now(),
        });
        let mut routers = Vec::new();
        for (api, handler) in APIS {
            routers.push((*api, server::api_router(shared.clone(), api, *handler)));
        }
        routers.push((admin::API, admin::router(shared.clone())));
        let mut endpoints = BTreeMap::new();
        let mut tasks = Vec::new();
        for (api, router) in routers {
            let listener = server::bind().await?;
            let port = listener.local_addr()?.port();
            endpoints.insert(api.to_string(), format!("http://127.0.0.1:{port}/"));
            tasks.push(server::spawn_server(listener, router));
        }
        tracing::info!(?endpoints, "emulator listening");
        Ok(Emulator {
            shared,
            endpoints,
            stand_ins,
            tasks,
        })
    }

    /// API name -> base URL (`http://127.0.0.1:PORT/`), for every emulated API and `admin`.
    pub fn endpoints(&self) -> &BTreeMap<String, String> {
        &self.endpoints
    }

    /// The base URL of one API, e.g. `endpoint("serviceusage")`.
    pub fn endpoint(&self, api: &str) -> Option<&str> {
        self.endpoints.get(api).map(String::as_str)
    }

    /// For each seed image given by digest (see [`Emulator::start_with_seed_images`]): the
    /// reference as given -> the digest (`sha256:...`) of the synthetic image that stands in
    /// for it, tagged `kfsec-seed` in the reference's repository. Empty without such
    /// references.
    pub fn seed_stand_ins(&self) -> &BTreeMap<String, String> {
        &self.stand_ins
    }

    /// Writes [`Emulator::endpoints`] as a JSON object to `path`.
    pub fn write_endpoints_file(&self, path: &Path) -> Result<(), EmulatorError> {
        let text = serde_json::to_string_pretty(&self.endpoints)?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }

    /// Writes a gcloud configuration directory (use it with `CLOUDSDK_CONFIG=dir`) that sends
    /// every emulated API to this emulator, with credentials, update checks and usage reporting
    /// off and `kf-dev` as the project.
    pub fn write_gcloud_config(&self, dir: &Path) -> Result<(), EmulatorError> {
        gcloud_config::write(dir, &self.endpoints)
    }

    /// Every resource as JSON keyed by API name (as `GET /state` on the admin endpoint).
    pub fn state(&self) -> serde_json::Value {
        let mut st = self.shared.state();
        let mut kube = self.shared.kube();
        st.settle();
        kubernetes::settle(&mut kube, std::time::Instant::now());
        admin::state_json(&st, &kube)
    }

    /// Milliseconds since the emulator started: the clock of [`RequestRecord::at_ms`].
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The request log, oldest first (as `GET /requests` on the admin endpoint).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log().clone()
    }

    /// Restores the seed data and clears the request log and operations.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Makes the next `count` long-running operations of `api` (`"compute"`, `"container"`, ...)
    /// whose description contains `matches` end in an error with `message`, as Google reports a
    /// failed operation. Descriptions are `"<verb> <collection>/<name>"` for Compute (`"insert
    /// networks/kf-net"`) and `"<OPERATION_TYPE> <cluster>"` for GKE (`"CREATE_CLUSTER kf-private"`).
    /// The admin API's `POST operation-failures` does the same.
    pub fn fail_operations(&self, api: &str, matches: &str, message: &str, count: u32) {
        self.shared
            .state()
            .operation_failures
            .push(crate::state::OperationFailure {
                api: api.to_string(),
                matches: matches.to_string(),
                message: message.to_string(),
                remaining: count,
            });
    }

    /// Evaluates attempted calls against the live service perimeters and writes the Policy
    /// Denied entries Google would, as the admin API's `POST access-attempts` does: `attempts`
    /// is that call's JSON list. Answers its `{"decisions": [...]}`, or Google's error body
    /// (`{"error": {...}}`) when an attempt is malformed.
    pub fn access_attempts(&self, attempts: &serde_json::Value) -> serde_json::Value {
        let mut st = self.shared.state();
        crate::vpcsc::evaluate(&mut st, attempts).unwrap_or_else(|e| e.body())
    }

    /// Moves every stored log entry's timestamp `seconds` into the past, as the admin API's
    /// `POST logging/age` does.
    pub fn age_log(&self, seconds: u64) {
        self.shared.state().logging.age(seconds);
    }

    /// Sets the fault rate (`0.0..=1.0`, clamped) and reseeds the fault generator.
    pub fn set_faults(&self, rate: f64, seed: u64) {
        *self.shared.faults() = Faults::new(rate, seed);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kubernetes API has its own lock: it answers while the other APIs' state is held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock)] // on purpose: the lock is held while another API answers
    async fn kubernetes_does_not_wait_for_the_google_apis_lock() {
        let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let url = format!(
            "{}api/v1/namespaces/default",
            em.endpoint("kubernetes").unwrap()
        );
        let held = em.shared.state();
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("answered while the state lock is held");
        assert_eq!(resp.status(), 200);
        drop(held);
        assert_eq!(
            em.requests().last().map(|r| r.api.as_str()),
            Some("kubernetes")
        );
    }
}
