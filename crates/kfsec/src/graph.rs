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

/// What a step returns when it succeeds: a one-line summary and its report lines.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// One line for the summary (`3 created, 1 unchanged`).
    pub summary: String,
    /// What it did, resource by resource.
    pub report: kfsec_core::Report,
}

type Run<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<StepOutput, String>> + Send + 'a>;

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
        F: FnOnce() -> BoxFuture<'a, Result<StepOutput, String>> + Send + 'a,
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
        /// The error, with what to do next.
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
}

/// Checks that every need names a step and that there is no cycle.
pub fn check(steps: &[Step<'_>]) -> Result<(), String> {
    let ids: BTreeSet<&str> = steps.iter().map(|s| s.id).collect();
    if ids.len() != steps.len() {
        return Err("two steps share an id".into());
    }
    for s in steps {
        for n in &s.needs {
            if !ids.contains(n) {
                return Err(format!("step {} needs {n}, which is not a step", s.id));
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
            return Err("the steps' needs form a cycle".into());
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
) -> Result<Vec<StepResult>, String> {
    run_with(steps, usize::MAX, on_event).await
}

/// [`run`] with at most `parallel` steps at a time (1: one after another, in the order
/// given, as a script would run them).
pub async fn run_with<'a>(
    steps: Vec<Step<'a>>,
    parallel: usize,
    mut on_event: impl FnMut(&str, Option<&StepState>),
) -> Result<Vec<StepResult>, String> {
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
        let (state, report) = match outcome {
            Ok(out) => (
                StepState::Done {
                    summary: out.summary,
                },
                out.report,
            ),
            Err(error) => (StepState::Failed { error }, kfsec_core::Report::new()),
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
                    Err(format!("{id} broke"))
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
                        error: "b broke".into()
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
        assert!(check(&unknown).unwrap_err().contains("zz"));
        let cycle = vec![
            step("a", &["b"], 0, true, log.clone()),
            step("b", &["a"], 0, true, log),
        ];
        assert!(check(&cycle).unwrap_err().contains("cycle"));
    }
}
