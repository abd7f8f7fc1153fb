//! IAM v1 (`iam.googleapis.com`): service accounts (create, get, list, patch, delete), as gcloud
//! 528 and the Rust SDK (`google-cloud-iam-admin-v1`) call them.
//!
//! Routes: `/v1/projects/{project}/serviceAccounts` (`GET` list, `POST` create) and
//! `/v1/projects/{project}/serviceAccounts/{email or uniqueId}` (`GET`, `PATCH`, `DELETE`), where
//! `{project}` is an id, a number, or `-` (any project: gcloud's `describe` and `delete` use it).

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, State};
use crate::wire::{ApiRequest, list_response, parse_mask};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "iam";

/// The domain of user-managed service accounts: `{accountId}@{project}.iam.gserviceaccount.com`.
const DOMAIN: &str = ".iam.gserviceaccount.com";
/// The etag Google answers for service accounts (base64 of `01021920`).
const ACCOUNT_ETAG: &str = "MDEwMjE5MjA=";
/// The first unique id (21 digits, like Google's); each account gets the next one.
const FIRST_UNIQUE_ID: u128 = 110_000_000_000_000_000_000;
const MAX_DISPLAY_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 256;

/// One service account.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceAccount {
    /// The project id.
    project: String,
    account_id: String,
    unique_id: String,
    display_name: String,
    description: String,
}

impl ServiceAccount {
    fn email(&self) -> String {
        format!("{}@{}{DOMAIN}", self.account_id, self.project)
    }

    /// The account as Google answers it: empty strings omitted, as proto3 JSON does.
    fn to_json(&self) -> Value {
        let email = self.email();
        let mut v = json!({
            "name": format!("projects/{}/serviceAccounts/{email}", self.project),
            "projectId": self.project,
            "uniqueId": self.unique_id,
            "email": email,
            "etag": ACCOUNT_ETAG,
            "oauth2ClientId": self.unique_id,
        });
        if !self.display_name.is_empty() {
            v["displayName"] = json!(self.display_name);
        }
        if !self.description.is_empty() {
            v["description"] = json!(self.description);
        }
        v
    }
}

/// The IAM part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct IamState {
    /// Keyed by email.
    accounts: BTreeMap<String, ServiceAccount>,
    /// Accounts created so far (numbers the unique ids).
    created: u64,
}

/// `X@P.iam.gserviceaccount.com` -> `P`.
fn domain_project(email: &str) -> Option<&str> {
    let (_, domain) = email.split_once('@')?;
    domain.strip_suffix(DOMAIN).filter(|p| !p.is_empty())
}

/// True when `email` names a user-managed service account of a project this emulator knows
/// (`X@P.iam.gserviceaccount.com`) that does not exist. Accounts of other domains (Google-managed
/// ones, the default compute account) and of unknown projects are never "missing".
pub(crate) fn missing_account(st: &State, email: &str) -> bool {
    domain_project(email).is_some_and(|p| st.project(p).is_some())
        && !st.iam.accounts.contains_key(email)
}

/// Account ids: 6-30 characters, `[a-z]([-a-z0-9]*[a-z0-9])`.
fn check_account_id(id: &str) -> ApiResult<()> {
    if !(6..=30).contains(&id.len()) {
        return Err(ApiError::invalid_argument(format!(
            "The account ID \"{id}\" does not have a length between 6 and 30."
        )));
    }
    let b = id.as_bytes();
    let ok = b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if !ok {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'accountId': \"{id}\". The account ID must match the regular expression [a-z]([-a-z0-9]*[a-z0-9])."
        )));
    }
    Ok(())
}

fn check_texts(sa: &Value) -> ApiResult<(String, String)> {
    let text = |key: &str| {
        sa.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (display_name, description) = (text("displayName"), text("description"));
    if display_name.chars().count() > MAX_DISPLAY_NAME {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'serviceAccount.displayName': it is longer than {MAX_DISPLAY_NAME} characters."
        )));
    }
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'serviceAccount.description': it is longer than {MAX_DESCRIPTION} characters."
        )));
    }
    Ok((display_name, description))
}

fn denied(permission: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Permission '{permission}' denied on resource (or it may not exist)."
    ))
}

fn unknown_account() -> ApiError {
    ApiError::not_found("Unknown service account")
}

/// Resolves `{project}` of a path to a project id (`None` for `-`).
fn project_of(st: &State, p: &str, permission: &str) -> ApiResult<Option<String>> {
    if p == "-" {
        return Ok(None);
    }
    st.project(p)
        .map(|p| Some(p.id.clone()))
        .ok_or_else(|| denied(permission))
}

/// The email of the account named by an email or a unique id.
fn find(st: &State, key: &str) -> ApiResult<String> {
    if st.iam.accounts.contains_key(key) {
        return Ok(key.to_string());
    }
    st.iam
        .accounts
        .values()
        .find(|a| a.unique_id == key)
        .map(ServiceAccount::email)
        .ok_or_else(unknown_account)
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, _env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    match (parts.as_slice(), req.verb()) {
        (["v1", "projects", p, "serviceAccounts"], "") if m == Method::GET => {
            let project = project_of(st, p, "iam.serviceAccounts.list")?;
            let items = st
                .iam
                .accounts
                .values()
                .filter(|a| project.as_ref().is_none_or(|p| a.project == *p))
                .map(ServiceAccount::to_json)
                .collect();
            let (page, next) = req.paginate(items, 20, 100)?;
            Ok(list_response("accounts", page, next))
        }
        (["v1", "projects", p, "serviceAccounts"], "") if m == Method::POST => create(st, req, p),
        (["v1", "projects", p, "serviceAccounts", key], "") if m == Method::GET => {
            project_of(st, p, "iam.serviceAccounts.get")?;
            let email = find(st, key)?;
            Ok(st.iam.accounts[&email].to_json())
        }
        (["v1", "projects", p, "serviceAccounts", key], "") if m == Method::PATCH => {
            project_of(st, p, "iam.serviceAccounts.update")?;
            let email = find(st, key)?;
            patch(st, req, &email)
        }
        (["v1", "projects", p, "serviceAccounts", key], "") if m == Method::DELETE => {
            project_of(st, p, "iam.serviceAccounts.delete")?;
            let email = find(st, key)?;
            if let Some(sa) = st.iam.accounts.remove(&email) {
                crate::resourcemanager::account_deleted(
                    st,
                    &format!("serviceAccount:{email}"),
                    &sa.unique_id,
                );
            }
            Ok(json!({}))
        }
        _ => Err(ApiError::not_found(format!(
            "Method {} not found for path /{}.",
            req.method,
            req.segments.join("/")
        ))),
    }
}

fn create(st: &mut State, req: &ApiRequest, p: &str) -> ApiResult<Value> {
    let Some(project) = project_of(st, p, "iam.serviceAccounts.create")? else {
        return Err(denied("iam.serviceAccounts.create"));
    };
    let account_id = req.body_str("accountId").to_string();
    if account_id.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'accountId' is required.",
        ));
    }
    check_account_id(&account_id)?;
    let sa = req.body.get("serviceAccount").cloned().unwrap_or(json!({}));
    let (display_name, description) = check_texts(&sa)?;
    let email = format!("{account_id}@{project}{DOMAIN}");
    if st.iam.accounts.contains_key(&email) {
        return Err(ApiError::already_exists(format!(
            "Service account {account_id} already exists within project projects/{project}."
        )));
    }
    st.iam.created += 1;
    let account = ServiceAccount {
        project,
        account_id,
        unique_id: (FIRST_UNIQUE_ID + u128::from(st.iam.created)).to_string(),
        display_name,
        description,
    };
    let v = account.to_json();
    st.iam.accounts.insert(email, account);
    Ok(v)
}

/// `PATCH` with `{"serviceAccount": {...}, "updateMask": "displayName,description"}` (what
/// `gcloud iam service-accounts update` sends).
fn patch(st: &mut State, req: &ApiRequest, email: &str) -> ApiResult<Value> {
    let sa = req.body.get("serviceAccount").cloned().unwrap_or(json!({}));
    let (display_name, description) = check_texts(&sa)?;
    let mask = parse_mask(req.body_str("updateMask"));
    if mask.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'update_mask' is required.",
        ));
    }
    let account = st.iam.accounts.get_mut(email).ok_or_else(unknown_account)?;
    for path in &mask {
        match path.as_str() {
            "displayName" => account.display_name.clone_from(&display_name),
            "description" => account.description.clone_from(&description),
            other => {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid field mask path '{other}' in 'update_mask': only displayName and description can be updated."
                )));
            }
        }
    }
    Ok(account.to_json())
}

/// The IAM part of the admin state: every service account as `GET` answers it, by email.
pub(crate) fn state_json(st: &State) -> Value {
    json!({
        "serviceAccounts": st.iam.accounts.values().map(ServiceAccount::to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(check_account_id("kf-private-nodes").is_ok());
        assert!(check_account_id("abcdef").is_ok());
        assert!(check_account_id(&"a".repeat(30)).is_ok());
        for bad in ["abcde", "Abcdef", "1abcdef", "abcdef-", "abc_def", ""] {
            let e = check_account_id(bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
        }
        assert!(
            check_account_id(&"a".repeat(31))
                .unwrap_err()
                .message
                .contains("between 6 and 30")
        );
        assert!(
            check_account_id("Kf-nodes")
                .unwrap_err()
                .message
                .contains("accountId")
        );
    }

    #[test]
    fn domains() {
        let st = State::seed();
        assert_eq!(
            domain_project("kf-private-nodes@kf-dev.iam.gserviceaccount.com"),
            Some("kf-dev")
        );
        assert_eq!(
            domain_project("123456789012-compute@developer.gserviceaccount.com"),
            None
        );
        assert!(missing_account(
            &st,
            "kf-private-nodes@kf-dev.iam.gserviceaccount.com"
        ));
        assert!(!missing_account(
            &st,
            "kf-private-nodes@elsewhere.iam.gserviceaccount.com"
        ));
        assert!(!missing_account(
            &st,
            "123456789012-compute@developer.gserviceaccount.com"
        ));
    }
}
