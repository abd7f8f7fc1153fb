//! A dependency graph of steps, run with every independent branch at once.
//!
//! A step starts as soon as every step it needs has succeeded; a failed step stops only what
//! depends on it (directly or not), and the result says why each skipped step did not run.
//! Steps run as futures polled together on the caller's task, so they may borrow the caller's
//! state; the work they do is waiting on the network, not the CPU.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::error::StageError;

/// What a step returns when it succeeds: a one-line summary and its report lines.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// One line for the summary (`3 created, 1 unchanged`).
    pub summary: String,
    /// What it did, resource by resource.
    pub report: kfsec_core::Report,
}

type Run<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<StepOutput, StageError>> + Send + 'a>;

/// One step: an id, a title for people, the ids it needs, and the work.
pub struct Step<'a> {
    /// A short stable id (`perimeter`, `cluster`).
    pub id: &'static str,
    /// What it does, for people.
    pub title: String,
    /// The ids of the steps that must succeed first.
    pub needs: Vec<&'static str>,
    run: Run<'a>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("id", &self.id)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

impl<'a> Step<'a> {
    /// A step that runs `run` once the steps in `needs` have succeeded.
    pub fn new<F>(
        id: &'static str,
        title: impl Into<String>,
        needs: &[&'static str],
        run: F,
    ) -> Self
    where
        F: FnOnce() -> BoxFuture<'a, Result<StepOutput, StageError>> + Send + 'a,
    {
        Self {
            id,
            title: title.into(),
            needs: needs.to_vec(),
            run: Box::new(run),
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum StepState {
    /// It succeeded.
    Done {
        /// Its summary line.
        summary: String,
    },
    /// It failed.
    Failed {
        /// The error, with what to do next (the typed error is [`StepResult::error`]).
        error: String,
    },
    /// It did not run.
    Skipped {
        /// Why (`cluster failed`).
        reason: String,
    },
}

/// A step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Its id.
    pub id: &'static str,
    /// Its title.
    pub title: String,
    /// The ids of the steps it needed.
    pub needs: Vec<&'static str>,
    /// How it ended.
    #[serde(flatten)]
    pub state: StepState,
    /// When it started and ended, from the start of the run (`None` when skipped).
    pub span: Option<(Duration, Duration)>,
    /// What it did.
    #[serde(skip)]
    pub report: kfsec_core::Report,
    /// Why it failed, typed (the crate's own error, to match on), when it failed.
    #[serde(skip)]
    pub error: Option<std::sync::Arc<StageError>>,
}

/// A graph of steps that cannot run: a bug in the code that built it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two steps have the same id.
    #[error("two steps share the id {0}")]
    DuplicateId(&'static str),
    /// A step needs an id that is not a step.
    #[error("step {step} needs {need}, which is not a step")]
    UnknownNeed {
        /// The step.
        step: &'static str,
        /// What it needs.
        need: &'static str,
    },
    /// The needs form a cycle.
    #[error("the steps' needs form a cycle through {0}")]
    Cycle(&'static str),
}

/// Checks that every need names a step and that there is no cycle.
pub fn check(steps: &[Step<'_>]) -> Result<(), GraphError> {
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for s in steps {
        if !ids.insert(s.id) {
            return Err(GraphError::DuplicateId(s.id));
        }
    }
    for s in steps {
        for n in &s.needs {
            if !ids.contains(n) {
                return Err(GraphError::UnknownNeed {
                    step: s.id,
                    need: n,
                });
            }
        }
    }
    // Kahn: every step must become ready.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while done.len() < steps.len() {
        let ready: Vec<&str> = steps
            .iter()
            .filter(|s| !done.contains(s.id) && s.needs.iter().all(|n| done.contains(n)))
            .map(|s| s.id)
            .collect();
        if ready.is_empty() {
            let stuck = steps
                .iter()
                .map(|s| s.id)
                .find(|id| !done.contains(id))
                .unwrap_or_default();
            return Err(GraphError::Cycle(stuck));
        }
        done.extend(ready);
    }
    Ok(())
}

/// Runs the steps, each as soon as what it needs has succeeded, and returns their results in
/// the order given. `on_event` hears each start and end.
pub async fn run<'a>(
    steps: Vec<Step<'a>>,
    on_event: impl FnMut(&str, Option<&StepState>),
) -> Result<Vec<StepResult>, GraphError> {
    run_with(steps, usize::MAX, on_event).await
}

/// [`run`] with at most `parallel` steps at a time (1: one after another, in the order
/// given, as a script would run them).
pub async fn run_with<'a>(
    steps: Vec<Step<'a>>,
    parallel: usize,
    mut on_event: impl FnMut(&str, Option<&StepState>),
) -> Result<Vec<StepResult>, GraphError> {
    check(&steps)?;
    let start = Instant::now();
    let order: Vec<&'static str> = steps.iter().map(|s| s.id).collect();
    let titles: BTreeMap<&'static str, String> =
        steps.iter().map(|s| (s.id, s.title.clone())).collect();
    let needs: BTreeMap<&'static str, Vec<&'static str>> =
        steps.iter().map(|s| (s.id, s.needs.clone())).collect();
    let parallel = parallel.max(1);
    let mut pending: BTreeMap<&'static str, Step<'a>> =
        steps.into_iter().map(|s| (s.id, s)).collect();
    let mut results: BTreeMap<&'static str, StepResult> = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        // Skip what can no longer run; start what can.
        loop {
            let mut changed = false;
            // In the order given, so that one-at-a-time runs are the script's order.
            let ids: Vec<&'static str> = order
                .iter()
                .copied()
                .filter(|id| pending.contains_key(id))
                .collect();
            for id in ids {
                let step = &pending[id];
                if let Some(blocker) = step.needs.iter().find(|n| {
                    results
                        .get(*n)
                        .is_some_and(|r| !matches!(r.state, StepState::Done { .. }))
                }) {
                    let reason = match &results[blocker].state {
                        StepState::Failed { .. } => format!("{blocker} failed"),
                        _ => format!("{blocker} did not run"),
                    };
                    let state = StepState::Skipped { reason };
                    on_event(id, Some(&state));
                    results.insert(
                        id,
                        StepResult {
                            id,
                            title: titles[id].clone(),
                            needs: needs[id].clone(),
                            state,
                            span: None,
                            report: kfsec_core::Report::new(),
                            error: None,
                        },
                    );
                    pending.remove(id);
                    changed = true;
                } else if step.needs.iter().all(|n| results.contains_key(n))
                    && running.len() < parallel
                {
                    let Some(step) = pending.remove(id) else {
                        continue;
                    };
                    on_event(id, None);
                    let began = start.elapsed();
                    let fut = (step.run)();
                    running.push(async move { (id, began, fut.await) });
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let Some((id, began, outcome)) = running.next().await else {
            break;
        };
        let (state, report, error) = match outcome {
            Ok(out) => (
                StepState::Done {
                    summary: out.summary,
                },
                out.report,
                None,
            ),
            Err(error) => (
                StepState::Failed {
                    error: error.to_string(),
                },
                kfsec_core::Report::new(),
                Some(std::sync::Arc::new(error)),
            ),
        };
        on_event(id, Some(&state));
        results.insert(
            id,
            StepResult {
                id,
                title: titles[id].clone(),
                needs: needs[id].clone(),
                state,
                span: Some((began, start.elapsed())),
                report,
                error,
            },
        );
    }
    Ok(order
        .into_iter()
        .filter_map(|id| results.remove(id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;
    use std::sync::{Arc, Mutex};

    fn step<'a>(
        id: &'static str,
        needs: &[&'static str],
        ms: u64,
        ok: bool,
        log: Arc<Mutex<Vec<String>>>,
    ) -> Step<'a> {
        Step::new(id, id, needs, move || {
            async move {
                log.lock().unwrap().push(format!("start {id}"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push(format!("end {id}"));
                if ok {
                    Ok(StepOutput {
                        summary: format!("{id} done"),
                        ..StepOutput::default()
                    })
                } else {
                    Err(StageError::Failed {
                        resource: id.to_string(),
                        message: "broke".into(),
                    })
                }
            }
            .boxed()
        })
    }

    #[tokio::test]
    async fn independent_branches_overlap_and_a_failure_stops_only_its_dependents() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = vec![
            step("a", &[], 50, true, log.clone()),
            step("b", &[], 50, false, log.clone()),
            step("c", &["a"], 10, true, log.clone()),
            step("d", &["b"], 10, true, log.clone()),
            step("e", &["d", "c"], 10, true, log.clone()),
        ];
        let results = run(steps, |_, _| {}).await.unwrap();
        let states: Vec<(&str, StepState)> =
            results.iter().map(|r| (r.id, r.state.clone())).collect();
        assert_eq!(
            states,
            [
                (
                    "a",
                    StepState::Done {
                        summary: "a done".into()
                    }
                ),
                (
                    "b",
                    StepState::Failed {
                        error: "b: broke".into()
                    }
                ),
                (
                    "c",
                    StepState::Done {
                        summary: "c done".into()
                    }
                ),
                (
                    "d",
                    StepState::Skipped {
                        reason: "b failed".into()
                    }
                ),
                (
                    "e",
                    StepState::Skipped {
                        reason: "d did not run".into()
                    }
                ),
            ]
        );
        // The failed step keeps its typed error; the others have none.
        assert!(matches!(
            results[1].error.as_deref(),
            Some(StageError::Failed { resource, .. }) if resource == "b"
        ));
        assert!(results.iter().filter(|r| r.error.is_some()).count() == 1);
        let log = log.lock().unwrap().clone();
        // a and b overlapped: both started before either ended.
        assert_eq!(&log[..2], ["start a", "start b"]);
        assert!(!log.iter().any(|l| l.ends_with(" d") || l.ends_with(" e")));
    }

    #[tokio::test]
    async fn one_at_a_time_runs_in_the_order_given() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = vec![
            step("a", &[], 5, true, log.clone()),
            step("b", &[], 5, true, log.clone()),
            step("c", &["a"], 5, true, log.clone()),
        ];
        let results = run_with(steps, 1, |_, _| {}).await.unwrap();
        assert!(
            results
                .iter()
                .all(|r| matches!(r.state, StepState::Done { .. }))
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["start a", "end a", "start b", "end b", "start c", "end c"]
        );
        assert_eq!(results[2].needs, ["a"]);
    }

    #[test]
    fn unknown_needs_and_cycles_are_refused() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let unknown = vec![step("a", &["zz"], 0, true, log.clone())];
        assert_eq!(
            check(&unknown).unwrap_err(),
            GraphError::UnknownNeed {
                step: "a",
                need: "zz"
            }
        );
        let cycle = vec![
            step("a", &["b"], 0, true, log.clone()),
            step("b", &["a"], 0, true, log),
        ];
        assert_eq!(check(&cycle).unwrap_err(), GraphError::Cycle("a"));
    }
}
