//! Helpers: an emulator's connection, the example config, the emulator's state normalized for
//! comparing two runs, and the mutating requests of a run.

use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

use crate::config::in_workspace;

pub(crate) use kfsec_test_support::connection;

pub(crate) fn config() -> kfsec::Config {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kf-dev.yaml"
    ))
    .unwrap();
    in_workspace(&text).unwrap()
}

pub(crate) async fn emulator(lro_ms: u64, fault_rate: f64, fault_seed: u64) -> Emulator {
    Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(lro_ms),
        fault_rate,
        fault_seed,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap()
}

pub(crate) use kfsec_test_support::mutating;

/// Fields that differ between two runs that reached the same state: ids, times, etags,
/// versions, generated certificates and keys.
const VOLATILE: &[&str] = &[
    "etag",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "createTime",
    "updateTime",
    "managedFields",
    "generation",
    "id",
    "selfLink",
    "selfLinkWithId",
    "fingerprint",
    "masterAuth",
    "creationTime",
    "observedGeneration",
];

fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for k in VOLATILE {
                map.remove(*k);
            }
            // Secrets hold generated certificates: compare their keys, not their bytes.
            if map.get("kind").and_then(Value::as_str) == Some("Secret")
                && let Some(Value::Object(data)) = map.get_mut("data")
            {
                for x in data.values_mut() {
                    *x = Value::String("<data>".into());
                }
            }
            for x in map.values_mut() {
                normalize(x);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::String(s) => {
            // accessPolicies/100000000011 -> accessPolicies/N: numbers are handed out in order.
            if let Some(at) = s.find("accessPolicies/") {
                let start = at + "accessPolicies/".len();
                let end = s[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(s.len(), |e| start + e);
                s.replace_range(start..end, "N");
            }
        }
        _ => {}
    }
}

/// The emulator's resources (not its operation and change logs), normalized.
pub(crate) fn resources(emu: &Emulator) -> Value {
    let mut state = emu.state();
    if let Value::Object(map) = &mut state {
        map.remove("cloudbuild");
        // The audit log is history, not state: a retried or cancelled write logs again.
        map.remove("logging");
        if let Some(Value::Object(c)) = map.get_mut("container") {
            c.remove("operations");
        }
        if let Some(Value::Object(d)) = map.get_mut("dns") {
            d.remove("changes");
        }
    }
    normalize(&mut state);
    state
}

/// The first difference between two normalized states, as a path and both values.
pub(crate) fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            // Each key once: visiting a key of both sides twice doubled the work at every
            // level, and a CRD's schema is twenty levels deep.
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                if let Some(d) = first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &p,
                ) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        (x, y) if x == y => None,
        (x, y) => Some(format!(
            "{path}:\n  expected {}\n  got      {}",
            serde_json::to_string(x).unwrap_or_default(),
            serde_json::to_string(y).unwrap_or_default()
        )),
    }
}
