//! Differential test (issue 21, acceptance item 3): for a few thousand generated perimeters and
//! access attempts, kfsec's evaluator (`kfsec_vpcsc::evaluate`) and the emulator's own one
//! (`POST access-attempts`, which shares no code with kfsec) agree on allow/deny, for the
//! enforced `status` and the dry-run `spec`, and on the violation reason where both deny.
//!
//! Each case is one perimeter with its access levels, written through the emulator's Access
//! Context Manager HTTP API (`replaceAll`, a batch of cases at a time, each case with project
//! numbers of its own so that an attempt only meets its own case's perimeter), and a handful of
//! attempts evaluated by both sides from the very same JSON.
//!
//! Generation stays within what both evaluators model: basic access levels (`members`,
//! `ipSubnetworks`, `requiredAccessLevels` naming earlier levels, `negate`, `AND`/`OR`), ingress
//! rules (`identityType` or `identities`; sources by access level `*` or name, or by project;
//! targets `*` or projects; operations by service `*` or name, methods `*`, names, or none),
//! egress rules (`identityType` or `identities`; targets; operations), restricted services, and
//! VPC accessible services (the emulator models `SERVICE_NOT_ALLOWED_FROM_VPC` as Google does).
//! Not generated: perimeter bridges, custom (CEL) levels, regions and device policies (neither
//! side knows a caller's region or device), `sourceRestriction` and egress sources, IAM
//! permission selectors and roles, groups and other principal kinds, callers on VPC networks
//! (kfsec names the network itself as the source, the emulator its project), `*` in
//! `restrictedServices` or `allowedServices`, and principals in other than lower case.
//!
//! `KFSEC_DIFF_SEED` (a number) replays another seed; `KFSEC_DIFF_CASES` changes the count.

use std::fmt::Write as _;
use std::net::IpAddr;

use google_cloud_identity_accesscontextmanager_v1::model::{AccessLevel, ServicePerimeter};
use kfsec_core::{Member, ProjectNumber};
use kfsec_emulator::Emulator;
use kfsec_vpcsc::{AccessAttempt, Decision, Mode, Reason, evaluate, perimeter_config};
use serde_json::{Value, json};

use crate::common::{emulator, fast};

/// The seed of the generated cases; print it and set `KFSEC_DIFF_SEED` to replay a failure.
const SEED: u64 = 0x6b66_7365_635f_6469;
const CASES: usize = 3000;
const ATTEMPTS_PER_CASE: usize = 6;
/// Cases written to the emulator at once (at most 4 levels each: under its 500 per policy).
const BATCH: usize = 20;

const ORG: &str = "organizations/123456789";
const SERVICES: &[&str] = &[
    "storage.googleapis.com",
    "bigquery.googleapis.com",
    "compute.googleapis.com",
    "pubsub.googleapis.com",
];
const METHODS: &[&str] = &[
    "google.x.v1.Service.Get",
    "google.x.v1.Service.List",
    "google.x.v1.Service.Create",
];
const PRINCIPALS: &[&str] = &[
    "user:alice@example.com",
    "user:bob@example.com",
    "serviceAccount:sa1@kf-dev.iam.gserviceaccount.com",
    "serviceAccount:sa2@kf-dev.iam.gserviceaccount.com",
];
const SUBNETS: &[&str] = &[
    "203.0.113.0/24",
    "198.51.100.0/24",
    "192.0.2.0/25",
    "10.0.0.0/8",
    "2001:db8::/32",
];
const CALLER_IPS: &[&str] = &[
    "203.0.113.7",
    "198.51.100.9",
    "192.0.2.5",
    "192.0.2.200",
    "10.1.2.3",
    "2001:db8::1",
    "8.8.8.8",
];
/// Projects per case: the first `INSIDE` may be in the perimeter, the rest never are.
const PROJECTS: u64 = 6;
const INSIDE: u64 = 4;

/// SplitMix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Between `min` and `max` distinct items, in their original order.
    fn subset<T: Clone>(&mut self, items: &[T], min: usize, max: usize) -> Vec<T> {
        let want = min + self.below(max.min(items.len()) - min + 1);
        let mut chosen: Vec<usize> = (0..items.len()).collect();
        for i in 0..chosen.len() {
            let j = i + self.below(chosen.len() - i);
            chosen.swap(i, j);
        }
        chosen.truncate(want);
        chosen.sort_unstable();
        chosen.into_iter().map(|i| items[i].clone()).collect()
    }
}

/// One generated case: a perimeter, its levels, and attempts against it.
struct Case {
    perimeter: Value,
    levels: Vec<Value>,
    attempts: Vec<Value>,
}

fn project(case: usize, i: u64) -> u64 {
    100_000_000_000 + case as u64 * 10 + i
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn random_level(rng: &mut Rng, name: &str, earlier: &[String]) -> Value {
    let conditions: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            let mut c = json!({});
            // At least one field: an empty condition is not something Google stores.
            loop {
                if rng.chance(50) {
                    c["members"] = json!(rng.subset(&strings(PRINCIPALS), 1, 2));
                }
                if rng.chance(50) {
                    c["ipSubnetworks"] = json!(rng.subset(&strings(SUBNETS), 1, 2));
                }
                if !earlier.is_empty() && rng.chance(25) {
                    c["requiredAccessLevels"] = json!(rng.subset(earlier, 1, 2));
                }
                if c.as_object().is_some_and(|o| !o.is_empty()) {
                    break;
                }
            }
            if rng.chance(20) {
                c["negate"] = json!(true);
            }
            c
        })
        .collect();
    let mut basic = json!({ "conditions": conditions });
    if rng.chance(50) {
        basic["combiningFunction"] = json!("OR");
    }
    json!({ "name": name, "title": "generated", "basic": basic })
}

fn random_from(rng: &mut Rng) -> Value {
    if rng.chance(50) {
        let t = *rng.pick(&[
            "ANY_IDENTITY",
            "ANY_IDENTITY",
            "ANY_USER_ACCOUNT",
            "ANY_SERVICE_ACCOUNT",
        ]);
        json!({ "identityType": t })
    } else {
        json!({ "identities": rng.subset(&strings(PRINCIPALS), 1, 2) })
    }
}

fn random_operations(rng: &mut Rng) -> Value {
    let ops: Vec<Value> = (0..1 + rng.below(2))
        .map(|_| {
            if rng.chance(10) {
                return json!({ "serviceName": "*" });
            }
            let service = *rng.pick(SERVICES);
            let selectors: Vec<Value> = match rng.below(3) {
                0 => Vec::new(),
                1 => vec![json!({ "method": "*" })],
                _ => rng
                    .subset(&strings(METHODS), 1, 2)
                    .into_iter()
                    .map(|m| json!({ "method": m }))
                    .collect(),
            };
            json!({ "serviceName": service, "methodSelectors": selectors })
        })
        .collect();
    json!(ops)
}

fn random_targets(rng: &mut Rng, projects: &[String]) -> Value {
    if rng.chance(40) {
        json!(["*"])
    } else {
        json!(rng.subset(projects, 1, 2))
    }
}

fn random_config(rng: &mut Rng, case: usize, levels: &[String]) -> Value {
    let all: Vec<String> = (0..PROJECTS)
        .map(|i| format!("projects/{}", project(case, i)))
        .collect();
    let inside: Vec<String> = all[..INSIDE as usize].to_vec();
    let mut cfg = json!({
        "resources": rng.subset(&inside, 1, 3),
        "restrictedServices": rng.subset(&strings(SERVICES), 2, 4),
    });
    if !levels.is_empty() && rng.chance(60) {
        cfg["accessLevels"] = json!(rng.subset(levels, 1, 2));
    }
    if rng.chance(30) {
        let mut allowed = rng.subset(&strings(SERVICES), 0, 2);
        if rng.chance(50) {
            allowed.push("RESTRICTED-SERVICES".to_string());
        }
        cfg["vpcAccessibleServices"] = if rng.chance(75) {
            json!({ "enableRestriction": true, "allowedServices": allowed })
        } else {
            json!({ "enableRestriction": false })
        };
    }
    let ingress: Vec<Value> = (0..rng.below(4))
        .map(|_| {
            let mut from = random_from(rng);
            let sources: Vec<Value> = (0..1 + rng.below(2))
                .map(|_| match rng.below(3) {
                    0 => json!({ "accessLevel": "*" }),
                    1 if !levels.is_empty() => json!({ "accessLevel": rng.pick(levels) }),
                    _ => json!({ "resource": rng.pick(&all) }),
                })
                .collect();
            from["sources"] = json!(sources);
            json!({
                "ingressFrom": from,
                "ingressTo": {
                    "resources": random_targets(rng, &all),
                    "operations": random_operations(rng),
                },
            })
        })
        .collect();
    if !ingress.is_empty() {
        cfg["ingressPolicies"] = json!(ingress);
    }
    let egress: Vec<Value> = (0..rng.below(3))
        .map(|_| {
            json!({
                "egressFrom": random_from(rng),
                "egressTo": {
                    "resources": random_targets(rng, &all),
                    "operations": random_operations(rng),
                },
            })
        })
        .collect();
    if !egress.is_empty() {
        cfg["egressPolicies"] = json!(egress);
    }
    cfg
}

fn random_case(rng: &mut Rng, policy: &str, case: usize) -> Case {
    let mut names = Vec::new();
    let mut levels = Vec::new();
    for i in 0..rng.below(5) {
        let name = format!("{policy}/accessLevels/c{case}_l{i}");
        levels.push(random_level(rng, &name, &names));
        names.push(name);
    }
    let mut perimeter = json!({
        "name": format!("{policy}/servicePerimeters/c{case}"),
        "title": format!("case {case}"),
        "status": random_config(rng, case, &names),
    });
    if rng.chance(40) {
        perimeter["useExplicitDryRunSpec"] = json!(true);
        perimeter["spec"] = random_config(rng, case, &names);
    }
    // Targets and sources lean towards the enforced perimeter's projects, so that most attempts
    // cross it (and meet its levels and rules) rather than miss it.
    let inside: Vec<String> = strings(
        &perimeter["status"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>(),
    );
    let some_project = |rng: &mut Rng| {
        if rng.chance(50) {
            rng.pick(&inside).clone()
        } else {
            format!(
                "projects/{}",
                project(case, rng.below(PROJECTS as usize) as u64)
            )
        }
    };
    let attempts = (0..ATTEMPTS_PER_CASE)
        .map(|_| {
            let mut a = json!({
                "principal": rng.pick(PRINCIPALS),
                "service": rng.pick(SERVICES),
                "method": rng.pick(METHODS),
                "target_project": some_project(rng),
            });
            if rng.chance(70) {
                a["source_project"] = json!(some_project(rng));
            }
            if rng.chance(60) {
                a["caller_ip"] = json!(rng.pick(CALLER_IPS));
            }
            a
        })
        .collect();
    Case {
        perimeter,
        levels,
        attempts,
    }
}

/// The same attempt for kfsec's evaluator.
fn kfsec_attempt(a: &Value) -> AccessAttempt {
    let number = |key: &str| -> Option<ProjectNumber> {
        let text = a[key].as_str()?.strip_prefix("projects/")?;
        Some(ProjectNumber::new(text.parse().unwrap()))
    };
    let principal: Member = a["principal"].as_str().unwrap().parse().unwrap();
    let mut attempt = AccessAttempt::new(
        principal,
        a["service"].as_str().unwrap(),
        a["method"].as_str().unwrap(),
        number("target_project").unwrap(),
    );
    if let Some(source) = number("source_project") {
        attempt = attempt.with_source_project(source);
    }
    if let Some(ip) = a["caller_ip"].as_str() {
        attempt = attempt.with_caller_ip(ip.parse::<IpAddr>().unwrap());
    }
    attempt
}

fn denial(d: &Decision) -> Option<&'static str> {
    match &d.reason {
        Reason::Denied(v) => Some(v.as_str()),
        _ => None,
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http.post(&url).json(&body).send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {url}: {status} {answer:#}");
    answer
}

/// Creates the access policy the cases go into; answers its name.
async fn create_policy(emu: &Emulator, http: &reqwest::Client) -> String {
    let base = emu.endpoint("accesscontextmanager").unwrap();
    post(
        http,
        format!("{base}v1/accessPolicies"),
        json!({ "parent": ORG, "title": "differential" }),
    )
    .await;
    let list: Value = http
        .get(format!("{base}v1/accessPolicies?parent={ORG}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["accessPolicies"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Replaces the policy's perimeters and levels with the batch's.
async fn install(emu: &Emulator, http: &reqwest::Client, policy: &str, batch: &[Case]) {
    let base = format!(
        "{}v1/{policy}",
        emu.endpoint("accesscontextmanager").unwrap()
    );
    let perimeters = format!("{base}/servicePerimeters:replaceAll");
    // The previous batch's perimeters use its levels: drop them first.
    post(http, perimeters.clone(), json!({ "servicePerimeters": [] })).await;
    let levels: Vec<&Value> = batch.iter().flat_map(|c| &c.levels).collect();
    post(
        http,
        format!("{base}/accessLevels:replaceAll"),
        json!({ "accessLevels": levels }),
    )
    .await;
    let all: Vec<&Value> = batch.iter().map(|c| &c.perimeter).collect();
    post(http, perimeters, json!({ "servicePerimeters": all })).await;
}

/// What differs between the two answers for one mode, if anything.
fn compare(mode: &str, ours: &Decision, theirs: &Value) -> Option<String> {
    let allowed = theirs["allowed"].as_bool().unwrap();
    if ours.allowed != allowed {
        return Some(format!(
            "{mode}: kfsec says allowed={} ({:?}), the emulator allowed={allowed}",
            ours.allowed, ours.reason
        ));
    }
    let (Some(a), Some(b)) = (denial(ours), theirs["reason"].as_str()) else {
        return None;
    };
    (a != b).then(|| format!("{mode}: both deny, kfsec with {a}, the emulator with {b}"))
}

/// The reason without the rule's index or the level's name, for the statistics.
fn reason_kind(reason: &Reason) -> String {
    match reason {
        Reason::Denied(v) => v.as_str().to_string(),
        Reason::AccessLevel(_) => "AccessLevel".to_string(),
        Reason::IngressRule(_) => "IngressRule".to_string(),
        Reason::EgressRule(_) => "EgressRule".to_string(),
        other => format!("{other:?}"),
    }
}

fn env_number<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kfsec_and_the_emulator_agree_on_generated_perimeters_and_attempts() {
    let seed = env_number("KFSEC_DIFF_SEED", SEED);
    let cases = env_number("KFSEC_DIFF_CASES", CASES);
    let emu = emulator(fast()).await;
    let http = reqwest::Client::new();
    let policy = create_policy(&emu, &http).await;
    let mut rng = Rng(seed);
    let (mut compared, mut denied, mut allowed, mut dry_runs) = (0usize, 0usize, 0usize, 0usize);
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = String::new();
    let mut failed = 0usize;

    let mut start = 0;
    while start < cases {
        let batch: Vec<Case> = (start..(start + BATCH).min(cases))
            .map(|case| random_case(&mut rng, &policy, case))
            .collect();
        install(&emu, &http, &policy, &batch).await;
        let attempts: Vec<&Value> = batch.iter().flat_map(|c| &c.attempts).collect();
        let answer = emu.access_attempts(&json!(attempts));
        let decisions = answer["decisions"]
            .as_array()
            .unwrap_or_else(|| panic!("the emulator refused the attempts: {answer:#}"));
        assert_eq!(decisions.len(), attempts.len());
        let mut next = decisions.iter();
        for (offset, case) in batch.iter().enumerate() {
            let perimeter: ServicePerimeter =
                serde_json::from_value(case.perimeter.clone()).unwrap();
            let levels: Vec<AccessLevel> = case
                .levels
                .iter()
                .map(|l| serde_json::from_value(l.clone()).unwrap())
                .collect();
            if perimeter.use_explicit_dry_run_spec {
                dry_runs += 1;
            }
            for attempt in &case.attempts {
                let theirs = next.next().unwrap();
                let a = kfsec_attempt(attempt);
                let mut diffs = Vec::new();
                for (mode, key) in [(Mode::Enforced, "enforced"), (Mode::DryRun, "dryRun")] {
                    let config = perimeter_config(&perimeter, mode).unwrap();
                    let ours = evaluate(config, &levels, &a);
                    if mode == Mode::Enforced {
                        if ours.allowed {
                            allowed += 1;
                        } else {
                            denied += 1;
                        }
                        *reasons.entry(reason_kind(&ours.reason)).or_default() += 1;
                    }
                    diffs.extend(compare(key, &ours, &theirs[key]));
                }
                compared += 1;
                if !diffs.is_empty() {
                    failed += 1;
                    if failed <= 5 {
                        let _ = write!(
                            failures,
                            "\n--- case {} (seed {seed:#x}): {}\nperimeter: {}\nlevels: {}\nattempt: {}\nemulator: {}\n",
                            start + offset,
                            diffs.join("; "),
                            case.perimeter,
                            json!(case.levels),
                            attempt,
                            theirs,
                        );
                    }
                }
            }
        }
        start += BATCH;
    }
    println!(
        "seed {seed:#x}: {cases} perimeters ({dry_runs} with a dry-run spec), {compared} attempts \
         (enforced): {allowed} allowed, {denied} denied, by reason {reasons:?}"
    );
    assert!(
        failed == 0,
        "{failed} of {compared} attempts got different answers (first ones below; replay with \
         KFSEC_DIFF_SEED={seed}):{failures}"
    );
    // The generator reaches every kind of answer often enough to mean something (checked for
    // the default count only: a replay with few cases may not).
    if cases >= CASES {
        assert!(denied > compared / 10, "{reasons:?}");
        for kind in [
            "NotRestricted",
            "InsidePerimeter",
            "AccessLevel",
            "IngressRule",
            "EgressRule",
            "NO_MATCHING_ACCESS_LEVEL",
            "RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER",
            "SERVICE_NOT_ALLOWED_FROM_VPC",
        ] {
            let seen = reasons.get(kind).copied().unwrap_or(0);
            assert!(seen > compared / 200, "{kind}: {reasons:?}");
        }
    }
}
