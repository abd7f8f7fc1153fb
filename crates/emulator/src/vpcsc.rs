//! The emulator's own VPC Service Controls evaluator: decides access attempts (admin
//! `POST access-attempts`) against the live perimeters, enforced (`status`) and dry run
//! (`spec` of perimeters with `useExplicitDryRunSpec`), and writes the Policy Denied entry
//! Google would for each violation. It shares nothing with kfsec's own evaluation.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Policy, State};

/// One attempted call, as the admin API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attempt {
    /// `user:alice@example.com` or `serviceAccount:x@p.iam.gserviceaccount.com`.
    pub(crate) principal: String,
    #[serde(default)]
    pub(crate) caller_ip: Option<String>,
    /// `//compute.googleapis.com/projects/P/global/networks/N`: the call comes from a VM on
    /// that network (its project is the source when `source_project` is not given).
    #[serde(default)]
    pub(crate) caller_network: Option<String>,
    /// `storage.googleapis.com`.
    pub(crate) service: String,
    /// `google.storage.objects.create`.
    pub(crate) method: String,
    /// `projects/NUMBER`, a project number or a project id.
    pub(crate) target_project: String,
    /// The project the call comes from (for egress), in the same forms.
    #[serde(default)]
    pub(crate) source_project: Option<String>,
}

/// A project as the evaluator needs it: number (for perimeter resources) and id (for log names).
#[derive(Debug, Clone)]
struct Proj {
    number: String,
    id: String,
}

impl Proj {
    fn resource(&self) -> String {
        format!("projects/{}", self.number)
    }
}

fn resolve(st: &State, key: &str, field: &str) -> ApiResult<Proj> {
    let bare = key.strip_prefix("projects/").unwrap_or(key);
    if let Some(p) = st.project(bare) {
        return Ok(Proj {
            number: p.number.clone(),
            id: p.id.clone(),
        });
    }
    if crate::wire::is_number(bare) {
        return Ok(Proj {
            number: bare.to_string(),
            id: bare.to_string(),
        });
    }
    Err(ApiError::invalid_argument(format!(
        "Invalid value for field '{field}': project '{key}' is unknown to the emulator; give its number (projects/NUMBER)."
    )))
}

/// The project of a network URL `//compute.googleapis.com/projects/P/global/networks/N`.
fn network_project(network: &str) -> Option<&str> {
    let rest = network.split("/projects/").nth(1)?;
    rest.split('/').next().filter(|p| !p.is_empty())
}

/// Which configuration of a perimeter is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Enforced,
    DryRun,
}

/// One violated perimeter.
#[derive(Debug, Clone)]
struct Violation {
    perimeter: String,
    reason: &'static str,
    ingress: bool,
}

struct Ctx<'a> {
    attempt: &'a Attempt,
    email: &'a str,
    is_user: bool,
    target: Proj,
    source: Option<Proj>,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn ip_in_cidr(ip: &str, cidr: &str) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Whether the access level named `name` (full name) is satisfied by the attempt. Basic levels
/// only: members, ipSubnetworks, requiredAccessLevels, negate, AND/OR; a condition naming
/// regions or a device policy is never satisfied (the emulator knows neither); custom (CEL)
/// levels are never satisfied.
fn level_matches(policy: &Policy, name: &str, ctx: &Ctx<'_>, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    let short = name.rsplit('/').next().unwrap_or("");
    let Some(level) = policy.levels.get(short) else {
        return false;
    };
    let Some(basic) = level.get("basic") else {
        return false;
    };
    let conditions = basic
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let check = |c: &Value| -> bool {
        let members = strs(c.get("members"));
        let subnets = strs(c.get("ipSubnetworks"));
        let required = strs(c.get("requiredAccessLevels"));
        let mut ok = true;
        if !members.is_empty() {
            ok &= members.contains(&ctx.attempt.principal.as_str());
        }
        if !subnets.is_empty() {
            ok &= ctx
                .attempt
                .caller_ip
                .as_deref()
                .is_some_and(|ip| subnets.iter().any(|s| ip_in_cidr(ip, s)));
        }
        ok &= required
            .iter()
            .all(|r| level_matches(policy, r, ctx, depth + 1));
        if c.get("regions").is_some() || c.get("devicePolicy").is_some() {
            ok = false;
        }
        let negate = c.get("negate").and_then(Value::as_bool) == Some(true);
        ok != negate
    };
    if basic.get("combiningFunction").and_then(Value::as_str) == Some("OR") {
        conditions.iter().any(check)
    } else {
        !conditions.is_empty() && conditions.iter().all(check)
    }
}

fn identity_matches(from: &Value, ctx: &Ctx<'_>) -> bool {
    match from.get("identityType").and_then(Value::as_str) {
        Some("ANY_IDENTITY") => return true,
        Some("ANY_USER_ACCOUNT") => return ctx.is_user,
        Some("ANY_SERVICE_ACCOUNT") => return !ctx.is_user,
        _ => {}
    }
    strs(from.get("identities")).contains(&ctx.attempt.principal.as_str())
}

fn operations_match(to: &Value, ctx: &Ctx<'_>) -> bool {
    let ops = to
        .get("operations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ops.iter().any(|op| {
        let service = op.get("serviceName").and_then(Value::as_str).unwrap_or("");
        if service != "*" && service != ctx.attempt.service {
            return false;
        }
        let selectors = op
            .get("methodSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // `serviceName: "*"` allows every method; a named service allows only the methods its
        // selectors name (`*` for all of them): with no selector, none.
        service == "*"
            || selectors.iter().any(|s| {
                s.get("method")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m == "*" || m == ctx.attempt.method)
            })
    })
}

fn resources_match(to: &Value, resource: &str) -> bool {
    strs(to.get("resources"))
        .iter()
        .any(|r| *r == "*" || *r == resource)
}

fn ingress_allowed(policy: &Policy, config: &Value, ctx: &Ctx<'_>) -> bool {
    let rules = config
        .get("ingressPolicies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rules.iter().any(|rule| {
        let (Some(from), Some(to)) = (rule.get("ingressFrom"), rule.get("ingressTo")) else {
            return false;
        };
        let sources = from
            .get("sources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let source_ok = sources.iter().any(|s| {
            if let Some(level) = s.get("accessLevel").and_then(Value::as_str) {
                level == "*" || level_matches(policy, level, ctx, 0)
            } else if let Some(resource) = s.get("resource").and_then(Value::as_str) {
                ctx.source
                    .as_ref()
                    .is_some_and(|p| p.resource() == resource)
            } else {
                false
            }
        });
        identity_matches(from, ctx)
            && source_ok
            && resources_match(to, &ctx.target.resource())
            && operations_match(to, ctx)
    })
}

fn egress_allowed(config: &Value, ctx: &Ctx<'_>) -> bool {
    let rules = config
        .get("egressPolicies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rules.iter().any(|rule| {
        let (Some(from), Some(to)) = (rule.get("egressFrom"), rule.get("egressTo")) else {
            return false;
        };
        identity_matches(from, ctx)
            && resources_match(to, &ctx.target.resource())
            && operations_match(to, ctx)
    })
}

/// Whether a call from inside the perimeter may reach `service` under its VPC accessible
/// services: always when `enableRestriction` is off; else only a service `allowedServices`
/// lists by name, or any restricted service when it lists `RESTRICTED-SERVICES`.
fn vpc_accessible(config: &Value, restricted: bool, service: &str) -> bool {
    let Some(vpc) = config.get("vpcAccessibleServices") else {
        return true;
    };
    if vpc.get("enableRestriction").and_then(Value::as_bool) != Some(true) {
        return true;
    }
    strs(vpc.get("allowedServices"))
        .iter()
        .any(|s| *s == service || (*s == "RESTRICTED-SERVICES" && restricted))
}

/// The configuration of `perimeter` evaluated in `mode`, `None` when it has none there (no
/// dry-run evaluation without an explicit spec: the implicit spec equals `status` and Google
/// logs nothing for it).
fn config(perimeter: &Value, mode: Mode) -> Option<Value> {
    match mode {
        Mode::Enforced => Some(perimeter.get("status").cloned().unwrap_or(json!({}))),
        Mode::DryRun => (perimeter
            .get("useExplicitDryRunSpec")
            .and_then(Value::as_bool)
            == Some(true))
        .then(|| perimeter.get("spec").cloned().unwrap_or(json!({}))),
    }
}

fn evaluate_perimeter(
    policy: &Policy,
    config: &Value,
    ctx: &Ctx<'_>,
) -> Option<(&'static str, bool)> {
    let resources = strs(config.get("resources"));
    let target_in = resources.contains(&ctx.target.resource().as_str());
    let source_in = ctx
        .source
        .as_ref()
        .is_some_and(|s| resources.contains(&s.resource().as_str()));
    if !target_in && !source_in {
        return None;
    }
    let restricted = strs(config.get("restrictedServices"))
        .iter()
        .any(|s| *s == "*" || *s == ctx.attempt.service);
    if source_in && !vpc_accessible(config, restricted, &ctx.attempt.service) {
        return Some(("SERVICE_NOT_ALLOWED_FROM_VPC", false));
    }
    if !restricted {
        return None;
    }
    if target_in && source_in {
        return None;
    }
    if target_in {
        let levels_ok = strs(config.get("accessLevels"))
            .iter()
            .any(|l| level_matches(policy, l, ctx, 0));
        if levels_ok || ingress_allowed(policy, config, ctx) {
            return None;
        }
        let reason = if ctx.attempt.caller_network.is_some() {
            "NETWORK_NOT_IN_SAME_SERVICE_PERIMETER"
        } else if ctx.source.is_some() {
            "RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER"
        } else {
            "NO_MATCHING_ACCESS_LEVEL"
        };
        return Some((reason, true));
    }
    if egress_allowed(config, ctx) {
        return None;
    }
    let reason = if ctx.attempt.caller_network.is_some() {
        "NETWORK_NOT_IN_SAME_SERVICE_PERIMETER"
    } else {
        "RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER"
    };
    Some((reason, false))
}

fn violations(st: &State, ctx: &Ctx<'_>, mode: Mode) -> Vec<(String, Violation)> {
    let mut out = Vec::new();
    for policy in st.policies.values() {
        for perimeter in policy.perimeters.values() {
            if perimeter.get("perimeterType").and_then(Value::as_str)
                == Some("PERIMETER_TYPE_BRIDGE")
            {
                continue;
            }
            let Some(cfg) = config(perimeter, mode) else {
                continue;
            };
            if let Some((reason, ingress)) = evaluate_perimeter(policy, &cfg, ctx) {
                let name = perimeter
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let org = policy
                    .parent
                    .strip_prefix("organizations/")
                    .unwrap_or(&policy.parent)
                    .to_string();
                out.push((
                    org,
                    Violation {
                        perimeter: name,
                        reason,
                        ingress,
                    },
                ));
            }
        }
    }
    out
}

/// The dry-run decision also covers perimeters without an explicit spec, whose dry-run
/// configuration is their enforced one (no entry is written for those).
fn dry_run_violations(st: &State, ctx: &Ctx<'_>) -> (Vec<(String, Violation)>, Vec<String>) {
    let explicit = violations(st, ctx, Mode::DryRun);
    let mut implicit = Vec::new();
    for policy in st.policies.values() {
        for perimeter in policy.perimeters.values() {
            if perimeter
                .get("useExplicitDryRunSpec")
                .and_then(Value::as_bool)
                == Some(true)
                || perimeter.get("perimeterType").and_then(Value::as_str)
                    == Some("PERIMETER_TYPE_BRIDGE")
            {
                continue;
            }
            let cfg = perimeter.get("status").cloned().unwrap_or(json!({}));
            if let Some((reason, _)) = evaluate_perimeter(policy, &cfg, ctx) {
                implicit.push(reason.to_string());
            }
        }
    }
    (explicit, implicit)
}

fn policy_denied_entry(st: &mut State, ctx: &Ctx<'_>, org: &str, v: &Violation, dry_run: bool) {
    let a = ctx.attempt;
    let unique = format!("{}{}", st.next_etag(), st.next_etag());
    let target = ctx.target.resource();
    let source = ctx
        .source
        .as_ref()
        .map(Proj::resource)
        .or_else(|| a.caller_network.clone());
    let (log_project, violation_key, violation) = if v.ingress {
        let mut iv = json!({"servicePerimeter": v.perimeter, "targetResource": target});
        if let Some(s) = &source {
            iv["source"] = json!(s);
        }
        (ctx.target.id.clone(), "ingressViolations", iv)
    } else {
        let src = ctx.source.clone().unwrap_or_else(|| ctx.target.clone());
        let ev = json!({
            "servicePerimeter": v.perimeter,
            "source": src.resource(),
            "sourceType": if a.caller_network.is_some() { "Network" } else { "Resource" },
            "targetResource": target,
        });
        (src.id, "egressViolations", ev)
    };
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata",
        "violationReason": v.reason,
        "securityPolicyInfo": {"servicePerimeterName": v.perimeter, "organizationId": org},
        "resourceNames": [target],
        "vpcServiceControlsUniqueId": unique,
    });
    metadata[violation_key] = json!([violation]);
    if dry_run {
        metadata["dryRun"] = json!(true);
    }
    let mut request_metadata = json!({});
    match (&a.caller_ip, &a.caller_network) {
        (Some(ip), _) => request_metadata["callerIp"] = json!(ip),
        (None, Some(_)) => request_metadata["callerIp"] = json!("gce-internal-ip"),
        (None, None) => {}
    }
    if let Some(n) = &a.caller_network {
        request_metadata["callerNetwork"] = json!(n);
    }
    let mut payload = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": ctx.email},
        "requestMetadata": request_metadata,
        "serviceName": a.service,
        "methodName": a.method,
        "resourceName": target,
        "metadata": metadata,
    });
    if !dry_run {
        payload["status"] = json!({
            "code": 7,
            "message": format!("Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: {unique}"),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{"type": "VPC_SERVICE_CONTROLS", "description": unique}],
            }],
        });
    }
    let entry = json!({
        "logName": format!("projects/{log_project}/logs/cloudaudit.googleapis.com%2Fpolicy"),
        "insertId": crate::logging::insert_id(st),
        "severity": "ERROR",
        "resource": {
            "type": "audited_resource",
            "labels": {"service": a.service, "method": a.method, "project_id": log_project},
        },
        "protoPayload": payload,
    });
    st.logging.append(entry);
}

fn decision(violations: &[(String, Violation)], implicit: &[String]) -> Value {
    let list: Vec<Value> = violations
        .iter()
        .map(|(_, v)| json!({"perimeter": v.perimeter, "reason": v.reason}))
        .collect();
    let reason = violations
        .first()
        .map(|(_, v)| v.reason.to_string())
        .or_else(|| implicit.first().cloned());
    json!({
        "allowed": violations.is_empty() && implicit.is_empty(),
        "reason": reason,
        "violations": list,
    })
}

/// Evaluates each attempt, writes the Policy Denied entries and answers the decisions.
pub(crate) fn evaluate(st: &mut State, body: &Value) -> ApiResult<Value> {
    let list = match body {
        Value::Array(a) => a.clone(),
        Value::Object(o) if o.contains_key("attempts") => match o.get("attempts") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        },
        Value::Object(_) => vec![body.clone()],
        _ => Vec::new(),
    };
    let mut attempts = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let a: Attempt = serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::invalid_argument(format!(
                "Invalid access attempt [{i}]: {e}; send [{{\"principal\":\"user:alice@example.com\",\"service\":\"storage.googleapis.com\",\"method\":\"google.storage.objects.create\",\"target_project\":\"projects/123456789012\"}}]"
            ))
        })?;
        let Some((kind, email)) = a.principal.split_once(':') else {
            return Err(ApiError::invalid_argument(format!(
                "Invalid access attempt [{i}]: principal '{}' must be user:EMAIL or serviceAccount:EMAIL.",
                a.principal
            )));
        };
        if kind != "user" && kind != "serviceAccount" {
            return Err(ApiError::invalid_argument(format!(
                "Invalid access attempt [{i}]: principal '{}' must be user:EMAIL or serviceAccount:EMAIL.",
                a.principal
            )));
        }
        let target = resolve(st, &a.target_project, "target_project")?;
        let source_key = a.source_project.clone().or_else(|| {
            a.caller_network
                .as_deref()
                .and_then(network_project)
                .map(String::from)
        });
        let source = match source_key {
            Some(k) => Some(resolve(st, &k, "source_project")?),
            None => None,
        };
        attempts.push((a.clone(), email.to_string(), kind == "user", target, source));
    }
    let mut decisions = Vec::new();
    for (attempt, email, is_user, target, source) in &attempts {
        let ctx = Ctx {
            attempt,
            email,
            is_user: *is_user,
            target: target.clone(),
            source: source.clone(),
        };
        let enforced = violations(st, &ctx, Mode::Enforced);
        let (dry, implicit) = dry_run_violations(st, &ctx);
        for (org, v) in &enforced {
            policy_denied_entry(st, &ctx, org, v, false);
        }
        for (org, v) in &dry {
            policy_denied_entry(st, &ctx, org, v, true);
        }
        let enforced_decision = decision(&enforced, &[]);
        decisions.push(json!({
            "principal": attempt.principal,
            "service": attempt.service,
            "method": attempt.method,
            "targetProject": target.resource(),
            "allowed": enforced.is_empty(),
            "enforced": enforced_decision,
            "dryRun": decision(&dry, &implicit),
        }));
    }
    Ok(json!({ "decisions": decisions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert!(ip_in_cidr("203.0.113.7", "203.0.113.0/24"));
        assert!(!ip_in_cidr("203.0.114.7", "203.0.113.0/24"));
        assert!(ip_in_cidr("10.1.2.3", "0.0.0.0/0"));
        assert!(ip_in_cidr("2001:db8::1", "2001:db8::/32"));
        assert!(!ip_in_cidr("2001:db8::1", "10.0.0.0/8"));
        assert!(!ip_in_cidr("nope", "10.0.0.0/8"));
    }

    #[test]
    fn vpc_accessible_services_limit_calls_from_inside() {
        let off = json!({"vpcAccessibleServices": {"allowedServices": []}});
        assert!(vpc_accessible(&off, false, "pubsub.googleapis.com"));
        assert!(vpc_accessible(&json!({}), true, "pubsub.googleapis.com"));
        let on = json!({"vpcAccessibleServices": {
            "enableRestriction": true,
            "allowedServices": ["RESTRICTED-SERVICES", "compute.googleapis.com"],
        }});
        assert!(vpc_accessible(&on, false, "compute.googleapis.com"));
        assert!(vpc_accessible(&on, true, "storage.googleapis.com"));
        assert!(!vpc_accessible(&on, false, "pubsub.googleapis.com"));
        let none = json!({"vpcAccessibleServices": {"enableRestriction": true}});
        assert!(!vpc_accessible(&none, true, "storage.googleapis.com"));
    }

    #[test]
    fn an_operation_without_method_selectors_allows_no_method() {
        let attempt: Attempt = serde_json::from_value(json!({
            "principal": "user:alice@example.com",
            "service": "storage.googleapis.com",
            "method": "google.storage.objects.get",
            "target_project": "projects/1",
        }))
        .unwrap();
        let ctx = Ctx {
            attempt: &attempt,
            email: "alice@example.com",
            is_user: true,
            target: Proj {
                number: "1".into(),
                id: "p".into(),
            },
            source: None,
        };
        let to = |ops: Value| json!({ "operations": ops });
        let storage = |selectors: Value| json!([{"serviceName": "storage.googleapis.com", "methodSelectors": selectors}]);
        assert!(!operations_match(&to(storage(json!([]))), &ctx));
        assert!(!operations_match(
            &to(json!([{"serviceName": "storage.googleapis.com"}])),
            &ctx
        ));
        assert!(operations_match(
            &to(storage(json!([{"method": "*"}]))),
            &ctx
        ));
        assert!(operations_match(
            &to(storage(json!([{"method": "google.storage.objects.get"}]))),
            &ctx
        ));
        assert!(!operations_match(
            &to(storage(
                json!([{"method": "google.storage.objects.create"}])
            )),
            &ctx
        ));
        assert!(operations_match(&to(json!([{"serviceName": "*"}])), &ctx));
    }

    #[test]
    fn network_projects() {
        assert_eq!(
            network_project("//compute.googleapis.com/projects/kf-dev/global/networks/kf-net"),
            Some("kf-dev")
        );
        assert_eq!(network_project("kf-net"), None);
    }
}
