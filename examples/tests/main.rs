//! The example programs run as a new user runs them: built binaries, real config files, an
//! emulator whose request log shows what each run sent.

mod gkeprivate;
mod iapingress;
mod imagemirror;
mod privatedns;
mod vpcsc;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built example binary (cargo builds examples before running tests).
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run through `cargo test`",
        path.display()
    );
    path
}

/// Runs an example from the workspace root, as the README does.
pub(crate) async fn run(name: &str, args: &[&str]) -> Output {
    run_with_env(name, args, &[("RUST_LOG", "warn")]).await
}

/// Runs an example from the workspace root with these environment variables added.
pub(crate) async fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let (exe, args) = (
        example(name),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("RUST_LOG", "warn")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// An emulator on loopback ports and its endpoints file (kept while the directory lives).
pub(crate) async fn running_emulator(
    options: kfsec_emulator::EmulatorOptions,
) -> (kfsec_emulator::Emulator, tempfile::TempDir, String) {
    let emu = kfsec_emulator::Emulator::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.json");
    emu.write_endpoints_file(&path).unwrap();
    let path = path.to_str().unwrap().to_string();
    (emu, dir, path)
}

pub(crate) use kfsec_test_support::mutating;

pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

mod secure_kubeflow {
    //! `cargo run --example secure-kubeflow`: the README's first command.

    use kfsec_emulator::EmulatorOptions;

    use crate::{mutating, run, running_emulator, text};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_second_run_against_the_same_emulator_sends_no_mutating_request() {
        let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
        let first = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
        assert!(first.status.success(), "{:?}", text(&first));
        let before = emu.requests().len();
        let plan = run("secure-kubeflow", &["plan", "--endpoints", &endpoints]).await;
        let (stdout, stderr) = text(&plan);
        assert!(plan.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("Nothing to change."), "{stdout}");
        let second = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
        let (stdout, stderr) = text(&second);
        assert!(second.status.success(), "{stdout}\n{stderr}");
        assert_eq!(mutating(&emu, before), Vec::<String>::new(), "{stdout}");
        let verify = run("secure-kubeflow", &["verify", "--endpoints", &endpoints]).await;
        assert!(verify.status.success(), "{:?}", text(&verify));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn destroy_asks_first_then_deletes_only_what_kfsec_made() {
        let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
        let applied = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
        assert!(applied.status.success(), "{:?}", text(&applied));

        // No terminal to ask on and no --yes: the plan, a refusal, nothing deleted.
        let since = emu.requests().len();
        let refused = run("secure-kubeflow", &["destroy", "--endpoints", &endpoints]).await;
        let (stdout, stderr) = text(&refused);
        assert_eq!(refused.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(
            stdout
                .contains("- cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private"),
            "{stdout}"
        );
        assert!(stderr.contains("--yes"), "{stderr}");
        assert_eq!(mutating(&emu, since), Vec::<String>::new());

        // On a terminal (script(1) gives it one), anything but "yes" deletes nothing.
        let command = format!(
            "{} destroy --endpoints {endpoints}",
            crate::example("secure-kubeflow").display()
        );
        let answered_no = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut child = std::process::Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("script(1) from util-linux runs the example on a terminal");
            if let Some(stdin) = child.stdin.as_mut() {
                stdin.write_all(b"no\n").unwrap();
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let (stdout, stderr) = text(&answered_no);
        assert_eq!(answered_no.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.contains("Only 'yes' goes on"), "{stdout}");
        assert!(stdout.contains("Nothing was deleted."), "{stdout}");
        assert_eq!(mutating(&emu, since), Vec::<String>::new());

        let done = run(
            "secure-kubeflow",
            &["destroy", "--yes", "--endpoints", &endpoints],
        )
        .await;
        let (stdout, stderr) = text(&done);
        assert!(done.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("deleted   cluster"), "{stdout}");
        assert!(stdout.contains("done     perimeter"), "{stdout}");
        assert!(stdout.contains("Kept on purpose"), "{stdout}");
        let state = emu.state();
        assert!(
            state["container"]["clusters"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            state["accesscontextmanager"]["servicePerimeters"]
                .as_array()
                .unwrap()
                .is_empty()
        );

        let since = emu.requests().len();
        let again = run("secure-kubeflow", &["destroy", "--endpoints", &endpoints]).await;
        let (stdout, stderr) = text(&again);
        assert!(again.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("Nothing to delete"), "{stdout}");
        assert_eq!(mutating(&emu, since), Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupted_apply_says_so_in_one_line_and_the_next_apply_finishes() {
        use std::io::Read as _;
        // Slow operations, so the signal lands while work is in flight.
        let (emu, _dir, endpoints) = running_emulator(EmulatorOptions {
            lro: std::time::Duration::from_millis(400),
            ..EmulatorOptions::default()
        })
        .await;
        for (signal, code) in [("INT", 130), ("TERM", 143)] {
            let exe = crate::example("secure-kubeflow");
            let endpoints = endpoints.clone();
            let out = tokio::task::spawn_blocking(move || {
                let mut child = std::process::Command::new(exe)
                    .args(["apply", "--endpoints", &endpoints])
                    .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                // Wait for the first line (the run has begun), then interrupt.
                let mut stdout = child.stdout.take().unwrap();
                let mut first = [0u8; 64];
                let _ = stdout.read(&mut first).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                let killed = std::process::Command::new("kill")
                    .args([&format!("-{signal}"), &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(killed.success());
                let mut rest = String::new();
                let _ = stdout.read_to_string(&mut rest);
                let output = child.wait_with_output().unwrap();
                use std::os::unix::process::ExitStatusExt as _;
                let first = String::from_utf8_lossy(&first).replace('\0', "");
                let seen = format!(
                    "[signal {:?}] stdout: {first}{rest}\nstderr: {}",
                    output.status.signal(),
                    String::from_utf8_lossy(&output.stderr)
                );
                (output.status.code(), seen)
            })
            .await
            .unwrap();
            let (status, stderr) = out;
            assert_eq!(status, Some(code), "SIGTERM/SIGINT {signal}: {stderr}");
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("interrupted:"))
                .collect();
            assert_eq!(
                lines,
                [
                    "interrupted: run apply again to finish (every step is safe to repeat; nothing is left that it cannot complete)"
                ],
                "{stderr}"
            );
        }
        let finished = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
        let (stdout, stderr) = text(&finished);
        assert!(finished.status.success(), "{stdout}\n{stderr}");
        let before = emu.requests().len();
        let again = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
        assert!(again.status.success(), "{:?}", text(&again));
        assert_eq!(mutating(&emu, before), Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_config_with_several_mistakes_gets_all_of_them_before_any_request() {
        let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
        let text_in =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kf-dev.yaml"))
                .unwrap()
                .replace("zone: us-central1-a", "zone: europe-west4-a")
                .replace("name: kubeflow\n", "name: kube-flow\n")
                .replace("master_cidr: 172.16.0.32/28", "master_cidr: 10.10.0.16/28")
                .replace(
                    "members: [user:alice@example.com]\n",
                    "members: [user:alice@example.com, alice]\n",
                );
        let config = dir.path().join("bad.yaml");
        std::fs::write(&config, text_in).unwrap();
        for command in ["plan", "apply", "verify"] {
            let out = run(
                "secure-kubeflow",
                &[
                    command,
                    "--config",
                    config.to_str().unwrap(),
                    "--endpoints",
                    &endpoints,
                ],
            )
            .await;
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
            for field in [
                "zone:",
                "vpcsc.access_level.name",
                "cluster.master_cidr",
                "ingress.members[1]",
            ] {
                assert!(
                    stderr.contains(field),
                    "{command}: {field} missing:\n{stderr}"
                );
            }
        }
        assert_eq!(emu.requests().len(), 0);
    }

    /// An endpoints file of `emu` with one API sent elsewhere.
    fn endpoints_with(
        emu: &kfsec_emulator::Emulator,
        dir: &std::path::Path,
        api: &str,
        url: &str,
    ) -> String {
        let mut endpoints = emu.endpoints().clone();
        endpoints.insert(api.to_string(), url.to_string());
        let path = dir.join(format!("endpoints-{api}.json"));
        std::fs::write(&path, serde_json::to_string(&endpoints).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_endpoint_that_fails_ends_apply_within_a_minute_naming_its_url_and_the_cause() {
        // Issue 23: an endpoint on a closed port kept apply retrying for over 30 minutes
        // ("transient error or conflict"), never naming the address.
        let (emu, dir, _) = running_emulator(EmulatorOptions::default()).await;
        let closed = kfsec_test_support::closed_port();
        let plain = emu
            .endpoint("container")
            .unwrap()
            .replace("http://", "https://");
        let html = kfsec_test_support::html_500().await;
        let cases = [
            (
                "accesscontextmanager",
                closed.as_str(),
                "connection refused",
            ),
            ("container", plain.as_str(), "TLS"),
            ("compute", html.as_str(), "HTML"),
        ];
        for (api, url, cause) in cases {
            let endpoints = endpoints_with(&emu, dir.path(), api, url);
            let since = emu.requests().len();
            let start = std::time::Instant::now();
            let out = run("secure-kubeflow", &["apply", "--endpoints", &endpoints]).await;
            let elapsed = start.elapsed();
            let (stdout, stderr) = text(&out);
            assert_ne!(out.status.code(), Some(0), "{api}: {stdout}\n{stderr}");
            assert!(
                elapsed < std::time::Duration::from_secs(60),
                "{api}: {elapsed:?}\n{stderr}"
            );
            let url = url.trim_end_matches('/');
            let last = stderr.lines().rfind(|l| l.starts_with("Error:"));
            let last = last.unwrap_or_else(|| panic!("{api}: no Error line:\n{stderr}"));
            assert!(
                last.contains(url) && last.contains(cause) && last.contains("what to do"),
                "{api}: the error names neither {url} nor {cause}: {last}"
            );
            if api == "accesscontextmanager" {
                // The perimeter's prerequisites are read before anything is deployed.
                assert!(last.contains("nothing was changed"), "{last}");
                assert_eq!(mutating(&emu, since), Vec::<String>::new());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_main_job_runs_on_the_embedded_emulator_and_prints_a_summary() {
        let out = run("secure-kubeflow", &[]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("kfsec: securing project kf-dev (example.com)"),
            "{stdout}"
        );
        assert!(stdout.contains("created   service perimeter"), "{stdout}");
        assert!(
            stdout.contains("created   private zone kubeflow-gcr-io (gcr.io.)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  VPC Service Controls  in place, enforced and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Private DNS           in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "created   cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Network and cluster   in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Images                all 4 mirrored and pinned by digest"),
            "{stdout}"
        );
        assert!(
            stdout
                .contains("  Workload              7 documents: 7 created, 0 updated, 0 unchanged"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  IAP ingress           in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains("every stage checked: nothing above info level"),
            "{stdout}"
        );
        // Every step ran; none was skipped or failed.
        for id in [
            "perimeter",
            "network",
            "dns",
            "cluster",
            "images",
            "workload",
            "ingress",
            "enforce",
        ] {
            assert!(
                stdout.contains(&format!("  done     {id:<10} ")),
                "{id} did not run:\n{stdout}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn violations_and_check_explain_the_dry_run_and_refuse_bad_input_before_any_request() {
        let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
        let applied = run(
            "secure-kubeflow",
            &["apply", "--dry-run-only", "--endpoints", &endpoints],
        )
        .await;
        // In dry run, verify's findings are high (violations are logged, not blocked): exit 3.
        assert_eq!(applied.status.code(), Some(3), "{:?}", text(&applied));
        emu.access_attempts(&serde_json::json!([
            {"principal": "user:bob@example.com", "caller_ip": "198.51.100.7",
             "service": "bigquery.googleapis.com", "method": "bigquery.tables.getData",
             "target_project": "projects/123456789012"},
            {"principal": "user:bob@example.com", "caller_ip": "198.51.100.7",
             "service": "bigquery.googleapis.com", "method": "bigquery.tables.getData",
             "target_project": "projects/123456789012"}
        ]));

        let since = emu.requests().len();
        let out = run(
            "secure-kubeflow",
            &["violations", "--since", "1h", "--endpoints", &endpoints],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("dry-run x2  ingress bob@example.com internet -> bigquery.googleapis.com bigquery.tables.getData"), "{stdout}");
        assert!(stdout.contains("UNEXPLAINED"), "{stdout}");
        assert!(stdout.contains("fix 1: access-level member"), "{stdout}");
        assert!(stdout.contains("- user:bob@example.com"), "{stdout}");
        assert!(
            stdout.contains("gcloud access-context-manager levels update kubeflow"),
            "{stdout}"
        );
        assert_eq!(mutating(&emu, since), Vec::<String>::new(), "reads only");

        let out = run(
            "secure-kubeflow",
            &["violations", "--json", "--endpoints", &endpoints],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["report"]["groups"][0]["count"], 2, "{stdout}");
        assert_eq!(json["report"]["since"], "7d");
        assert_eq!(json["explanation"]["fixes"][0]["allows_logged"], true);

        let check = |who: &'static str| {
            let endpoints = endpoints.clone();
            async move {
                run(
                    "secure-kubeflow",
                    &[
                        "check",
                        "--principal",
                        who,
                        "--service",
                        "bigquery.googleapis.com",
                        "--method",
                        "bigquery.tables.getData",
                        "--ip",
                        "198.51.100.7",
                        "--endpoints",
                        &endpoints,
                    ],
                )
                .await
            }
        };
        let out = check("user:bob@example.com").await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("the config, once applied and enforced: DENIED"),
            "{stdout}"
        );
        assert!(stdout.contains("NO_MATCHING_ACCESS_LEVEL"), "{stdout}");
        assert!(
            stdout.contains("the live enforced configuration: none yet"),
            "{stdout}"
        );
        let out = check("user:alice@example.com").await;
        let (stdout, _) = text(&out);
        assert!(
            stdout.contains("the config, once applied and enforced: ALLOWED"),
            "{stdout}"
        );
        assert!(
            stdout.contains("kubeflow"),
            "the level that grants it: {stdout}"
        );

        // Bad input: refused with the fix, before any request.
        let since = emu.requests().len();
        for (args, wanted) in [
            (
                vec!["violations", "--since", "7 days"],
                "90s, 30m, 12h, 7d or 2w",
            ),
            (vec!["violations", "--since", "1.5h"], "7d"),
            (
                vec![
                    "check",
                    "--principal",
                    "bob@example.com",
                    "--service",
                    "s",
                    "--method",
                    "m",
                ],
                "user:bob@example.com",
            ),
        ] {
            let mut args = args.clone();
            args.extend(["--endpoints", &endpoints]);
            let out = run("secure-kubeflow", &args).await;
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
            assert!(stderr.contains(wanted), "{args:?}: {stderr}");
        }
        assert_eq!(emu.requests().len(), since, "nothing was sent");
    }
}
