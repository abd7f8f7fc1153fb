//! Cloud Build v1 (`cloudbuild.googleapis.com`): builds (create, get, list, cancel) in the legacy
//! form (`/v1/projects/P/builds`) and the location form (`/v1/projects/P/locations/L/builds`,
//! gcloud's), and their long-running operations.
//!
//! A build goes `QUEUED`, then `WORKING`, then ends (`SUCCESS`, `FAILURE`, `TIMEOUT` or
//! `CANCELLED`) once the emulator's `lro` has elapsed: the first tenth of `lro` is the queue, the
//! rest is split evenly between the build's dependency levels (steps with `waitFor: ["-"]` start
//! at once; a step without `waitFor` waits for every earlier step). Each step takes effect when
//! its slice ends: the emulator runs the steps it understands (crane copies) against its own OCI
//! registry, where every registry host is a repository prefix. Anything else fails, saying the
//! emulator cannot run it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::sha256::uuid_from;
use crate::state::{Env, State};
use crate::wire::{ApiRequest, base64, enum_name, list_response, rfc3339};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "cloudbuild";

const BUILD_TYPE: &str = "type.googleapis.com/google.devtools.cloudbuild.v1.Build";
const METADATA_TYPE: &str =
    "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata";
/// Cloud Build's limit on steps per build.
const MAX_STEPS: usize = 300;
/// Cloud Build's default build timeout.
const DEFAULT_TIMEOUT: &str = "600s";
/// The longest build timeout Cloud Build accepts (24 hours).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The builder image whose copy steps the emulator runs.
const CRANE: &str = "gcr.io/go-containerregistry/crane";
/// Where a step writes its output, as the step sees it.
const OUTPUT_FILES: &[&str] = &[
    "$BUILDER_OUTPUT/output",
    "${BUILDER_OUTPUT}/output",
    "/builder/outputs/output",
];
/// The substitutions Cloud Build defines itself (those about sources are empty without one).
const BUILT_IN: &[&str] = &[
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "SERVICE_ACCOUNT",
    "SERVICE_ACCOUNT_EMAIL",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
];
const LOGGING: &[(i64, &str)] = &[
    (0, "LOGGING_UNSPECIFIED"),
    (1, "LEGACY"),
    (2, "GCS_ONLY"),
    (3, "STACKDRIVER_ONLY"),
    (5, "CLOUD_LOGGING_ONLY"),
    (4, "NONE"),
];
const SUBSTITUTION_OPTION: &[(i64, &str)] = &[(0, "MUST_MATCH"), (1, "ALLOW_LOOSE")];
/// Build fields the server sets: ignored in a create request.
const OUTPUT_ONLY: &[&str] = &[
    "id",
    "name",
    "projectId",
    "status",
    "statusDetail",
    "results",
    "createTime",
    "startTime",
    "finishTime",
    "logUrl",
    "timing",
    "buildTriggerId",
    "sourceProvenance",
    "failureInfo",
    "warnings",
    "approval",
];

/// How a build or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Timeout,
    Cancelled,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Failure => "FAILURE",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Cancelled => "CANCELLED",
        }
    }
}

/// What running one step gave.
#[derive(Debug, Clone)]
struct StepResult {
    ok: bool,
    /// What the step wrote to `$BUILDER_OUTPUT/output`.
    output: Vec<u8>,
    /// Why it failed.
    message: String,
}

/// One build and its timeline.
#[derive(Debug, Clone)]
struct BuildRec {
    id: String,
    project_id: String,
    project_number: String,
    location: String,
    operation: String,
    /// The build as requested (output-only fields removed), answered back with the server's
    /// fields added.
    request: Map<String, Value>,
    created: Instant,
    create_time: SystemTime,
    lro: Duration,
    timeout: Duration,
    /// Each step's dependency level.
    levels: Vec<usize>,
    /// Each step's result, once it has run.
    results: Vec<Option<StepResult>>,
    /// How the build ended and when, once it has (`:cancel` ends it at once).
    end: Option<(Outcome, Instant)>,
}

impl BuildRec {
    fn queue(&self) -> Duration {
        self.lro / 10
    }

    fn start(&self) -> Instant {
        self.created + self.queue()
    }

    fn level_count(&self) -> usize {
        self.levels.iter().max().map_or(1, |m| m + 1)
    }

    fn slice(&self) -> Duration {
        (self.lro - self.queue()) / u32::try_from(self.level_count()).unwrap_or(u32::MAX)
    }

    /// When the steps of `level` start and end.
    fn window(&self, level: usize) -> (Instant, Instant) {
        let slice = self.slice();
        let l = u32::try_from(level).unwrap_or(u32::MAX);
        (self.start() + slice * l, self.start() + slice * (l + 1))
    }

    fn deadline(&self) -> Instant {
        self.start() + self.timeout
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.create_time + t.saturating_duration_since(self.created)
    }

    fn steps(&self) -> &[Value] {
        self.request
            .get("steps")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/builds/{}",
            self.project_number, self.location, self.id
        )
    }

    /// Runs what is due at `now`: the steps whose slice has ended, then the build's end.
    fn settle(&mut self, registry: &mut crate::registry::RegistryState, now: Instant) {
        if self.end.is_some() {
            return;
        }
        for level in 0..self.level_count() {
            let (_, level_end) = self.window(level);
            if self.deadline() < level_end {
                if self.deadline() <= now {
                    self.end = Some((Outcome::Timeout, self.deadline()));
                }
                return;
            }
            if level_end > now {
                return;
            }
            let vars = self.substitutions();
            let mut failed = false;
            for (i, step) in self.steps().to_vec().iter().enumerate() {
                if self.levels[i] != level || self.results[i].is_some() {
                    continue;
                }
                let result = run_step(registry, step, &vars);
                failed |= !result.ok;
                self.results[i] = Some(result);
            }
            if failed {
                self.end = Some((Outcome::Failure, level_end));
                return;
            }
        }
        let (_, last) = self.window(self.level_count() - 1);
        self.end = Some((Outcome::Success, last));
    }

    /// Built-in and user substitutions.
    fn substitutions(&self) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = BUILT_IN
            .iter()
            .map(|k| ((*k).to_string(), String::new()))
            .collect();
        vars.insert("PROJECT_ID".into(), self.project_id.clone());
        vars.insert("PROJECT_NUMBER".into(), self.project_number.clone());
        vars.insert("BUILD_ID".into(), self.id.clone());
        vars.insert("LOCATION".into(), self.location.clone());
        let sa = service_account(&self.project_number);
        vars.insert("SERVICE_ACCOUNT_EMAIL".into(), sa.clone());
        vars.insert(
            "SERVICE_ACCOUNT".into(),
            format!("projects/{}/serviceAccounts/{sa}", self.project_id),
        );
        if let Some(user) = self.request.get("substitutions").and_then(Value::as_object) {
            for (k, v) in user {
                vars.insert(k.clone(), v.as_str().unwrap_or("").to_string());
            }
        }
        vars
    }

    /// The build as `GET` answers it at `now` (after [`BuildRec::settle`]).
    fn to_json(&self, now: Instant) -> Value {
        let mut b = self.request.clone();
        b.insert("name".into(), json!(self.name()));
        b.insert("id".into(), json!(self.id));
        b.insert("projectId".into(), json!(self.project_id));
        b.insert("createTime".into(), json!(rfc3339(self.create_time)));
        let status = match self.end {
            Some((o, _)) => o.name(),
            None if now < self.start() => "QUEUED",
            None => "WORKING",
        };
        b.insert("status".into(), json!(status));
        // A build cancelled while queued never starts.
        let started = match self.end {
            Some((_, at)) => at >= self.start(),
            None => self.start() <= now,
        };
        if started {
            b.insert("startTime".into(), json!(rfc3339(self.wall(self.start()))));
        }
        if let Some((outcome, at)) = self.end {
            b.insert("finishTime".into(), json!(rfc3339(self.wall(at))));
            if started {
                b.insert(
                    "timing".into(),
                    json!({"BUILD": {"startTime": rfc3339(self.wall(self.start())), "endTime": rfc3339(self.wall(at))}}),
                );
            }
            let outputs: Vec<Value> = self
                .results
                .iter()
                .map(|r| json!(r.as_ref().map_or(String::new(), |r| base64(&r.output))))
                .collect();
            b.insert("results".into(), json!({ "buildStepOutputs": outputs }));
            match outcome {
                Outcome::Failure => {
                    // statusDetail names the first failed step, as Cloud Build does (with its
                    // id); failureInfo.detail says why each failed step failed.
                    let failed: Vec<(usize, &StepResult)> = self
                        .results
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| r.as_ref().filter(|r| !r.ok).map(|r| (i, r)))
                        .collect();
                    let describe = |i: usize| {
                        self.steps()[i]
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or(String::new(), |id| format!(" (id \"{id}\")"))
                    };
                    if let Some((i, _)) = failed.first() {
                        let name = self.steps()[*i]
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        b.insert(
                            "statusDetail".into(),
                            json!(format!(
                                "Build step failure: build step {i} \"{name}\"{} failed: step exited with non-zero status: 1",
                                describe(*i)
                            )),
                        );
                    }
                    let detail: Vec<String> = failed
                        .iter()
                        .map(|(i, r)| {
                            format!("Build step {i}{} failed: {}", describe(*i), r.message)
                        })
                        .collect();
                    b.insert(
                        "failureInfo".into(),
                        json!({"type": "USER_BUILD_STEP", "detail": detail.join("; ")}),
                    );
                }
                Outcome::Timeout => {
                    b.insert("statusDetail".into(), json!("Build timed out"));
                }
                Outcome::Cancelled => {
                    b.insert("statusDetail".into(), json!("Build was cancelled"));
                }
                Outcome::Success => {}
            }
        }
        let steps: Vec<Value> = self
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| self.step_json(i, s, now))
            .collect();
        b.insert("steps".into(), Value::Array(steps));
        b.insert(
            "logUrl".into(),
            json!(format!(
                "https://console.cloud.google.com/cloud-build/builds;region={}/{}?project={}",
                self.location, self.id, self.project_number
            )),
        );
        b.entry("serviceAccount").or_insert_with(|| {
            json!(format!(
                "projects/{}/serviceAccounts/{}",
                self.project_id,
                service_account(&self.project_number)
            ))
        });
        b.entry("queueTtl").or_insert_with(|| json!("3600s"));
        Value::Object(b)
    }

    fn step_json(&self, i: usize, step: &Value, now: Instant) -> Value {
        let mut s = step.as_object().cloned().unwrap_or_default();
        let (from, to) = self.window(self.levels[i]);
        let (status, ran_until) = match (&self.results[i], self.end) {
            (Some(r), _) => (if r.ok { "SUCCESS" } else { "FAILURE" }, Some(to)),
            (None, Some((outcome, at))) if from < at && at < to => (
                match outcome {
                    Outcome::Timeout => "TIMEOUT",
                    _ => "CANCELLED",
                },
                Some(at),
            ),
            (None, Some(_)) => ("QUEUED", None),
            (None, None) if from <= now => ("WORKING", None),
            (None, None) => ("QUEUED", None),
        };
        s.insert("status".into(), json!(status));
        if from <= now && status != "QUEUED" {
            let mut timing = json!({"startTime": rfc3339(self.wall(from))});
            if let Some(end) = ran_until {
                timing["endTime"] = json!(rfc3339(self.wall(end)));
            }
            s.insert("timing".into(), timing);
        }
        if status == "FAILURE" {
            s.insert("exitCode".into(), json!(1));
        }
        Value::Object(s)
    }

    fn operation_json(&self, now: Instant) -> Value {
        let mut build = self.to_json(now);
        let mut op = json!({"name": self.operation, "done": self.end.is_some()});
        build["@type"] = json!(BUILD_TYPE);
        let mut meta_build = build.clone();
        if let Value::Object(m) = &mut meta_build {
            m.remove("@type");
        }
        op["metadata"] = json!({"@type": METADATA_TYPE, "build": meta_build});
        match self.end {
            Some((Outcome::Success, _)) => op["response"] = build,
            Some((Outcome::Failure, _)) => {
                op["error"] =
                    json!({"code": 2, "message": "Build failed; check build logs for details"});
            }
            Some((Outcome::Timeout, _)) => {
                op["error"] = json!({"code": 4, "message": "Build timed out"});
            }
            Some((Outcome::Cancelled, _)) => {
                op["error"] = json!({"code": 1, "message": "Build was cancelled"});
            }
            None => {}
        }
        op
    }
}

fn service_account(number: &str) -> String {
    format!("{number}-compute@developer.gserviceaccount.com")
}

/// The Cloud Build part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct CloudBuildState {
    /// Builds, oldest first.
    builds: Vec<BuildRec>,
}

/// Runs whatever builds have due: steps whose time has come take effect on the registry.
/// Called before every request is handled and before the state is read.
pub(crate) fn settle(st: &mut State, now: Instant) {
    let State {
        cloudbuild,
        registry,
        ..
    } = st;
    for b in &mut cloudbuild.builds {
        b.settle(registry, now);
    }
}

// ----- steps ---------------------------------------------------------------------------------

/// Expands `$VAR` and `${VAR}` from `vars`; `$$` is a literal `$`. Unknown names are kept as
/// written (validation has refused them already).
fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&s[last..i]);
        match template_var(s, i) {
            Some(Var::Dollar) => {
                out.push('$');
                i += 2;
            }
            Some(Var::Name(name, len)) => {
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + len]),
                }
                i += len;
            }
            None => {
                out.push('$');
                i += 1;
            }
        }
        last = i;
    }
    out.push_str(&s[last..]);
    out
}

/// What follows a `$` at byte `i` of `s`.
enum Var<'a> {
    /// `$$`.
    Dollar,
    /// `$NAME` or `${NAME}`: the name and the length of the whole reference.
    Name(&'a str, usize),
}

fn template_var(s: &str, i: usize) -> Option<Var<'_>> {
    let rest = &s[i + 1..];
    if rest.starts_with('$') {
        return Some(Var::Dollar);
    }
    let is_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}')?;
        let name = &inner[..end];
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
        return (first_ok && name.chars().all(is_name)).then_some(Var::Name(name, end + 3));
    }
    if !rest
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
    {
        return None;
    }
    let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
    Some(Var::Name(&rest[..end], end + 1))
}

/// Every template variable used in `s`.
fn template_names(s: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(off) = s[i..].find('$') {
        let at = i + off;
        match template_var(s, at) {
            Some(Var::Dollar) => i = at + 2,
            Some(Var::Name(name, len)) => {
                names.push(name);
                i = at + len;
            }
            None => i = at + 1,
        }
    }
    names
}

/// The strings of a build that substitutions apply to.
fn templated_strings(build: &Map<String, Value>) -> Vec<&str> {
    fn strs(v: Option<&Value>) -> Vec<&str> {
        match v {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
    let mut out = Vec::new();
    if let Some(steps) = build.get("steps").and_then(Value::as_array) {
        for step in steps {
            for key in ["name", "args", "env", "dir", "entrypoint", "secretEnv"] {
                out.extend(strs(step.get(key)));
            }
        }
    }
    out.extend(strs(build.get("images")));
    out.extend(strs(build.get("tags")));
    out
}

/// A shell word or operator of a step script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    And,
    Semi,
    Redirect,
}

/// Splits a `sh -c` script into words (with `'...'` and `"..."` quoting) and the operators the
/// emulator understands; `None` for anything else (pipes, `||`, substitutions, ...).
fn tokenize(script: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = script.chars().peekable();
    let mut word: Option<String> = None;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => w.push(x),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            x @ ('"' | '\\' | '$') => w.push(x),
                            x => {
                                w.push('\\');
                                w.push(x);
                            }
                        },
                        '`' => return None,
                        x => w.push(x),
                    }
                }
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
                tokens.push(Token::And);
            }
            ';' => {
                if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
                tokens.push(Token::Semi);
            }
            '>' if chars.peek() != Some(&'>') => {
                if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
                tokens.push(Token::Redirect);
            }
            '|' | '&' | '<' | '>' | '`' | '(' | ')' | '\\' => return None,
            x => word.get_or_insert_with(String::new).push(x),
        }
    }
    if let Some(w) = word.take() {
        tokens.push(Token::Word(w));
    }
    Some(tokens)
}

/// One crane command of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Crane {
    Copy(String, String),
    /// `crane digest REF`, with `true` when redirected to the step's output file.
    Digest(String, bool),
}

/// How commands of a script are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    And,
    Then,
}

/// Parses a script: `crane copy SRC DST`, `crane digest REF [> "$BUILDER_OUTPUT/output"]`,
/// joined by `&&` or `;`.
fn parse_script(script: &str) -> Result<Vec<(Join, Crane)>, String> {
    let tokens = tokenize(script).ok_or_else(|| {
        "it uses shell features beyond words, quotes, '&&', ';' and '>'".to_string()
    })?;
    let mut out = Vec::new();
    let mut join = Join::Then;
    for command in tokens.split_inclusive(|t| matches!(t, Token::And | Token::Semi)) {
        let (words, next) = match command.split_last() {
            Some((Token::And, rest)) => (rest, Join::And),
            Some((Token::Semi, rest)) => (rest, Join::Then),
            _ => (command, Join::Then),
        };
        if words.is_empty() {
            return Err("it has an empty command".into());
        }
        let mut argv = Vec::new();
        let mut redirect = None;
        let mut it = words.iter();
        while let Some(t) = it.next() {
            match t {
                Token::Word(w) => argv.push(w.as_str()),
                Token::Redirect => match it.next() {
                    Some(Token::Word(target)) => redirect = Some(target.as_str()),
                    _ => return Err("a '>' has no target".into()),
                },
                Token::And | Token::Semi => {}
            }
        }
        out.push((join, parse_crane(&argv, redirect)?));
        join = next;
    }
    Ok(out)
}

fn parse_crane(argv: &[&str], redirect: Option<&str>) -> Result<Crane, String> {
    let ["crane", argv @ ..] = argv else {
        return Err(format!(
            "it runs {:?}, and the emulator only runs crane",
            argv.first().copied().unwrap_or("")
        ));
    };
    if let Some(flag) = argv.iter().find(|a| a.starts_with('-')) {
        return Err(format!("the emulator does not know crane's flag {flag:?}"));
    }
    match (argv, redirect) {
        (["copy" | "cp", src, dst], None) => Ok(Crane::Copy((*src).into(), (*dst).into())),
        (["digest", image], None) => Ok(Crane::Digest((*image).into(), false)),
        (["digest", image], Some(target)) if OUTPUT_FILES.contains(&target) => {
            Ok(Crane::Digest((*image).into(), true))
        }
        (_, Some(target)) if !OUTPUT_FILES.contains(&target) => Err(format!(
            "it writes to {target:?}; the emulator only knows \"$BUILDER_OUTPUT/output\""
        )),
        _ => Err(format!(
            "the emulator runs 'crane copy SRC DST' and 'crane digest REF', not 'crane {}'",
            argv.join(" ")
        )),
    }
}

/// Runs one step against the registry.
fn run_step(
    registry: &mut crate::registry::RegistryState,
    step: &Value,
    vars: &BTreeMap<String, String>,
) -> StepResult {
    let field = |k: &str| expand(step.get(k).and_then(Value::as_str).unwrap_or(""), vars);
    let name = field("name");
    let entrypoint = field("entrypoint");
    let args: Vec<String> = step
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| expand(v.as_str().unwrap_or(""), vars))
                .collect()
        })
        .unwrap_or_default();
    let fail = |message: String| StepResult {
        ok: false,
        output: Vec::new(),
        message,
    };
    let cannot = |why: &str| {
        fail(format!(
            "the emulator cannot run this step of image {name:?}: {why}; it runs {CRANE} steps \
             'crane copy SRC DST' (optionally '&& crane digest DST > \"$BUILDER_OUTPUT/output\"' \
             through entrypoint sh -c)"
        ))
    };
    let tag = name
        .strip_prefix(CRANE)
        .filter(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('@'));
    let Some(tag) = tag else {
        return cannot("the emulator runs only crane images");
    };
    let commands = match (entrypoint.as_str(), args.as_slice()) {
        ("sh" | "/busybox/sh" | "/bin/sh", [c, script]) if c == "-c" => {
            if !(tag.starts_with('@') || tag.ends_with("debug")) {
                return fail(format!(
                    "starting step container failed: {name} has no shell (only {CRANE}:debug has \
                     one): exec: \"{entrypoint}\": executable file not found in $PATH"
                ));
            }
            parse_script(script)
        }
        ("" | "crane", argv) => {
            let argv: Vec<&str> = std::iter::once("crane")
                .chain(argv.iter().map(String::as_str))
                .collect();
            parse_crane(&argv, None).map(|c| vec![(Join::Then, c)])
        }
        _ => Err(format!("entrypoint {entrypoint:?} with these args")),
    };
    let commands = match commands {
        Ok(c) => c,
        Err(why) => return cannot(&why),
    };
    let mut output = Vec::new();
    let mut last: Result<(), String> = Ok(());
    for (join, command) in commands {
        if join == Join::And && last.is_err() {
            continue;
        }
        last = match command {
            Crane::Copy(src, dst) => registry.copy_image(&src, &dst).map(|_| ()),
            Crane::Digest(image, to_output) => match registry.image_digest(&image) {
                Some(d) => {
                    if to_output {
                        // crane prints the digest and a newline.
                        output = format!("{d}\n").into_bytes();
                    }
                    Ok(())
                }
                None => Err(format!("GET {image}: MANIFEST_UNKNOWN: manifest unknown")),
            },
        };
    }
    match last {
        Ok(()) => StepResult {
            ok: true,
            output,
            message: String::new(),
        },
        Err(message) => StepResult {
            ok: false,
            output,
            message,
        },
    }
}

// ----- validation ----------------------------------------------------------------------------

/// Parses a `google.protobuf.Duration` in JSON form (`"600s"`, `"1.5s"`).
fn parse_duration(s: &str) -> Option<Duration> {
    let n = s.strip_suffix('s')?;
    let (secs, frac) = n.split_once('.').unwrap_or((n, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs.parse().ok()?, nanos))
}

fn invalid(message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_argument(format!("invalid build: {message}"))
}

/// Checks a build request as Cloud Build does; returns its timeout and each step's level.
fn validate(build: &Map<String, Value>) -> ApiResult<(Duration, Vec<usize>)> {
    let steps = build
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if steps.is_empty() {
        return Err(invalid(
            "a build must have at least one step (none were given)",
        ));
    }
    if steps.len() > MAX_STEPS {
        return Err(invalid(format!(
            "a build can have at most {MAX_STEPS} steps, this one has {}",
            steps.len()
        )));
    }
    let timeout_text = build
        .get("timeout")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TIMEOUT);
    let timeout = parse_duration(timeout_text).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Invalid value at 'build.timeout' (type.googleapis.com/google.protobuf.Duration), \"{timeout_text}\": a duration is a number of seconds with the suffix 's', such as \"600s\""
        ))
    })?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(invalid(format!(
            "invalid timeout \"{timeout_text}\": it must be more than 0s and at most {}s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    // Steps: a name, unique ids, waitFor naming earlier steps.
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut levels = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if step
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            return Err(invalid(format!("build step {i} must specify name")));
        }
        let wait: Vec<&str> = step
            .get("waitFor")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let level = if wait.is_empty() {
            levels.iter().max().map_or(0, |m| m + 1)
        } else if wait == ["-"] {
            0
        } else {
            let mut level = 0;
            for w in wait {
                let &j = ids.get(w).ok_or_else(|| {
                    invalid(format!(
                        "build step {i} waits for \"{w}\", which is not the id of an earlier step"
                    ))
                })?;
                level = level.max(levels[j] + 1);
            }
            level
        };
        levels.push(level);
        if let Some(id) = step.get("id").and_then(Value::as_str)
            && ids.insert(id, i).is_some()
        {
            return Err(invalid(format!("duplicate build step id \"{id}\"")));
        }
    }
    // Substitutions: user keys, then every template variable.
    let user: BTreeMap<&str, &Value> = build
        .get("substitutions")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default();
    for key in user.keys() {
        let ok = key.starts_with('_')
            && key.len() > 1
            && key[1..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(invalid(format!(
                "substitution key \"{key}\" does not respect format \"^_[A-Z0-9_]+$\""
            )));
        }
    }
    let loose = build
        .get("options")
        .and_then(|o| o.get("substitutionOption"))
        .is_some_and(|v| v == "ALLOW_LOOSE");
    let mut used = std::collections::BTreeSet::new();
    for s in templated_strings(build) {
        for name in template_names(s) {
            used.insert(name);
            if user.contains_key(name) || BUILT_IN.contains(&name) || loose {
                continue;
            }
            return Err(invalid(if name.starts_with('_') {
                format!("key in the template \"{name}\" is not matched in the substitution data")
            } else {
                format!("key in the template \"{name}\" is not a valid built-in substitution")
            }));
        }
    }
    if !loose && let Some(unused) = user.keys().find(|k| !used.contains(*k)) {
        return Err(invalid(format!(
            "key \"{unused}\" in the substitution data is not matched in the template"
        )));
    }
    Ok((timeout, levels))
}

// ----- routing -------------------------------------------------------------------------------

fn no_route(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}.",
        req.method,
        req.segments.join("/")
    ))
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    let now = Instant::now();
    if let ["v1", "operations", rest @ ..] = parts.as_slice() {
        if rest.is_empty() || m != Method::GET {
            return Err(no_route(req));
        }
        let name = format!("operations/{}", rest.join("/"));
        return operation(st, &name, now);
    }
    let (p, location, rest) = match parts.as_slice() {
        ["v1", "projects", p, "locations", l, rest @ ..] => (*p, (*l).to_string(), rest.to_vec()),
        ["v1", "projects", p, rest @ ..] => (*p, "global".to_string(), rest.to_vec()),
        _ => return Err(no_route(req)),
    };
    let project = st.project(p).cloned().ok_or_else(|| {
        ApiError::permission_denied(format!(
            "The caller does not have permission (project {p} may not exist)."
        ))
    })?;
    match (rest.as_slice(), req.verb()) {
        (["builds"], "") if m == Method::POST => {
            create(st, env, req, &project.id, &project.number, &location, now)
        }
        (["builds"], "") if m == Method::GET => list(st, req, &project.id, &location, now),
        (["builds", id], "") if m == Method::GET => {
            let b = find(st, &project.id, &location, id)?;
            Ok(b.to_json(now))
        }
        (["builds", id], "cancel") if m == Method::POST => {
            let i = st
                .cloudbuild
                .builds
                .iter()
                .position(|b| b.project_id == project.id && b.location == location && b.id == *id)
                .ok_or_else(|| build_not_found(id))?;
            let b = &mut st.cloudbuild.builds[i];
            if b.end.is_none() {
                b.end = Some((Outcome::Cancelled, now));
            }
            Ok(b.to_json(now))
        }
        (["operations", op], "") if m == Method::GET => {
            let key = |number_or_id: &str| {
                format!("projects/{number_or_id}/locations/{location}/operations/{op}")
            };
            operation(st, &key(&project.number), now)
                .or_else(|_| operation(st, &key(&project.id), now))
        }
        _ => Err(no_route(req)),
    }
}

fn build_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Requested entity was not found. (build {id})"))
}

fn find<'a>(st: &'a State, project: &str, location: &str, id: &str) -> ApiResult<&'a BuildRec> {
    st.cloudbuild
        .builds
        .iter()
        .find(|b| b.project_id == project && b.location == location && b.id == id)
        .ok_or_else(|| build_not_found(id))
}

fn operation(st: &State, name: &str, now: Instant) -> ApiResult<Value> {
    st.cloudbuild
        .builds
        .iter()
        .find(|b| b.operation == name)
        .map(|b| b.operation_json(now))
        .ok_or_else(|| ApiError::not_found(format!("Operation '{name}' not found.")))
}

fn create(
    st: &mut State,
    env: &Env,
    req: &ApiRequest,
    project_id: &str,
    project_number: &str,
    location: &str,
    now: Instant,
) -> ApiResult<Value> {
    let Value::Object(mut request) = req.body.clone() else {
        return Err(ApiError::invalid_argument(
            "Invalid JSON payload received. The build must be an object.",
        ));
    };
    for key in OUTPUT_ONLY {
        request.remove(*key);
    }
    if let Some(Value::Object(options)) = request.get_mut("options") {
        if let Some(v) = options.get("logging") {
            let name = enum_name(v, LOGGING, "build.options.logging")?;
            options.insert("logging".into(), json!(name));
        }
        if let Some(v) = options.get("substitutionOption") {
            let name = enum_name(v, SUBSTITUTION_OPTION, "build.options.substitution_option")?;
            options.insert("substitutionOption".into(), json!(name));
        }
    }
    let (timeout, levels) = validate(&request)?;
    request
        .entry("timeout")
        .or_insert_with(|| json!(DEFAULT_TIMEOUT));
    let logging = request
        .get("options")
        .and_then(|o| o.get("logging"))
        .and_then(Value::as_str)
        .unwrap_or("LEGACY")
        .to_string();
    let options = request.entry("options").or_insert_with(|| json!({}));
    if let Value::Object(o) = options {
        o.entry("logging").or_insert_with(|| json!("LEGACY"));
    }
    if !matches!(
        logging.as_str(),
        "NONE" | "CLOUD_LOGGING_ONLY" | "STACKDRIVER_ONLY"
    ) {
        request.entry("logsBucket").or_insert_with(|| {
            json!(format!(
                "gs://{project_number}.cloudbuild-logs.googleusercontent.com"
            ))
        });
    }
    let n = st.next();
    let id = uuid_from(&format!("kfsec-emulator build {n}"));
    let operation = if location == "global" {
        format!("operations/build/{project_id}/{}", base64(id.as_bytes()))
    } else {
        format!(
            "projects/{project_number}/locations/{location}/operations/{}",
            uuid_from(&format!("kfsec-emulator build operation {n}"))
        )
    };
    let steps = levels.len();
    let mut rec = BuildRec {
        id,
        project_id: project_id.to_string(),
        project_number: project_number.to_string(),
        location: location.to_string(),
        operation,
        request,
        created: now,
        create_time: SystemTime::now(),
        lro: env.lro,
        timeout,
        levels,
        results: vec![None; steps],
        end: None,
    };
    rec.settle(&mut st.registry, now);
    let op = rec.operation_json(now);
    st.cloudbuild.builds.push(rec);
    Ok(op)
}

/// A list filter: `field="value"` terms (`status`, `id`/`build_id`, `tags`, `create_time` with
/// `=`, `<`, `>`, `<=`, `>=`) joined by `AND` and `OR`, parentheses ignored.
fn matches_filter(build: &Value, filter: &str) -> ApiResult<bool> {
    let cleaned = filter.replace(['(', ')'], " ");
    let mut any = false;
    for alternative in cleaned.split(" OR ") {
        let mut all = true;
        for term in alternative.split(" AND ") {
            all &= matches_term(build, term.trim(), filter)?;
        }
        any |= all;
    }
    Ok(any)
}

fn matches_term(build: &Value, term: &str, filter: &str) -> ApiResult<bool> {
    let bad = || ApiError::invalid_argument(format!("Invalid filter: \"{filter}\""));
    let op_at = term.find(['=', '<', '>', ':']).ok_or_else(bad)?;
    let field = term[..op_at].trim();
    let rest = &term[op_at..];
    let (op, value) = ["<=", ">=", "=", "<", ">", ":"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
        .ok_or_else(bad)?;
    let value = value.trim().trim_matches('"');
    let get = |k: &str| {
        build
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(match (field, op) {
        ("status", "=" | ":") => get("status") == value,
        ("id" | "build_id", "=" | ":") => get("id") == value,
        ("tags", "=" | ":") => build
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|x| x == value)),
        ("create_time" | "createTime", _) => {
            let t = get("createTime");
            match op {
                "<" => t.as_str() < value,
                "<=" => t.as_str() <= value,
                ">" => t.as_str() > value,
                ">=" => t.as_str() >= value,
                _ => t == value,
            }
        }
        _ => return Err(bad()),
    })
}

fn list(
    st: &State,
    req: &ApiRequest,
    project: &str,
    location: &str,
    now: Instant,
) -> ApiResult<Value> {
    let filter = req.param("filter").unwrap_or("").trim().to_string();
    let mut items = Vec::new();
    for b in st.cloudbuild.builds.iter().rev() {
        if b.project_id != project || b.location != location {
            continue;
        }
        let v = b.to_json(now);
        if filter.is_empty() || matches_filter(&v, &filter)? {
            items.push(v);
        }
    }
    let (page, next) = req.paginate(items, 50, 1000)?;
    Ok(list_response("builds", page, next))
}

/// The Cloud Build part of the admin state: every build as `GET` answers it, oldest first.
pub(crate) fn state_json(st: &State) -> Value {
    let now = Instant::now();
    json!({
        "builds": st.cloudbuild.builds.iter().map(|b| b.to_json(now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PROJECT_ID".to_string(), "kf-dev".to_string()),
            (
                "_MIRROR".to_string(),
                "us-docker.pkg.dev/kf-dev/m".to_string(),
            ),
        ])
    }

    #[test]
    fn substitutions_expand() {
        assert_eq!(
            expand("$PROJECT_ID/${_MIRROR}", &vars()),
            "kf-dev/us-docker.pkg.dev/kf-dev/m"
        );
        assert_eq!(
            expand("$$BUILDER_OUTPUT/output", &vars()),
            "$BUILDER_OUTPUT/output"
        );
        assert_eq!(expand("a$$$PROJECT_ID", &vars()), "a$kf-dev");
        assert_eq!(expand("$lower ${x} $", &vars()), "$lower ${x} $");
        assert_eq!(
            template_names("$$BUILDER_OUTPUT ${_A} $B_1 $$ $c"),
            vec!["_A", "B_1"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("600"), None);
        assert_eq!(parse_duration("1m"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn scripts_parse() {
        let script = r#"crane copy 'docker.io/library/busybox:1.36' 'us-docker.pkg.dev/kf-dev/m/docker.io/library/busybox:1.36' && crane digest 'us-docker.pkg.dev/kf-dev/m/docker.io/library/busybox:1.36' > "$BUILDER_OUTPUT/output""#;
        assert_eq!(
            parse_script(script).unwrap(),
            vec![
                (
                    Join::Then,
                    Crane::Copy(
                        "docker.io/library/busybox:1.36".into(),
                        "us-docker.pkg.dev/kf-dev/m/docker.io/library/busybox:1.36".into()
                    )
                ),
                (
                    Join::And,
                    Crane::Digest(
                        "us-docker.pkg.dev/kf-dev/m/docker.io/library/busybox:1.36".into(),
                        true
                    )
                ),
            ]
        );
        assert!(parse_script("crane copy a b | tee x").is_err());
        assert!(parse_script("crane copy a b > /tmp/x").is_err());
        assert!(parse_script("crane copy --platform=all a b").is_err());
        assert!(parse_script("docker pull a").is_err());
        assert!(parse_script("crane copy 'a b").is_err());
        assert_eq!(
            parse_script("crane cp a b; crane digest b").unwrap().len(),
            2
        );
    }

    #[test]
    fn validation() {
        let build = |v: Value| v.as_object().unwrap().clone();
        let step = json!({"name": "gcr.io/go-containerregistry/crane", "args": ["copy", "a", "b"]});
        assert!(validate(&build(json!({"steps": [step]}))).is_ok());
        let err = validate(&build(json!({"steps": []}))).unwrap_err();
        assert_eq!(err.status, "INVALID_ARGUMENT");
        let many: Vec<Value> = (0..301).map(|_| step.clone()).collect();
        assert!(
            validate(&build(json!({"steps": many})))
                .unwrap_err()
                .message
                .contains("300")
        );
        let err = validate(&build(json!({"steps": [step], "timeout": "10m"}))).unwrap_err();
        assert!(err.message.contains("build.timeout"), "{}", err.message);
        let err =
            validate(&build(json!({"steps": [{"name": "x", "args": ["$NOPE"]}]}))).unwrap_err();
        assert!(
            err.message
                .contains("\"NOPE\" is not a valid built-in substitution"),
            "{}",
            err.message
        );
        let err =
            validate(&build(json!({"steps": [{"name": "x", "args": ["${_M}"]}]}))).unwrap_err();
        assert!(
            err.message.contains("not matched in the substitution data"),
            "{}",
            err.message
        );
        assert!(validate(&build(json!({"steps": [{"name": "x", "args": ["${_M}", "$$HOME", "$PROJECT_ID"]}], "substitutions": {"_M": "m"}}))).is_ok());
        let err = validate(&build(
            json!({"steps": [step], "substitutions": {"_M": "m"}}),
        ))
        .unwrap_err();
        assert!(
            err.message.contains("\"_M\" in the substitution data"),
            "{}",
            err.message
        );
        assert!(validate(&build(json!({"steps": [step], "substitutions": {"_M": "m"}, "options": {"substitutionOption": "ALLOW_LOOSE"}}))).is_ok());
        // Levels: parallel steps, then a step after all of them, then one after a named one.
        let (_, levels) = validate(&build(json!({"steps": [
            {"name": "x", "id": "a", "waitFor": ["-"]},
            {"name": "x", "id": "b", "waitFor": ["-"]},
            {"name": "x", "id": "c"},
            {"name": "x", "waitFor": ["a"]},
        ]})))
        .unwrap();
        assert_eq!(levels, vec![0, 0, 1, 1]);
        assert!(validate(&build(json!({"steps": [{"name": "x", "waitFor": ["later"]}, {"name": "x", "id": "later"}]}))).is_err());
    }
}
