//! A gcloud configuration directory pointing gcloud at the emulator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::EmulatorError;

/// The INI text of `configurations/config_default`.
pub(crate) fn config_text(endpoints: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "[core]\nproject = kf-dev\ndisable_usage_reporting = True\ncheck_gce_metadata = False\n\n\
         [auth]\ndisable_credentials = True\n\n\
         [component_manager]\ndisable_update_check = True\n\n\
         [survey]\ndisable_prompts = True\n\n\
         [api_endpoint_overrides]\n",
    );
    for (api, url) in endpoints {
        // The registry and Kubernetes are not gcloud APIs: clients map image hosts to the
        // registry themselves, and reach Kubernetes through a kubeconfig.
        if api != crate::admin::API && api != crate::registry::API && api != crate::kubernetes::API
        {
            let _ = writeln!(s, "{api} = {url}");
        }
    }
    s
}

/// Writes `DIR/active_config` and `DIR/configurations/config_default`.
pub(crate) fn write(dir: &Path, endpoints: &BTreeMap<String, String>) -> Result<(), EmulatorError> {
    std::fs::create_dir_all(dir.join("configurations"))?;
    std::fs::write(dir.join("active_config"), "default")?;
    std::fs::write(
        dir.join("configurations").join("config_default"),
        config_text(endpoints),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_lists_apis_but_not_admin() {
        let mut e = BTreeMap::new();
        e.insert("admin".to_string(), "http://127.0.0.1:1/".to_string());
        e.insert(
            "serviceusage".to_string(),
            "http://127.0.0.1:2/".to_string(),
        );
        e.insert("iam".to_string(), "http://127.0.0.1:3/".to_string());
        e.insert("registry".to_string(), "http://127.0.0.1:4/".to_string());
        e.insert("kubernetes".to_string(), "http://127.0.0.1:5/".to_string());
        e.insert("logging".to_string(), "http://127.0.0.1:6/".to_string());
        let text = config_text(&e);
        assert!(!text.contains("registry"));
        assert!(!text.contains("kubernetes"));
        assert!(text.contains("serviceusage = http://127.0.0.1:2/\n"));
        assert!(text.contains("iam = http://127.0.0.1:3/\n"));
        // `gcloud logging read` goes to the emulator too.
        assert!(text.contains("logging = http://127.0.0.1:6/\n"));
        assert!(!text.contains("admin"));
        assert!(text.contains("disable_credentials = True"));
        assert!(text.contains("project = kf-dev"));
    }
}
