//! The workload's apply against kubectl's, on the same emulated API server with the same
//! round trip.
//!
//! ```text
//! cargo run --release --example workload-bench -- [--documents 207] [--latency-ms 20]
//! cargo run --release --example workload-bench -- --kubeflow [--render FILE] [--latency-ms 20]
//! ```
//!
//! By default it generates a workload shaped like Kubeflow's `kustomize build` output: two
//! Namespaces, ten CustomResourceDefinitions and twenty objects of them, a webhook
//! configuration, and the rest ServiceAccounts, ConfigMaps, Services, Deployments and
//! RoleBindings in turn. With `--kubeflow` the workload is the real Kubeflow 1.10 render
//! (`fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz`, 611 documents, 71 of them CRDs) with
//! its images pinned as kfsec deploys it: every image of the `kubeflow` preset's fields
//! rewritten to `us-docker.pkg.dev/kf-dev/kubeflow-mirror/<registry>/<repository>[:tag]@sha256:0…0`
//! (one fixed digest), and both tools apply that same pinned text. Each tool applies it to its
//! own fresh emulator (each request answered after `--latency-ms`):
//!
//! - kfsec: [`kfsec::workload::Workload::apply`] (waves, eight documents at a time), then
//!   the same again (nothing to send), then `plan`;
//! - kubectl: `kubectl apply --server-side` of the CRDs, then of the rest (kubectl cannot map
//!   a custom object in the run that creates its CRD), then both again.
//!
//! It prints each run's wall time and requests, kfsec's time over kubectl's, and each run's
//! requests by sort (discovery reads, object reads, writes).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use kfsec::WorkloadSpec;
use kfsec::workload::{Workload, documents};
use kfsec_core::Connection;
use kfsec_emulator::{Emulator, EmulatorOptions};

#[derive(Parser)]
#[command(about = "kfsec's workload apply against kubectl apply --server-side, on the emulator")]
struct Cli {
    /// How many documents the generated workload has (at least 40).
    #[arg(long, default_value_t = 207, value_parser = clap::value_parser!(u64).range(40..))]
    documents: u64,
    /// The emulator's answer time, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Apply the Kubeflow 1.10 render (images pinned) instead of a generated workload.
    #[arg(long)]
    kubeflow: bool,
    /// The render `--kubeflow` applies (`.gz` is decompressed).
    #[arg(long, value_name = "FILE", default_value = RENDER)]
    render: std::path::PathBuf,
}

/// The Kubeflow 1.10 render of the fixtures.
const RENDER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz"
);

/// Where `--kubeflow` pins the render's images, and the digest each is pinned to.
const MIRROR: &str = "us-docker.pkg.dev/kf-dev/kubeflow-mirror";

/// The render at `path` with every image of the Kubeflow preset's fields pinned to its mirror
/// under [`MIRROR`] (one fixed digest), as (CRDs, everything else, the whole pinned text, the
/// number of images replaced).
fn kubeflow(path: &Path) -> anyhow::Result<(String, String, String, usize)> {
    use kfsec_imagemirror::fields::{Fields, Preset};
    use kfsec_imagemirror::{Destination, ImageRef};
    let text = kfsec_imagemirror::input::read_file(path)?;
    let fields = Fields::new(&[Preset::Kubeflow], &[], &[]);
    let destination = Destination::parse(MIRROR)?;
    let digest = format!("sha256:{}", "0".repeat(64));
    let name = path.display().to_string();
    let rewritten = kfsec_imagemirror::manifests::rewrite_with(&name, &text, &fields, |image| {
        let pinned = ImageRef::parse(image)
            .ok()?
            .mirrored(&destination)
            .ok()?
            .pinned(&digest);
        ImageRef::parse(&pinned).is_ok().then_some(pinned)
    })?;
    anyhow::ensure!(
        rewritten.unmapped.is_empty(),
        "{} image uses could not be pinned, the first: {} ({})",
        rewritten.unmapped.len(),
        rewritten.unmapped[0].0.image,
        rewritten.unmapped[0].1
    );
    let (mut crds, mut rest) = (String::new(), String::new());
    for doc in rewritten.text.split("\n---\n") {
        let kind = yaml_serde::from_str::<yaml_serde::Value>(doc)?
            .get("kind")
            .and_then(yaml_serde::Value::as_str)
            .map(str::to_owned);
        let to = if kind.as_deref() == Some("CustomResourceDefinition") {
            &mut crds
        } else {
            &mut rest
        };
        to.push_str(doc.trim_end_matches('\n'));
        to.push_str("\n---\n");
    }
    Ok((crds, rest, rewritten.text, rewritten.replaced.len()))
}

/// The generated workload as (CRDs, everything else), each a multi-document YAML.
fn generate(documents: u64) -> (String, String) {
    let mut crds = String::new();
    for c in 0..10 {
        crds += &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: things{c}.example.org}}\nspec:\n  group: example.org\n  scope: Namespaced\n  names: {{kind: Thing{c}, plural: things{c}}}\n  versions: [{{name: v1, served: true, storage: true}}]\n---\n"
        );
    }
    let mut rest = String::new();
    for n in 0..2 {
        rest += &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: team{n}}}\n---\n");
    }
    rest += "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: things-check}\nwebhooks:\n- name: check.example.org\n  clientConfig: {service: {name: svc0, namespace: team0, path: /check}}\n  admissionReviewVersions: [v1]\n  sideEffects: None\n---\n";
    for i in 0..20 {
        rest += &format!(
            "apiVersion: example.org/v1\nkind: Thing{}\nmetadata: {{name: thing{i}, namespace: team{}}}\nspec: {{size: {i}}}\n---\n",
            i % 10,
            i % 2
        );
    }
    for i in 0..documents.saturating_sub(33) {
        let (ns, n) = (i % 2, i / 5);
        rest += &match i % 5 {
            0 => format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa{n}, namespace: team{ns}}}\n"
            ),
            1 => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{n}, namespace: team{ns}}}\ndata: {{key: value{n}}}\n"
            ),
            2 => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{n}, namespace: team{ns}}}\nspec:\n  selector: {{app: app{n}}}\n  ports: [{{port: 80}}]\n"
            ),
            3 => format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app{n}, namespace: team{ns}}}\nspec:\n  selector: {{matchLabels: {{app: app{n}}}}}\n  template:\n    metadata: {{labels: {{app: app{n}}}}}\n    spec:\n      serviceAccountName: sa{n}\n      containers: [{{name: app, image: busybox}}]\n"
            ),
            _ => format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: rb{n}, namespace: team{ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects: [{{kind: ServiceAccount, name: sa{n}, namespace: team{ns}}}]\n"
            ),
        };
        rest += "---\n";
    }
    (crds, rest)
}

async fn emulator(cli: &Cli) -> anyhow::Result<Emulator> {
    Ok(Emulator::start(EmulatorOptions {
        latency: Duration::from_millis(cli.latency_ms),
        ..EmulatorOptions::default()
    })
    .await?)
}

/// A timed run: what it did, its wall time, the requests it sent and how many of them wrote.
struct Timed {
    what: &'static str,
    seconds: f64,
    requests: usize,
    writes: usize,
    /// Reads of the API's discovery documents (`/api`, `/apis/GROUP/VERSION`, `/openapi`).
    discovery: usize,
    /// Seconds from the run's first request to its first request for an object that is
    /// not a CustomResourceDefinition, and the requests before it: the CRD wave and its wait
    /// until they are established.
    crd_phase: (f64, usize),
}

impl Timed {
    fn cell(&self) -> String {
        format!(
            "{:.2} s ({} requests, {} writes)",
            self.seconds, self.requests, self.writes
        )
    }
}

/// Times `run`, counting the emulator's requests.
async fn timed<F: std::future::Future<Output = anyhow::Result<()>>>(
    what: &'static str,
    emu: &Emulator,
    run: F,
) -> anyhow::Result<Timed> {
    let before = emu.requests().len();
    let start = Instant::now();
    run.await?;
    let seconds = start.elapsed().as_secs_f64();
    let sent = &emu.requests()[before..];
    Ok(Timed {
        what,
        seconds,
        requests: sent.len(),
        writes: sent
            .iter()
            .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
            .count(),
        discovery: sent.iter().filter(|r| is_discovery(&r.path)).count(),
        crd_phase: {
            let other = sent.iter().position(|r| {
                !is_discovery(&r.path) && !r.path.contains("/customresourcedefinitions")
            });
            match (sent.first(), other) {
                (Some(first), Some(i)) => ((sent[i].at_ms - first.at_ms) as f64 / 1000.0, i),
                _ => (0.0, 0),
            }
        },
    })
}

/// Whether `path` is a discovery document (`/api`, `/api/v1`, `/apis`, `/apis/GROUP`,
/// `/apis/GROUP/VERSION`, `/version`, `/openapi/...`) rather than an object or a collection.
fn is_discovery(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.first().copied() {
        Some("api") => parts.len() <= 2,
        Some("apis") => parts.len() <= 3,
        Some("version" | "openapi") => true,
        _ => false,
    }
}

/// `kubectl apply --server-side` of each file in turn, against the emulator.
async fn kubectl_apply(emu: &Emulator, cache: &Path, files: &[&Path]) -> anyhow::Result<()> {
    let server = emu
        .endpoint("kubernetes")
        .ok_or_else(|| anyhow::anyhow!("the emulator has no kubernetes endpoint"))?
        .to_string();
    for file in files {
        let out = tokio::task::spawn_blocking({
            let (server, cache, file) = (server.clone(), cache.to_owned(), file.to_path_buf());
            move || {
                Command::new("kubectl")
                    .env("KUBECONFIG", "/dev/null")
                    .arg("--server")
                    .arg(&server)
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args(["apply", "--server-side", "--validate=false", "-f"])
                    .arg(&file)
                    .output()
            }
        })
        .await?
        .map_err(|e| anyhow::anyhow!("kubectl could not run (is it installed?): {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl apply -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    let (crds, rest, all, what) = if cli.kubeflow {
        let (crds, rest, all, pinned) = kubeflow(&cli.render)?;
        let what = format!(
            "the Kubeflow 1.10 render ({} CRDs, {pinned} image uses pinned)",
            crds.matches("\n---\n").count()
        );
        (crds, rest, all, what)
    } else {
        let (crds, rest) = generate(cli.documents);
        let all = format!("{rest}{crds}");
        (crds, rest, all, "10 CRDs, 20 custom objects".to_string())
    };
    let (crds_file, rest_file) = (dir.path().join("crds.yaml"), dir.path().join("rest.yaml"));
    std::fs::write(&crds_file, &crds)?;
    std::fs::write(&rest_file, &rest)?;
    let all_file = dir.path().join("workload.yaml");
    std::fs::write(&all_file, all)?;
    let docs = documents(&WorkloadSpec {
        manifests: vec![all_file],
        kustomize: vec![],
        wait_seconds: 0,
    })?;
    println!(
        "workload-bench: {} documents ({what}), {} ms per request",
        docs.len(),
        cli.latency_ms
    );

    let emu = emulator(&cli).await?;
    let conn = Connection::emulated(emu.endpoints().into());
    let workload = Workload::new(kfsec_kube::kube_client(&conn).await?);
    let kfsec = [
        timed("apply", &emu, async {
            workload.apply(&docs, Duration::ZERO).await?;
            Ok(())
        })
        .await?,
        timed("apply again", &emu, async {
            let report = workload.apply(&docs, Duration::ZERO).await?;
            anyhow::ensure!(
                report.changed_nothing(),
                "the second apply changed something"
            );
            Ok(())
        })
        .await?,
        timed("plan", &emu, async {
            workload.plan(&docs).await?;
            Ok(())
        })
        .await?,
    ];

    let emu = emulator(&cli).await?;
    let cache = dir.path().join("kubectl-cache");
    let files = [crds_file.as_path(), rest_file.as_path()];
    let kubectl = [
        timed("apply", &emu, kubectl_apply(&emu, &cache, &files)).await?,
        timed("apply again", &emu, kubectl_apply(&emu, &cache, &files)).await?,
    ];

    println!(
        "\n{:<12} {:<36} {:<36} kfsec/kubectl",
        "", "kfsec", "kubectl"
    );
    for k in &kfsec {
        let peer = kubectl.iter().find(|p| p.what == k.what);
        let target = match k.what {
            "apply" => "  (target: at most 0.50x)",
            "apply again" => "  (target: at most 0.20x)",
            _ => "",
        };
        println!(
            "{:<12} {:<36} {:<36} {}",
            k.what,
            k.cell(),
            peer.map(Timed::cell).unwrap_or_else(|| "-".into()),
            peer.map(|p| format!("{:.2}x{target}", k.seconds / p.seconds.max(1e-9)))
                .unwrap_or_default()
        );
    }
    println!(
        "\nrequests by sort (discovery reads / object reads / writes), requests in flight on \
         average (requests x latency / wall time), and the time until the first request for \
         an object other than a CRD:"
    );
    for (tool, runs) in [("kfsec", &kfsec[..]), ("kubectl", &kubectl[..])] {
        for t in runs {
            println!(
                "{tool:<8} {:<12} {} / {} / {}, {:.1} in flight, CRDs {:.2} s ({} requests)",
                t.what,
                t.discovery,
                t.requests - t.discovery - t.writes,
                t.writes,
                t.requests as f64 * cli.latency_ms as f64 / 1000.0 / t.seconds.max(1e-9),
                t.crd_phase.0,
                t.crd_phase.1
            );
        }
    }
    Ok(())
}
