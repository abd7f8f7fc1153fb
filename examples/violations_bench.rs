//! Reading Policy Denied entries: kfsec's reader against fetching the same pages, on the
//! emulator's Cloud Logging with a round trip of `--latency-ms`.
//!
//! ```text
//! cargo run --release --example violations-bench -- [--entries 10000,100000] [--latency-ms 50] [--rounds 3]
//! ```
//!
//! It starts the emulator in a child process (this program run again with `--serve`), so the
//! reader's memory is measured apart from the emulator's, puts the example perimeter
//! (examples/config/kf-dev.yaml's `vpcsc` section) in dry run on kf-dev, and seeds Policy Denied
//! entries through the emulator's admin `POST /access-attempts` (batches of `--batch`): a mix
//! of 80 principals, six methods of four restricted services and three caller addresses, so
//! 480 groups of many entries each. At each count of `--entries` (the log grows from one to
//! the next) it times two readers of the same entries, with the same filter and page size
//! (1000), `--rounds` times each, alternating:
//!
//! - pages: a plain HTTP client POSTing `v2/entries:list` along the page token chain,
//!   reading each body and parsing just enough of it to count the entries and find
//!   `nextPageToken`;
//! - kfsec: [`kfsec_vpcsc::AuditLog::report`] (the SDK's typed entries, each read into a
//!   [`kfsec_vpcsc::Violation`], folded into groups).
//!
//! It prints each reader's best and median time, kfsec's median over the pages' median, and
//! the peak RSS (`VmHWM`) of a fresh process (this program run again with `--read-only`) that
//! builds the client and reads the report once, beside its RSS before reading; then each
//! reader's median time per page (the emulator's latency included: what is over it is the
//! emulator's filtering, the transfer and the reader's parsing), and the seeding time.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use kfsec_core::Connection;
use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_vpcsc::audit::PAGE_SIZE;
use kfsec_vpcsc::{AuditLog, Mode, ViolationQuery, Vpcsc};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "kfsec's Policy Denied reader against fetching the same pages, on the emulator")]
struct Cli {
    /// The entry counts to read at, ascending: the log is seeded up to each in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000])]
    entries: Vec<u64>,
    /// The emulator's answer time, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Reads of each reader at each count.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Access attempts per seeding request.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// The configuration whose `vpcsc` section is put in dry run.
    #[arg(long, value_name = "FILE", default_value = CONFIG)]
    config: PathBuf,
    /// (Internal) serve the emulator, write its endpoints to `--endpoints`, stop at EOF on stdin.
    #[arg(long, hide = true)]
    serve: bool,
    /// (Internal) read the report once from the emulator of `--endpoints` and print the peak RSS.
    #[arg(long, hide = true)]
    read_only: bool,
    /// (Internal) the endpoints file of `--serve` and `--read-only`.
    #[arg(long, value_name = "FILE", hide = true)]
    endpoints: Option<PathBuf>,
    /// (Internal) the query's time for `--read-only`, in microseconds since the epoch.
    #[arg(long, hide = true)]
    now_micros: Option<u64>,
}

/// The example configuration.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/kf-dev.yaml");
/// The log read.
const LOG: &str = "projects/kf-dev";
/// The perimeter's project, as access attempts name it.
const TARGET: &str = "projects/123456789012";
/// Principals of the seeded mix (none of them in the access level).
const PRINCIPALS: u64 = 80;
/// Service and method pairs of the seeded mix, all of restricted services.
const METHODS: &[(&str, &str)] = &[
    ("bigquery.googleapis.com", "bigquery.tables.getData"),
    ("bigquery.googleapis.com", "bigquery.jobs.create"),
    ("storage.googleapis.com", "google.storage.objects.get"),
    ("storage.googleapis.com", "google.storage.objects.create"),
    (
        "artifactregistry.googleapis.com",
        "artifactregistry.repositories.downloadArtifacts",
    ),
    (
        "containerregistry.googleapis.com",
        "containerregistry.images.pull",
    ),
];
/// Caller addresses of the seeded mix (they do not split groups: the source is `internet`).
const CALLER_IPS: &[&str] = &["198.51.100.7", "203.0.113.20", "192.0.2.44"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.serve {
        return serve(&cli).await;
    }
    if cli.read_only {
        return read_only(&cli).await;
    }
    bench(&cli).await
}

/// `--serve`: the emulator, until stdin closes.
async fn serve(cli: &Cli) -> anyhow::Result<()> {
    let path = cli
        .endpoints
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--serve needs --endpoints FILE"))?;
    let emulator = Emulator::start(EmulatorOptions {
        latency: Duration::from_millis(cli.latency_ms),
        ..EmulatorOptions::default()
    })
    .await?;
    let tmp = path.with_extension("tmp");
    emulator.write_endpoints_file(&tmp)?;
    std::fs::rename(&tmp, path)?;
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await?;
    drop(emulator);
    Ok(())
}

/// `--read-only`: one report read by a fresh process, and its memory.
async fn read_only(cli: &Cli) -> anyhow::Result<()> {
    let path = cli
        .endpoints
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--read-only needs --endpoints FILE"))?;
    let micros = cli
        .now_micros
        .ok_or_else(|| anyhow::anyhow!("--read-only needs --now-micros N"))?;
    let now = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
    let conn = Connection::from_endpoints_file(path)?;
    let log = AuditLog::new(&conn).await?.with_now(now);
    let before = status_kib("VmRSS:")?;
    let report = log.report(&query()).await?;
    let peak = status_kib("VmHWM:")?;
    println!(
        "{{\"entries\":{},\"groups\":{},\"rss_before_kib\":{before},\"vmhwm_kib\":{peak}}}",
        report.entries,
        report.groups.len()
    );
    Ok(())
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/self/status"))?;
    Ok(line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// The query both readers read: the last week of kf-dev's Policy Denied entries.
fn query() -> ViolationQuery {
    ViolationQuery::new([LOG], "7d".parse().expect("a window"))
}

/// The emulator in a child process, stopped when dropped.
struct Served {
    child: Child,
    endpoints: PathBuf,
    dir: tempfile::TempDir,
}

impl Served {
    fn start(latency_ms: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let endpoints = dir.path().join("endpoints.json");
        let child = Command::new(std::env::current_exe()?)
            .args(["--serve", "--latency-ms", &latency_ms.to_string()])
            .arg("--endpoints")
            .arg(&endpoints)
            .stdin(Stdio::piped())
            .spawn()?;
        let mut served = Self {
            child,
            endpoints,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !served.endpoints.exists() {
            if let Some(status) = served.child.try_wait()? {
                anyhow::bail!("the emulator stopped: {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "the emulator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(served)
    }

    fn endpoint(&self, api: &str) -> anyhow::Result<String> {
        let all: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&self.endpoints)?)?;
        let url = all
            .get(api)
            .ok_or_else(|| anyhow::anyhow!("the emulator has no {api} endpoint"))?;
        Ok(url.trim_end_matches('/').to_string())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Closing stdin stops it; kill it if it has not gone.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// The `i`th access attempt of the mix.
fn attempt(i: u64) -> Value {
    let principal = i % PRINCIPALS;
    let member = if principal % 4 == 3 {
        format!("serviceAccount:etl-{principal}@other-proj.iam.gserviceaccount.com")
    } else {
        format!("user:analyst-{principal}@example.com")
    };
    let methods = METHODS.len() as u64;
    let (service, method) = METHODS[usize::try_from((i / PRINCIPALS) % methods).unwrap_or(0)];
    let ip = CALLER_IPS[usize::try_from(i % CALLER_IPS.len() as u64).unwrap_or(0)];
    json!({"principal": member, "caller_ip": ip, "service": service, "method": method,
           "target_project": TARGET})
}

/// Posts attempts `from..to` in batches; returns the Policy Denied entries they wrote.
async fn seed(
    http: &reqwest::Client,
    admin: &str,
    from: u64,
    to: u64,
    batch: u64,
) -> anyhow::Result<u64> {
    let mut written = 0;
    let mut at = from;
    while at < to {
        let end = (at + batch).min(to);
        let attempts: Vec<Value> = (at..end).map(attempt).collect();
        let answer: Value = http
            .post(format!("{admin}/access-attempts"))
            .json(&attempts)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for d in answer["decisions"].as_array().into_iter().flatten() {
            for config in ["enforced", "dryRun"] {
                written += d[config]["violations"].as_array().map_or(0, Vec::len) as u64;
            }
        }
        at = end;
    }
    Ok(written)
}

/// The part of an `entries:list` answer the pages reader parses.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    entries: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    next_page_token: String,
}

/// The pages reader: every page of the query, along the token chain; returns the entries.
async fn fetch_pages(http: &reqwest::Client, logging: &str, filter: &str) -> anyhow::Result<u64> {
    let mut token = String::new();
    let mut entries = 0;
    loop {
        let mut body = json!({"resourceNames": [LOG], "filter": filter,
                              "orderBy": "timestamp desc", "pageSize": PAGE_SIZE});
        if !token.is_empty() {
            body["pageToken"] = json!(token);
        }
        let bytes = http
            .post(format!("{logging}/v2/entries:list"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let page: Page = serde_json::from_slice(&bytes)?;
        entries += page.entries.len() as u64;
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        token = page.next_page_token;
    }
}

/// kfsec's reader: the report of the query; returns the entries and groups.
async fn kfsec_report(log: &AuditLog) -> anyhow::Result<(u64, usize)> {
    let report = log.report(&query()).await?;
    Ok((report.entries, report.groups.len()))
}

/// The median of some seconds.
fn median(mut s: Vec<f64>) -> f64 {
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The best of some seconds.
fn best(s: &[f64]) -> f64 {
    s.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One fresh `--read-only` process: its report's entries and groups, RSS before and peak.
fn child_rss(endpoints: &Path, now_micros: u64) -> anyhow::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--read-only")
        .arg("--endpoints")
        .arg(endpoints)
        .args(["--now-micros", &now_micros.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the --read-only child failed: {}",
        out.status
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The bench.
async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let mut counts = cli.entries.clone();
    counts.sort_unstable();
    counts.dedup();
    let served = Served::start(cli.latency_ms)?;
    let conn = Connection::from_endpoints_file(&served.endpoints)?;
    let admin = served.endpoint("admin")?;
    let logging = served.endpoint("logging")?;

    let mut spec = kfsec::Config::load_vpcsc(&cli.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;
    spec.vpcsc.perimeter.mode = Mode::DryRun;
    let vpcsc = Vpcsc::new(&conn).await?;
    let plan = vpcsc.plan(&spec).await?;
    vpcsc.apply(&plan).await?;

    let http = reqwest::Client::new();
    let now = SystemTime::now() + Duration::from_secs(3600);
    let now_micros = u64::try_from(now.duration_since(SystemTime::UNIX_EPOCH)?.as_micros())?;
    let log = AuditLog::new(&conn).await?.with_now(now);
    let filter = query().filter(now);

    println!(
        "violations-bench: {} ms per request, page size {PAGE_SIZE}, {} rounds per reader",
        cli.latency_ms, cli.rounds
    );
    println!(
        "{:>8} {:>22} {:>22} {:>7} {:>8} {:>9} {:>12}",
        "entries",
        "pages best/median s",
        "kfsec best/median s",
        "ratio",
        "groups",
        "rss0 MiB",
        "peak RSS MiB"
    );
    let (mut seeded, mut written, mut seeding) = (0u64, 0u64, Duration::ZERO);
    for &count in &counts {
        // Seed attempts until `count` entries are written (one per attempt in dry run).
        let start = Instant::now();
        while written < count {
            let more = count - written;
            let new = seed(&http, &admin, seeded, seeded + more, cli.batch).await?;
            anyhow::ensure!(
                new > 0,
                "{more} access attempts wrote no Policy Denied entry"
            );
            written += new;
            seeded += more;
        }
        seeding += start.elapsed();
        anyhow::ensure!(written == count, "seeded {written} entries, not {count}");

        let (mut pages, mut ours) = (Vec::new(), Vec::new());
        let mut groups = 0;
        for _ in 0..cli.rounds {
            let start = Instant::now();
            let n = fetch_pages(&http, &logging, &filter).await?;
            pages.push(start.elapsed().as_secs_f64());
            anyhow::ensure!(n == count, "the pages held {n} entries, not {count}");
            let start = Instant::now();
            let (n, g) = kfsec_report(&log).await?;
            ours.push(start.elapsed().as_secs_f64());
            anyhow::ensure!(n == count, "kfsec read {n} entries, not {count}");
            groups = g;
        }
        let rss = child_rss(&served.endpoints, now_micros)?;
        anyhow::ensure!(rss["entries"] == count, "the --read-only child read {rss}");
        let mib = |k: &str| rss[k].as_f64().unwrap_or(0.0) / 1024.0;
        let (pm, om) = (median(pages.clone()), median(ours.clone()));
        println!(
            "{count:>8} {:>22} {:>22} {:>6.3}x {groups:>8} {:>9.1} {:>12.1}",
            format!("{:.2} / {:.2}", best(&pages), pm),
            format!("{:.2} / {:.2}", best(&ours), om),
            om / pm,
            mib("rss_before_kib"),
            mib("vmhwm_kib"),
        );
        let n_pages = count.div_ceil(u64::try_from(PAGE_SIZE)?) as f64;
        println!(
            "{:>8} per page: pages {:.1} ms, kfsec {:.1} ms (of which {} ms is the emulator's latency)",
            "",
            pm * 1000.0 / n_pages,
            om * 1000.0 / n_pages,
            cli.latency_ms
        );
    }
    println!(
        "seeding: {seeded} access attempts in batches of {} took {:.1} s",
        cli.batch,
        seeding.as_secs_f64()
    );
    Ok(())
}
