//! Reading Google's audit logs: the Policy Denied entries VPC Service Controls writes for each
//! request a perimeter denies (enforced) or would deny (dry run), and the admin-activity entries
//! of the perimeter's own writes (when its dry run began). Through Cloud Logging v2's
//! `entries:list`, with the filter `gcloud logging read` sends for the same query.

use std::time::SystemTime;

use futures::{Stream, StreamExt as _};
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_logging_v2::client::LoggingServiceV2;
use google_cloud_logging_v2::model::{LogEntry, log_entry::Payload};
use google_cloud_wkt::Timestamp;
use kfsec_core::{Connection, Progress, ResultExt as _, Window};
use serde::Serialize;
use serde_json::Value;

use crate::error::VpcscError;
use crate::evaluate::ViolationReason;

/// The log of Policy Denied audit entries (`LOG_ID(...)` in a filter).
pub const POLICY_LOG: &str = "cloudaudit.googleapis.com/policy";
/// The log of admin-activity audit entries.
pub const ACTIVITY_LOG: &str = "cloudaudit.googleapis.com/activity";
/// The `@type` of the metadata of a VPC Service Controls Policy Denied entry.
pub const VPCSC_METADATA: &str =
    "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata";
/// Entries per page: Cloud Logging's maximum, and what `gcloud logging read` asks for.
pub const PAGE_SIZE: i32 = 1000;
/// The prefix of Access Context Manager's method names in audit entries.
const ACM_METHOD: &str = "google.identity.accesscontextmanager.v1.AccessContextManager.";

/// Which Policy Denied entries to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Which {
    /// Requests a dry-run configuration would deny (`protoPayload.metadata.dryRun=true`):
    /// what enforcing would break.
    DryRun,
    /// Requests the enforced configuration denied.
    Enforced,
    /// Both.
    All,
}

/// What to read: the logs of some projects over a window back from now. Built with
/// [`ViolationQuery::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViolationQuery {
    /// The logs to read: `projects/ID` or `projects/NUMBER` (a perimeter's projects: Google
    /// writes a Policy Denied entry to the log of the project inside the perimeter).
    pub resource_names: Vec<String>,
    /// How far back from now.
    pub since: Window,
    /// Dry-run entries, enforced ones, or both (default [`Which::All`]).
    pub which: Which,
    /// Entries per page (default [`PAGE_SIZE`]).
    pub page_size: i32,
}

impl ViolationQuery {
    /// The Policy Denied entries of `resource_names` over the last `since`, dry-run and
    /// enforced.
    pub fn new(resource_names: impl IntoIterator<Item = impl Into<String>>, since: Window) -> Self {
        Self {
            resource_names: resource_names.into_iter().map(Into::into).collect(),
            since,
            which: Which::All,
            page_size: PAGE_SIZE,
        }
    }

    /// Sets [`ViolationQuery::which`].
    #[must_use]
    pub fn with_which(mut self, which: Which) -> Self {
        self.which = which;
        self
    }

    /// Sets [`ViolationQuery::page_size`] (1 to 1000).
    #[must_use]
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size.clamp(1, PAGE_SIZE);
        self
    }

    /// The filter sent, for a query made at `now`: the same terms, in the same order, as
    /// `gcloud logging read 'LOG_ID("cloudaudit.googleapis.com/policy") AND
    /// protoPayload.metadata."@type"="...VpcServiceControlAuditMetadata"' --freshness=7d`
    /// sends (plus `AND protoPayload.metadata.dryRun=true` for [`Which::DryRun`]; enforced
    /// entries are told apart on this side, as "the field is absent" is not portable filter
    /// syntax).
    pub fn filter(&self, now: SystemTime) -> String {
        let mut filter = format!(
            "timestamp>=\"{}\" AND LOG_ID(\"{POLICY_LOG}\") AND protoPayload.metadata.\"@type\"=\"{VPCSC_METADATA}\"",
            rfc3339_micros(window_start(now, self.since))
        );
        if self.which == Which::DryRun {
            filter.push_str(" AND protoPayload.metadata.dryRun=true");
        }
        filter
    }

    /// Checks the query before any request: at least one log, each `projects/...`,
    /// `folders/...` or `organizations/...`.
    pub fn validate(&self) -> Result<(), VpcscError> {
        let mut errors = kfsec_core::ValidationErrors::default();
        if self.resource_names.is_empty() {
            errors.push(
                "resource_names",
                "name at least one log to read: projects/ID (the perimeter's projects)",
            );
        }
        for (i, name) in self.resource_names.iter().enumerate() {
            let ok = ["projects/", "folders/", "organizations/"].iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            });
            if !ok {
                errors.push(
                    format!("resource_names[{i}]"),
                    format!("{name:?} is not a log's owner: write projects/ID or projects/NUMBER"),
                );
            }
        }
        errors.into_result().map_err(VpcscError::Invalid)
    }
}

/// The start of a window that ends at `now`.
pub(crate) fn window_start(now: SystemTime, since: Window) -> SystemTime {
    now.checked_sub(since.duration())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `2026-11-26T18:52:16.259723Z`: RFC 3339 in UTC with microseconds, as gcloud writes the
/// `timestamp>=` term of `--freshness`.
pub(crate) fn rfc3339_micros(t: SystemTime) -> String {
    let since_epoch = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    let ts = Timestamp::clamp(secs, 0);
    let whole = String::from(ts);
    // `whole` is `YYYY-MM-DDTHH:MM:SSZ`
    let base = whole.trim_end_matches('Z');
    format!("{base}.{:06}Z", since_epoch.subsec_micros())
}

/// A request VPC Service Controls denied, or would deny in dry run: one Policy Denied audit
/// entry, with the fields that matter parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Violation {
    /// When it happened.
    pub time: Timestamp,
    /// The entry's `insertId`.
    pub insert_id: String,
    /// The log it was read from (`projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy`).
    pub log_name: String,
    /// Whether the dry-run configuration denied it (`metadata.dryRun`); `false`: the enforced
    /// one did, and the request failed.
    pub dry_run: bool,
    /// Who called: `authenticationInfo.principalEmail` (empty when Google redacted it).
    pub principal_email: String,
    /// The caller's address: `requestMetadata.callerIp` (a public address, a VM's internal
    /// one, `gce-internal-ip` or `private`), when logged.
    pub caller_ip: Option<String>,
    /// The caller's VPC network (`requestMetadata.callerNetwork`), when it called from one.
    pub caller_network: Option<String>,
    /// The API (`serviceName`).
    pub service: String,
    /// The method (`methodName`).
    pub method: String,
    /// What the request touched: `metadata.resourceNames`, else `resourceName`.
    pub targets: Vec<String>,
    /// `metadata.violationReason`, as logged (`NO_MATCHING_ACCESS_LEVEL`).
    pub reason: String,
    /// The perimeter that denied it (`metadata.securityPolicyInfo.servicePerimeterName`).
    pub perimeter: Option<String>,
    /// Ingress details (`metadata.ingressViolations`): into the perimeter.
    pub ingress: Vec<IngressViolation>,
    /// Egress details (`metadata.egressViolations`): out of the perimeter.
    pub egress: Vec<EgressViolation>,
    /// `metadata.vpcServiceControlsUniqueId`: the id Google's troubleshooter takes.
    pub unique_id: String,
}

/// One `ingressViolations` element: a request into a perimeter from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IngressViolation {
    /// The perimeter entered (`servicePerimeter`).
    pub perimeter: String,
    /// Where the request came from (`source`: a project or a network), when not the internet.
    pub source: Option<String>,
    /// The resource inside (`targetResource`).
    pub target: Option<String>,
}

/// One `egressViolations` element: a request out of a perimeter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EgressViolation {
    /// The perimeter left (`servicePerimeter`).
    pub perimeter: String,
    /// The source inside (`source`).
    pub source: Option<String>,
    /// `Resource` or `Network` (`sourceType`).
    pub source_type: Option<String>,
    /// The resource outside (`targetResource`).
    pub target: Option<String>,
}

impl Violation {
    /// Parses a Policy Denied entry; `None` for an entry that is not one (another payload,
    /// another metadata type).
    pub fn from_entry(entry: &LogEntry) -> Option<Self> {
        let Some(Payload::ProtoPayload(any)) = &entry.payload else {
            return None;
        };
        let payload = serde_json::to_value(any.as_ref()).ok()?;
        let metadata = payload.get("metadata")?;
        if str_at(metadata, &["@type"]) != VPCSC_METADATA {
            return None;
        }
        let targets: Vec<String> = match metadata.get("resourceNames").and_then(Value::as_array) {
            Some(names) if !names.is_empty() => names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => [str_at(&payload, &["resourceName"])]
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        let list = |key: &str| -> Vec<Value> {
            metadata
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Some(Self {
            time: entry.timestamp.unwrap_or_default(),
            insert_id: entry.insert_id.clone(),
            log_name: entry.log_name.clone(),
            dry_run: metadata.get("dryRun").and_then(Value::as_bool) == Some(true),
            principal_email: str_at(&payload, &["authenticationInfo", "principalEmail"])
                .to_string(),
            caller_ip: opt_at(&payload, &["requestMetadata", "callerIp"]),
            caller_network: opt_at(&payload, &["requestMetadata", "callerNetwork"]),
            service: str_at(&payload, &["serviceName"]).to_string(),
            method: str_at(&payload, &["methodName"]).to_string(),
            targets,
            reason: str_at(metadata, &["violationReason"]).to_string(),
            perimeter: opt_at(metadata, &["securityPolicyInfo", "servicePerimeterName"]),
            ingress: list("ingressViolations")
                .iter()
                .map(|v| IngressViolation {
                    perimeter: str_at(v, &["servicePerimeter"]).to_string(),
                    source: opt_at(v, &["source"]),
                    target: opt_at(v, &["targetResource"]),
                })
                .collect(),
            egress: list("egressViolations")
                .iter()
                .map(|v| EgressViolation {
                    perimeter: str_at(v, &["servicePerimeter"]).to_string(),
                    source: opt_at(v, &["source"]),
                    source_type: opt_at(v, &["sourceType"]),
                    target: opt_at(v, &["targetResource"]),
                })
                .collect(),
            unique_id: str_at(metadata, &["vpcServiceControlsUniqueId"]).to_string(),
        })
    }

    /// The violation reason, when it is one the evaluator knows.
    pub fn reason_kind(&self) -> Option<ViolationReason> {
        ViolationReason::parse(&self.reason)
    }

    /// The principal as a member: `serviceAccount:` for Google's service account domains
    /// (`*.gserviceaccount.com`), `user:` otherwise; `None` when the email is missing or
    /// redacted.
    pub fn principal(&self) -> Option<kfsec_core::Member> {
        principal_member(&self.principal_email)
    }

    /// Into the perimeter (ingress), out of it (egress), or neither said.
    pub fn direction(&self) -> Direction {
        if !self.egress.is_empty() {
            Direction::Egress
        } else if !self.ingress.is_empty() {
            Direction::Ingress
        } else {
            match self.reason_kind() {
                Some(ViolationReason::NoMatchingAccessLevel) => Direction::Ingress,
                _ => Direction::Unknown,
            }
        }
    }

    /// Where the request came from: the project or network the ingress or egress details
    /// name, else the caller's network, else `internet` (a public address), else `unknown`.
    pub fn source(&self) -> String {
        let detailed = match self.direction() {
            Direction::Egress => self.egress.iter().find_map(|e| e.source.clone()),
            _ => self.ingress.iter().find_map(|i| i.source.clone()),
        };
        detailed
            .or_else(|| self.caller_network.clone())
            .unwrap_or_else(|| match self.caller_ip.as_deref() {
                Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => "internet".to_string(),
                Some(other) => other.to_string(),
                None => "unknown".to_string(),
            })
    }

    /// The resource the request was denied on: the target the ingress or egress details name,
    /// else the first of [`Violation::targets`].
    pub fn target(&self) -> String {
        let detailed = match self.direction() {
            Direction::Egress => self.egress.iter().find_map(|e| e.target.clone()),
            _ => self.ingress.iter().find_map(|i| i.target.clone()),
        };
        detailed
            .or_else(|| self.targets.first().cloned())
            .unwrap_or_default()
    }
}

/// Which way a denied request crossed the perimeter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// From outside into the perimeter.
    Ingress,
    /// From inside out of it.
    Egress,
    /// The entry does not say.
    Unknown,
}

impl Direction {
    /// `ingress`, `egress` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
            Self::Unknown => "unknown",
        }
    }
}

/// `serviceAccount:` for Google's service account domains, `user:` for other emails.
pub(crate) fn principal_member(email: &str) -> Option<kfsec_core::Member> {
    if email.is_empty() || !email.contains('@') {
        return None;
    }
    let kind = if email.ends_with(".gserviceaccount.com") {
        "serviceAccount"
    } else {
        "user"
    };
    format!("{kind}:{email}").parse().ok()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn opt_at(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// When a perimeter's current dry run began, read from the admin-activity audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DryRunStart {
    /// The write that put the perimeter in dry run (set `useExplicitDryRunSpec`).
    pub time: Timestamp,
    /// Who made it (`authenticationInfo.principalEmail`).
    pub by: String,
    /// The method (`UpdateServicePerimeter`, `CreateServicePerimeter`, ...).
    pub method: String,
}

/// Reads Google's audit logs through Cloud Logging v2: the Policy Denied entries of a
/// perimeter's projects, and the admin-activity entries of its writes. Built with
/// [`AuditLog::new`] or [`AuditLog::from_client`].
///
/// ```no_run
/// # async fn f(conn: kfsec_core::Connection) -> Result<(), kfsec_vpcsc::VpcscError> {
/// use kfsec_vpcsc::{AuditLog, ViolationQuery, ViolationReport};
/// let log = AuditLog::new(&conn).await?;
/// let query = ViolationQuery::new(["projects/kf-dev"], "7d".parse().expect("a window"));
/// let report: ViolationReport = log.report(&query).await?;
/// print!("{}", report.render_text());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AuditLog {
    client: LoggingServiceV2,
    progress: Progress,
    now: Option<SystemTime>,
}

impl AuditLog {
    /// Builds the Cloud Logging client from a connection (API name `logging`).
    pub async fn new(conn: &Connection) -> Result<Self, VpcscError> {
        let client = conn
            .configure("logging", LoggingServiceV2::builder())?
            .build()
            .await
            .map_err(|e| kfsec_core::ConnectionError::Build {
                api: "logging".to_string(),
                source: e.into(),
            })?;
        Ok(Self::from_client(client))
    }

    /// A reader over a client built elsewhere (your own credentials, or `from_stub` mocks).
    /// Retries are the client's own (a connection's clients retry by its [`Policies`](kfsec_core::Policies)).
    pub fn from_client(client: LoggingServiceV2) -> Self {
        Self {
            client,
            progress: Progress::none(),
            now: None,
        }
    }

    /// Sends progress events (pages read) to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Reads as if the time were `now` (windows end there): for tests and replays.
    #[must_use]
    pub fn with_now(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    /// The Policy Denied entries the query selects, newest first, a page at a time: memory
    /// holds one page however many entries match. Entries that are not VPC Service Controls
    /// ones are skipped. The query is checked before any request.
    pub fn violations(
        &self,
        query: &ViolationQuery,
    ) -> impl Stream<Item = Result<Violation, VpcscError>> + Send + 'static {
        let checked = query.validate();
        let pages = self.pages(query);
        let which = query.which;
        futures::stream::iter(checked.err().map(Err))
            .chain(pages.flat_map(move |page| {
                let items: Vec<Result<Violation, VpcscError>> = match page {
                    Ok(entries) => entries
                        .iter()
                        .filter_map(Violation::from_entry)
                        .filter(|v| which != Which::Enforced || !v.dry_run)
                        .map(Ok)
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            }))
            .take_while_ok()
    }

    /// The raw pages of entries (empty when the query is invalid: [`AuditLog::violations`]
    /// reports that).
    ///
    /// The next page is fetched while the caller parses the current one: on the first poll a
    /// task drives the paginator and hands each page over a channel of one, so at most three
    /// pages are alive (the one parsed, the one waiting, the one arriving). The task stops
    /// after the first error (sent as the last item) and when the stream is dropped.
    fn pages(
        &self,
        query: &ViolationQuery,
    ) -> impl Stream<Item = Result<Vec<LogEntry>, VpcscError>> + Send + 'static {
        let valid = query.validate().is_ok();
        let builder = self
            .client
            .list_log_entries()
            .set_resource_names(query.resource_names.clone())
            .set_filter(query.filter(self.now()))
            .set_order_by("timestamp desc")
            .set_page_size(query.page_size);
        let progress = self.progress.clone();
        let paginator = valid.then(|| builder.by_page());
        futures::stream::unfold(
            Prefetch::NotStarted(paginator.map(|p| (p, progress))),
            |state| async move {
                let (mut rx, task) = match state {
                    Prefetch::NotStarted(None) => return None,
                    Prefetch::NotStarted(Some((paginator, progress))) => {
                        let (tx, rx) = tokio::sync::mpsc::channel(1);
                        let task = tokio::spawn(read_pages(paginator, progress, tx));
                        (rx, AbortOnDrop(task))
                    }
                    Prefetch::Running(rx, task) => (rx, task),
                };
                let page = rx.recv().await?;
                Some((page, Prefetch::Running(rx, task)))
            },
        )
    }

    /// Reads every entry the query selects and groups them ([`ViolationReport`](crate::ViolationReport)); memory
    /// grows with the number of groups, not of entries.
    pub async fn report(
        &self,
        query: &ViolationQuery,
    ) -> Result<crate::explain::ViolationReport, VpcscError> {
        query.validate()?;
        let mut report = crate::explain::ViolationReport::new(query);
        let stream = self.violations(query);
        futures::pin_mut!(stream);
        while let Some(v) = stream.next().await {
            report.add(&v?);
        }
        Ok(report.finish())
    }

    /// When the perimeter `perimeter` (`accessPolicies/P/servicePerimeters/NAME`) of the
    /// organization `organization` (`organizations/ID`) last entered dry run and has stayed
    /// there, read from the admin-activity log over the last `lookback` (at most 400 days:
    /// Google keeps admin-activity entries that long). `None` when no write in that window
    /// put it in dry run (or the last one took it out).
    ///
    /// Walking its writes from the newest: one that sets `useExplicitDryRunSpec` to true (an
    /// update whose mask names it, a create, a `replaceAll` that carries it) is a start; one
    /// that sets it to false, deletes the perimeter or commits the policy's dry-run specs ends
    /// the walk. The start is the earliest one before the walk ended: editing the dry-run
    /// spec later does not restart the dry run.
    pub async fn dry_run_start(
        &self,
        organization: &str,
        perimeter: &str,
        lookback: Window,
    ) -> Result<Option<DryRunStart>, VpcscError> {
        let policy = perimeter
            .split("/servicePerimeters/")
            .next()
            .unwrap_or_default()
            .to_string();
        let filter = format!(
            "timestamp>=\"{}\" AND LOG_ID(\"{ACTIVITY_LOG}\") AND protoPayload.serviceName=\"accesscontextmanager.googleapis.com\" AND protoPayload.resourceName:\"{policy}\"",
            rfc3339_micros(window_start(self.now(), lookback))
        );
        let mut paginator = self
            .client
            .list_log_entries()
            .set_resource_names([organization.to_string()])
            .set_filter(filter)
            .set_order_by("timestamp desc")
            .set_page_size(PAGE_SIZE)
            .by_page();
        let mut start: Option<DryRunStart> = None;
        while let Some(page) = paginator.next().await {
            let page = page.context("read the perimeter's admin-activity entries")?;
            for entry in &page.entries {
                match dry_run_effect(entry, perimeter, &policy) {
                    Some(Effect::Starts(s)) => start = Some(s),
                    Some(Effect::Ends) => return Ok(start),
                    None => {}
                }
            }
        }
        Ok(start)
    }
}

/// The state of [`AuditLog::pages`]: the paginator before the first poll, then the channel
/// its task fills.
enum Prefetch<P> {
    NotStarted(Option<(P, Progress)>),
    Running(
        tokio::sync::mpsc::Receiver<Result<Vec<LogEntry>, VpcscError>>,
        AbortOnDrop,
    ),
}

/// Stops the page task when the stream that reads it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads every page into `tx`, reporting progress; stops after the first error (sent) or when
/// the reader is gone.
async fn read_pages<P>(
    mut paginator: P,
    progress: Progress,
    tx: tokio::sync::mpsc::Sender<Result<Vec<LogEntry>, VpcscError>>,
) where
    P: google_cloud_gax::paginator::Paginator<
            google_cloud_logging_v2::model::ListLogEntriesResponse,
            google_cloud_logging_v2::Error,
        >,
{
    let (mut pages, mut entries) = (0usize, 0usize);
    while let Some(page) = paginator.next().await {
        let item = match page {
            Ok(page) => {
                pages += 1;
                entries += page.entries.len();
                progress.emit(kfsec_core::ProgressEvent::Items {
                    step: "read Policy Denied entries".to_string(),
                    done: entries,
                    total: entries,
                });
                Ok(page.entries)
            }
            Err(e) => Err(VpcscError::Cloud(kfsec_core::CloudError::new(
                format!("read the Policy Denied entries (page {})", pages + 1),
                e,
            ))),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// What one admin-activity entry did to the perimeter's dry run.
enum Effect {
    Starts(DryRunStart),
    Ends,
}

fn dry_run_effect(entry: &LogEntry, perimeter: &str, policy: &str) -> Option<Effect> {
    let Some(Payload::ProtoPayload(any)) = &entry.payload else {
        return None;
    };
    let payload = serde_json::to_value(any.as_ref()).ok()?;
    if payload
        .pointer("/status/code")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        return None;
    }
    let method = str_at(&payload, &["methodName"]);
    let short = method.strip_prefix(ACM_METHOD).unwrap_or(method);
    let resource = str_at(&payload, &["resourceName"]);
    let request = payload.get("request").cloned().unwrap_or(Value::Null);
    let start = || {
        Some(Effect::Starts(DryRunStart {
            time: entry.timestamp.unwrap_or_default(),
            by: str_at(&payload, &["authenticationInfo", "principalEmail"]).to_string(),
            method: short.to_string(),
        }))
    };
    let explicit = |p: &Value| p.get("useExplicitDryRunSpec").and_then(Value::as_bool);
    match short {
        "CreateServicePerimeter" if resource == perimeter || name_of(&request) == perimeter => {
            if explicit(&request["servicePerimeter"]) == Some(true) {
                start()
            } else {
                Some(Effect::Ends)
            }
        }
        "UpdateServicePerimeter" if resource == perimeter => {
            let mask = update_mask(&request);
            let names_it = mask
                .iter()
                .any(|m| m == "useExplicitDryRunSpec" || m == "use_explicit_dry_run_spec");
            if !names_it {
                return None;
            }
            if explicit(&request["servicePerimeter"]) == Some(true) {
                start()
            } else {
                Some(Effect::Ends)
            }
        }
        "DeleteServicePerimeter" if resource == perimeter => Some(Effect::Ends),
        "CommitServicePerimeters" if resource == policy => Some(Effect::Ends),
        "ReplaceServicePerimeters" if resource == policy => {
            let ours = request
                .get("servicePerimeters")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find(|p| p["name"].as_str() == Some(perimeter)));
            match ours.map(explicit) {
                Some(Some(true)) => start(),
                _ => Some(Effect::Ends),
            }
        }
        _ => None,
    }
}

fn name_of(request: &Value) -> &str {
    request
        .pointer("/servicePerimeter/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An update mask as logged: a string `"a,b"` or `{"paths": [...]}`.
fn update_mask(request: &Value) -> Vec<String> {
    match request.get("updateMask") {
        Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Some(Value::Object(o)) => o
            .get("paths")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Stops a stream after its first error (that error included).
trait TakeWhileOk: Stream + Sized {
    fn take_while_ok(self) -> futures::stream::BoxStream<'static, Self::Item>;
}

impl<S, T> TakeWhileOk for S
where
    S: Stream<Item = Result<T, VpcscError>> + Send + 'static,
    T: Send + 'static,
{
    fn take_while_ok(self) -> futures::stream::BoxStream<'static, Self::Item> {
        self.scan(false, |failed, item| {
            let out = if *failed {
                None
            } else {
                *failed = item.is_err();
                Some(item)
            };
            futures::future::ready(out)
        })
        .boxed()
    }
}
