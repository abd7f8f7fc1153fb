//! The in-memory state shared by every API, with its seed data and long-running operations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// Seed time of the seeded resources.
pub(crate) const SEED_TIME: &str = "2024-01-01T00:00:00Z";

/// An organization.
#[derive(Debug, Clone)]
pub(crate) struct Organization {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) customer_id: String,
}

/// A project.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) number: String,
    pub(crate) parent: String,
    pub(crate) display_name: String,
}

/// An access policy with its levels and perimeters (stored as normalized JSON).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) id: String,
    pub(crate) parent: String,
    pub(crate) title: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) etag: String,
    pub(crate) levels: BTreeMap<String, Value>,
    pub(crate) perimeters: BTreeMap<String, Value>,
}

impl Policy {
    pub(crate) fn name(&self) -> String {
        format!("accessPolicies/{}", self.id)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name(),
            "parent": self.parent,
            "title": self.title,
            "etag": self.etag,
        });
        if !self.scopes.is_empty() {
            v["scopes"] = json!(self.scopes);
        }
        v
    }

    /// Full names of the policy's access levels.
    pub(crate) fn level_names(&self) -> BTreeSet<String> {
        self.levels
            .keys()
            .map(|short| format!("accessPolicies/{}/accessLevels/{short}", self.id))
            .collect()
    }
}

/// A long-running operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(crate) api: &'static str,
    pub(crate) name: String,
    pub(crate) created: Instant,
    pub(crate) lro: Duration,
    pub(crate) metadata: Value,
    pub(crate) response: Value,
    /// The access policy this operation writes, for ACM's per-policy serialization.
    pub(crate) policy: Option<String>,
}

impl Operation {
    pub(crate) fn done(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= self.lro
    }

    pub(crate) fn to_json(&self, now: Instant) -> Value {
        let done = self.done(now);
        let mut v = json!({"name": self.name, "metadata": self.metadata, "done": done});
        if done {
            v["response"] = self.response.clone();
        }
        v
    }
}

/// A rule making matching long-running operations fail (see
/// [`State::take_operation_failure`]). As JSON (admin `POST operation-failures`):
/// `{"api":"compute","match":"insert networks/kf-net","message":"...","count":1}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct OperationFailure {
    /// The API name, e.g. `compute`.
    pub(crate) api: String,
    /// A substring of the operation's description.
    #[serde(rename = "match")]
    pub(crate) matches: String,
    /// The error message the operation ends with.
    pub(crate) message: String,
    /// How many more operations fail.
    #[serde(rename = "count", default = "one")]
    pub(crate) remaining: u32,
}

fn one() -> u32 {
    1
}

/// Everything the emulator knows.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) organizations: Vec<Organization>,
    pub(crate) projects: Vec<Project>,
    /// Keyed by numeric policy id.
    pub(crate) policies: BTreeMap<String, Policy>,
    /// Enabled services by project number.
    pub(crate) enabled: BTreeMap<String, BTreeSet<String>>,
    pub(crate) operations: BTreeMap<String, Operation>,
    pub(crate) counter: u64,
    /// Armed operation failures, oldest first.
    pub(crate) operation_failures: Vec<OperationFailure>,
    /// Cloud DNS zones, record sets and changes.
    pub(crate) dns: crate::dns::DnsState,
    /// Compute Engine networks, subnetworks, routes, firewall rules and operations.
    pub(crate) compute: crate::compute::ComputeState,
    /// GKE clusters and operations.
    pub(crate) container: crate::container::ContainerState,
    /// IAM service accounts.
    pub(crate) iam: crate::iam::IamState,
    /// Each project's IAM policy, by project id.
    pub(crate) iam_policies: BTreeMap<String, crate::resourcemanager::IamPolicy>,
    /// The OCI registry's blobs, repositories and upload sessions.
    pub(crate) registry: crate::registry::RegistryState,
    /// Cloud Build builds.
    pub(crate) cloudbuild: crate::cloudbuild::CloudBuildState,
    /// IAP policies and settings.
    pub(crate) iap: crate::iap::IapState,
    /// Cloud Logging entries (audit entries the emulator writes).
    pub(crate) logging: crate::logging::LoggingState,
}

impl State {
    /// The seed data.
    pub(crate) fn seed() -> Self {
        Self {
            organizations: vec![Organization {
                id: "123456789".into(),
                display_name: "example.com".into(),
                customer_id: "C0xxxxxxx".into(),
            }],
            projects: vec![Project {
                id: "kf-dev".into(),
                number: "123456789012".into(),
                parent: "organizations/123456789".into(),
                display_name: "kf-dev".into(),
            }],
            policies: BTreeMap::new(),
            enabled: BTreeMap::new(),
            operations: BTreeMap::new(),
            counter: 0,
            dns: crate::dns::DnsState::default(),
            compute: crate::compute::ComputeState::default(),
            container: crate::container::ContainerState::new(),
            iam: crate::iam::IamState::default(),
            iam_policies: BTreeMap::from([(
                "kf-dev".to_string(),
                crate::resourcemanager::IamPolicy::seed(),
            )]),
            operation_failures: Vec::new(),
            registry: crate::registry::RegistryState::seed(),
            cloudbuild: crate::cloudbuild::CloudBuildState::default(),
            iap: crate::iap::IapState::default(),
            logging: crate::logging::LoggingState::default(),
        }
    }

    /// Brings time-driven effects up to date: build steps whose time has come run against the
    /// registry. Called before each request is handled and before the state is read.
    pub(crate) fn settle(&mut self) {
        let now = Instant::now();
        crate::cloudbuild::settle(self, now);
    }

    /// Whether the operation of `api` described by `description` (for example
    /// `"insert networks/kf-net"` or `"CREATE_CLUSTER kf-private"`) must fail, and with which
    /// message. Each match uses up one of the rule's count.
    pub(crate) fn take_operation_failure(
        &mut self,
        api: &str,
        description: &str,
    ) -> Option<String> {
        let rule = self
            .operation_failures
            .iter_mut()
            .find(|r| r.api == api && r.remaining > 0 && description.contains(&r.matches))?;
        rule.remaining -= 1;
        let message = rule.message.clone();
        self.operation_failures.retain(|r| r.remaining > 0);
        Some(message)
    }

    /// A fresh sequence number.
    pub(crate) fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A fresh etag.
    pub(crate) fn next_etag(&mut self) -> String {
        let mut x = self.next().wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", x ^ (x >> 31))
    }

    /// Looks a project up by id, number or `projects/X`.
    pub(crate) fn project(&self, key: &str) -> Option<&Project> {
        let key = key.strip_prefix("projects/").unwrap_or(key);
        self.projects
            .iter()
            .find(|p| p.id == key || p.number == key)
    }

    /// Looks an organization up by id or `organizations/ID`.
    pub(crate) fn organization(&self, key: &str) -> Option<&Organization> {
        let key = key.strip_prefix("organizations/").unwrap_or(key);
        self.organizations.iter().find(|o| o.id == key)
    }

    /// Records a new operation and returns its JSON.
    pub(crate) fn new_operation(
        &mut self,
        api: &'static str,
        name: String,
        lro: Duration,
        metadata: Value,
        response: Value,
        policy: Option<String>,
    ) -> Value {
        let op = Operation {
            api,
            name: name.clone(),
            created: Instant::now(),
            lro,
            metadata,
            response,
            policy,
        };
        let v = op.to_json(Instant::now());
        self.operations.insert(name, op);
        v
    }

    /// `GET /v1/operations/...` for one API.
    pub(crate) fn get_operation(&self, api: &str, name: &str) -> ApiResult<Value> {
        self.operations
            .get(name)
            .filter(|op| op.api == api)
            .map(|op| op.to_json(Instant::now()))
            .ok_or_else(|| ApiError::not_found(format!("Operation '{name}' not found.")))
    }

    /// True while an operation on `policy` is still running.
    pub(crate) fn policy_busy(&self, policy: &str) -> bool {
        let now = Instant::now();
        self.operations
            .values()
            .any(|op| op.policy.as_deref() == Some(policy) && !op.done(now))
    }
}

/// What the state is made from, at start and on reset: the seed data plus the registry's
/// extra seed images.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seed {
    /// Image references the registry also holds a synthetic image for.
    pub(crate) images: Vec<String>,
}

impl Seed {
    /// A fresh state, with the seed images.
    pub(crate) fn state(&self) -> State {
        let mut st = State::seed();
        // The references were checked when the emulator started.
        let _ = st.registry.seed_images(&self.images);
        st
    }
}

/// Per-request settings handed to API handlers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env {
    /// How long new operations take to become done.
    pub(crate) lro: Duration,
}
