//! The Cloud Build backend (`images.backend: cloudbuild`): the copies run in Google's builders,
//! one step per image, all steps of a build at once, for a machine that cannot reach the
//! destination registry and for thousands of images.
//!
//! Each step runs crane (`gcr.io/go-containerregistry/crane:debug`):
//!
//! ```text
//! crane copy 'SOURCE' 'MIRROR' && crane digest 'MIRROR' > "$BUILDER_OUTPUT/output"
//! ```
//!
//! `crane copy` copies an index with every platform and keeps every digest; the digest it
//! writes to the step's output comes back in the build's `results.buildStepOutputs`, so each
//! image gets its own result. Steps are `allowFailure`, so one missing image does not cancel
//! the others. A build's timeout is 10 minutes plus 2 per image unless
//! `images.cloudbuild.timeout_seconds` says otherwise: the guide's builds hit Cloud Build's
//! 10-minute default. Each build carries a tag naming this run and its part, so that a
//! submission whose answer was lost is found again rather than submitted twice.

use std::time::{Duration, Instant};

use google_cloud_build_v1::client::CloudBuild;
use google_cloud_build_v1::model::{
    Build, BuildOperationMetadata, BuildOptions, BuildStep, build::Status,
};
use kfsec_core::{Connection, Policies, Progress, ProgressEvent, RetryDecision};

use crate::spec::{CloudBuildOptions, WantedImage};

/// What one Cloud Build step reported for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Copied; the mirror's manifest digest.
    Copied {
        /// `sha256:...`.
        digest: String,
    },
    /// The step failed (or never ran); why, with the build to look at.
    Failed {
        /// What Cloud Build said, and where its log is.
        message: String,
    },
}

/// Errors of the backend as a whole (a build that could not be submitted or followed): the
/// source of [`crate::MirrorError::CloudBuild`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudBuildError {
    /// Building the client failed.
    #[error(transparent)]
    Connection(#[from] kfsec_core::ConnectionError),
    /// A call failed.
    #[error("Cloud Build: {action}: {source}")]
    Call {
        /// What was being done.
        action: String,
        /// The SDK's error.
        #[source]
        source: google_cloud_build_v1::Error,
    },
    /// A build did not finish in time.
    #[error(
        "Cloud Build: build {id} did not finish within {waited:?} (its timeout is {timeout:?}); see {log_url}"
    )]
    Deadline {
        /// The build's id.
        id: String,
        /// How long kfsec waited.
        waited: Duration,
        /// The build's own timeout.
        timeout: Duration,
        /// Its log.
        log_url: String,
    },
    /// The answer made no sense.
    #[error("Cloud Build: {0}")]
    Protocol(String),
}

impl CloudBuildError {
    /// What kind of failure it is (see [`crate::MirrorError::kind`]).
    pub fn kind(&self) -> kfsec_core::ErrorKind {
        match self {
            Self::Connection(e) => e.kind(),
            Self::Call { source, .. } => kfsec_core::ErrorKind::of(source),
            Self::Deadline { .. } => kfsec_core::ErrorKind::Timeout,
            Self::Protocol(_) => kfsec_core::ErrorKind::BadResponse,
        }
    }
}

/// The timeout of a build of `images` images.
pub fn timeout_for(images: usize, options: &CloudBuildOptions) -> Duration {
    Duration::from_secs(
        options.timeout_seconds.unwrap_or_else(|| {
            (600 + 120 * images as u64).min(crate::spec::MAX_BUILD_TIMEOUT_SECONDS)
        }),
    )
}

/// The script of one step (after Cloud Build turns `$$` into `$`).
fn script(image: &WantedImage) -> String {
    // References never hold quotes, spaces or `$` (the grammar forbids them), so single
    // quotes are enough; `$$` is Cloud Build's escape for a literal `$`.
    format!(
        "crane copy '{src}' '{dst}' && crane digest '{dst}' > \"$$BUILDER_OUTPUT/output\"",
        src = image.source,
        dst = image.mirror
    )
}

/// The builds that mirror `images`: `images_per_build` steps each, all running at once, each
/// tagged `kfsec-mirror`, `run-<run>` and `part-<n>`.
pub fn builds_for(images: &[WantedImage], options: &CloudBuildOptions, run: &str) -> Vec<Build> {
    images
        .chunks(options.images_per_build.max(1))
        .enumerate()
        .map(|(part, chunk)| {
            let steps = chunk.iter().enumerate().map(|(i, image)| {
                BuildStep::new()
                    .set_id(format!("copy-{i}"))
                    .set_name(options.crane_image.clone())
                    .set_entrypoint("sh")
                    .set_args(["-c".to_string(), script(image)])
                    .set_wait_for(["-"])
                    .set_allow_failure(true)
            });
            let mut build = Build::new()
                .set_steps(steps)
                .set_timeout(
                    google_cloud_wkt::Duration::try_from(timeout_for(chunk.len(), options))
                        .unwrap_or_default(),
                )
                .set_tags([
                    "kfsec-mirror".to_string(),
                    format!("run-{run}"),
                    format!("part-{part}"),
                ]);
            if let Some(machine) = &options.machine_type {
                build = build.set_options(BuildOptions::new().set_machine_type(machine.as_str()));
            }
            build
        })
        .collect()
}

/// Runs mirror builds and reads their results.
#[derive(Debug, Clone)]
pub struct CloudBuildBackend {
    client: CloudBuild,
    /// `projects/P/locations/L`, as gcloud names builds.
    parent: String,
    policies: Policies,
    progress: Progress,
    /// Tags this run's builds (`run-<run>`), so a lost submission is found again.
    run: String,
}

impl CloudBuildBackend {
    /// A backend for `project` in `location` (`global`, or a region), with the connection's
    /// `cloudbuild` endpoint and credentials.
    pub async fn new(
        conn: &Connection,
        project: &str,
        location: &str,
    ) -> Result<Self, CloudBuildError> {
        let client = conn
            .configure("cloudbuild", CloudBuild::builder())?
            .build()
            .await
            .map_err(|e| kfsec_core::ConnectionError::Build {
                api: "cloudbuild".into(),
                source: e.into(),
            })?;
        Ok(Self::from_client(
            client,
            project,
            location,
            conn.policies().clone(),
        ))
    }

    /// A backend over a client built elsewhere (for example a `from_stub` mock).
    pub fn from_client(
        client: CloudBuild,
        project: &str,
        location: &str,
        policies: Policies,
    ) -> Self {
        Self {
            client,
            parent: format!("projects/{project}/locations/{location}"),
            policies,
            progress: Progress::none(),
            run: run_id(),
        }
    }

    /// Names this run (default: random), which tags its builds `run-<run>`.
    pub fn with_run_id(mut self, run: impl Into<String>) -> Self {
        self.run = run.into();
        self
    }

    /// Sends progress events (one step per build, waiting with the build's status).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Mirrors `images`: submits the builds, waits for them all, and gives one result per
    /// image, in order. An error of the backend (a build that could not be submitted) fails
    /// the images of that build only.
    pub async fn mirror(
        &self,
        images: &[WantedImage],
        options: &CloudBuildOptions,
    ) -> Vec<StepResult> {
        let builds = builds_for(images, options, &self.run);
        let sizes: Vec<usize> = images
            .chunks(options.images_per_build.max(1))
            .map(<[WantedImage]>::len)
            .collect();
        let outcomes = futures::future::join_all(
            builds
                .into_iter()
                .enumerate()
                .map(|(part, build)| self.run_build(build, part, sizes.len())),
        )
        .await;
        outcomes
            .into_iter()
            .zip(sizes)
            .flat_map(|(outcome, n)| match outcome {
                Ok(build) => step_results(&build, n),
                Err(e) => vec![
                    StepResult::Failed {
                        message: e.to_string()
                    };
                    n
                ],
            })
            .collect()
    }

    /// Submits one build (or finds it, when an earlier submission's answer was lost) and waits
    /// until it is done.
    async fn run_build(
        &self,
        build: Build,
        part: usize,
        parts: usize,
    ) -> Result<Build, CloudBuildError> {
        let step = if parts == 1 {
            "mirror images with Cloud Build".to_string()
        } else {
            format!(
                "mirror images with Cloud Build (build {} of {parts})",
                part + 1
            )
        };
        self.progress.started(&step);
        let result = self.submit_and_wait(&step, build).await;
        self.progress.finished(&step, result.is_ok());
        result
    }

    async fn submit_and_wait(&self, step: &str, build: Build) -> Result<Build, CloudBuildError> {
        let timeout = build
            .timeout
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::from_secs(600));
        let id = self.submit(step, build).await?;
        // Queueing comes on top of the build's own timeout.
        let deadline = timeout + Duration::from_secs(30 * 60);
        let started = Instant::now();
        let backoff = self.policies.poll_backoff;
        let mut attempt = 0u32;
        loop {
            let current = kfsec_core::retry::retry(
                self.policies.rpc_attempts.max(1),
                self.policies.rpc_backoff,
                |e: &google_cloud_build_v1::Error| transient(e),
                |_| {
                    self.client
                        .get_build()
                        .set_name(format!("{}/builds/{id}", self.parent))
                        .send()
                },
            )
            .await
            .map_err(|source| CloudBuildError::Call {
                action: format!("read build {id}"),
                source,
            })?;
            if is_final(&current.status) {
                return Ok(current);
            }
            let elapsed = started.elapsed();
            if elapsed > deadline {
                return Err(CloudBuildError::Deadline {
                    id,
                    waited: elapsed,
                    timeout,
                    log_url: current.log_url.clone(),
                });
            }
            let done = current.steps.iter().filter(|s| is_final(&s.status)).count();
            self.progress.emit(ProgressEvent::Waiting {
                step: step.to_string(),
                operation: current.name.clone(),
                status: Some(format!(
                    "{}, {done} of {} images",
                    current.status.name().unwrap_or("UNKNOWN"),
                    current.steps.len()
                )),
                elapsed,
            });
            attempt += 1;
            tokio::time::sleep(backoff.delay(attempt)).await;
        }
    }

    /// Creates the build and returns its id. When the call fails in a way that leaves it
    /// unknown whether the build was created (a dropped connection, a 503), the run's tags
    /// find it before it is submitted again.
    async fn submit(&self, step: &str, build: Build) -> Result<String, CloudBuildError> {
        let attempts = self.policies.rpc_attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                if let Some(id) = self.find(&build.tags).await? {
                    return Ok(id);
                }
                tokio::time::sleep(self.policies.rpc_backoff.delay(attempt - 1)).await;
            }
            match self
                .client
                .create_build()
                .set_parent(self.parent.clone())
                .set_build(build.clone())
                .send()
                .await
            {
                Ok(operation) => {
                    let metadata = operation
                        .metadata
                        .as_ref()
                        .map(|m| m.to_msg::<BuildOperationMetadata>())
                        .transpose()
                        .map_err(|e| {
                            CloudBuildError::Protocol(format!(
                                "the operation's metadata is not a build: {e}"
                            ))
                        })?;
                    let id = metadata
                        .and_then(|m| m.build)
                        .map(|b| b.id)
                        .filter(|id| !id.is_empty())
                        .ok_or_else(|| {
                            CloudBuildError::Protocol(format!(
                                "operation {} names no build",
                                operation.name
                            ))
                        })?;
                    return Ok(id);
                }
                Err(e) if transient(&e) == RetryDecision::Retry => {
                    self.progress.emit(ProgressEvent::Retrying {
                        step: step.to_string(),
                        attempt,
                        reason: e.to_string(),
                    });
                    last = Some(e);
                }
                Err(source) => {
                    return Err(CloudBuildError::Call {
                        action: "submit a build".into(),
                        source,
                    });
                }
            }
        }
        Err(CloudBuildError::Call {
            action: format!("submit a build ({attempts} attempts)"),
            source: last
                .unwrap_or_else(|| google_cloud_build_v1::Error::deser("no attempt was made")),
        })
    }

    /// A build of this run and part, if one was created.
    async fn find(&self, tags: &[String]) -> Result<Option<String>, CloudBuildError> {
        let filter = tags
            .iter()
            .map(|t| format!("tags=\"{t}\""))
            .collect::<Vec<_>>()
            .join(" AND ");
        let listed = self
            .client
            .list_builds()
            .set_parent(self.parent.clone())
            .set_filter(filter)
            .send()
            .await;
        match listed {
            Ok(list) => Ok(list
                .builds
                .into_iter()
                .find(|b| tags.iter().all(|t| b.tags.contains(t)))
                .map(|b| b.id)),
            Err(e) if transient(&e) == RetryDecision::Retry => Ok(None),
            Err(source) => Err(CloudBuildError::Call {
                action: "list this run's builds".into(),
                source,
            }),
        }
    }
}

/// A short id for this run's tags.
fn run_id() -> String {
    use rand::Rng as _;
    let n: u64 = rand::thread_rng().r#gen();
    format!("{n:016x}")
}

fn is_final(status: &Status) -> bool {
    !matches!(
        status,
        Status::Unknown | Status::Pending | Status::Queued | Status::Working
    )
}

fn transient(e: &google_cloud_build_v1::Error) -> RetryDecision {
    let status = e.http_status_code();
    if e.is_io() || e.is_timeout() || matches!(status, Some(429) | Some(500..=599)) {
        RetryDecision::Retry
    } else {
        RetryDecision::Stop
    }
}

/// One result per step of a finished build (`n` steps expected).
pub fn step_results(build: &Build, n: usize) -> Vec<StepResult> {
    let outputs = build
        .results
        .as_ref()
        .map(|r| r.build_step_outputs.as_slice())
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            let step = build.steps.get(i);
            let status = step.map(|s| &s.status);
            let digest = outputs
                .get(i)
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|d| d.starts_with("sha256:") && d.len() == 71);
            match (status, digest) {
                (Some(Status::Success), Some(digest)) => StepResult::Copied { digest },
                (Some(Status::Success), None) => StepResult::Failed {
                    message: format!(
                        "step {i} of build {} succeeded but wrote no digest; see {}",
                        build.id, build.log_url
                    ),
                },
                (status, _) => StepResult::Failed {
                    message: format!(
                        "step {i} of build {} ended {}{}; see {}",
                        build.id,
                        status.and_then(|s| s.name()).unwrap_or("without running"),
                        if build.status_detail.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", build.status_detail)
                        },
                        build.log_url
                    ),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod wire_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn wanted(n: usize) -> Vec<WantedImage> {
        let sources: Vec<String> = (0..n).map(|i| format!("quay.io/a/img{i}:v1")).collect();
        let spec: Spec = yaml_serde::from_str(&format!(
            "project: kf-dev\nimages:\n  destination: us-docker.pkg.dev/kf-dev/m\n  sources: {}\n",
            serde_json::to_string(&sources).unwrap()
        ))
        .unwrap();
        spec.wanted().unwrap().images
    }

    #[test]
    fn builds_are_split_and_timed() {
        let options = CloudBuildOptions {
            images_per_build: 2,
            ..CloudBuildOptions::default()
        };
        let builds = builds_for(&wanted(5), &options, "r1");
        assert_eq!(
            builds.iter().map(|b| b.steps.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(builds[2].tags, ["kfsec-mirror", "run-r1", "part-2"]);
        assert_eq!(timeout_for(2, &options), Duration::from_secs(840));
        assert_eq!(
            timeout_for(10_000, &options),
            Duration::from_secs(crate::spec::MAX_BUILD_TIMEOUT_SECONDS)
        );
        let step = &builds[0].steps[1];
        assert_eq!(step.wait_for, ["-"]);
        assert!(step.allow_failure);
        assert_eq!(
            step.args[1],
            "crane copy 'quay.io/a/img1:v1' 'us-docker.pkg.dev/kf-dev/m/quay.io/a/img1:v1' && crane digest 'us-docker.pkg.dev/kf-dev/m/quay.io/a/img1:v1' > \"$$BUILDER_OUTPUT/output\""
        );
    }

    #[test]
    fn results_per_step() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let build = Build::new()
            .set_id("b1")
            .set_log_url("https://console/b1")
            .set_steps([
                BuildStep::new().set_status(Status::Success),
                BuildStep::new().set_status(Status::Failure),
                BuildStep::new().set_status(Status::Success),
            ])
            .set_results(
                google_cloud_build_v1::model::Results::new().set_build_step_outputs([
                    bytes::Bytes::from(format!("{digest}\n")),
                    bytes::Bytes::new(),
                    bytes::Bytes::new(),
                ]),
            );
        let r = step_results(&build, 4);
        assert_eq!(r[0], StepResult::Copied { digest });
        assert!(
            matches!(&r[1], StepResult::Failed { message } if message.contains("FAILURE") && message.contains("https://console/b1"))
        );
        assert!(matches!(&r[2], StepResult::Failed { message } if message.contains("no digest")));
        assert!(
            matches!(&r[3], StepResult::Failed { message } if message.contains("without running"))
        );
    }
}
