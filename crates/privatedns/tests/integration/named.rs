//! Exported zones checked by `named-checkzone`, served by a real `named` on a loopback port, and
//! resolved through it by `verify_resolution`.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kfsec_core::Severity;
use kfsec_privatedns::{ResolverChoice, Spec, Vip, export, verify_resolution};

use crate::common::example_spec;

fn tool(name: &str) -> PathBuf {
    let dirs = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `cargo xtask test` installs bind9 and bind9-utils")
        })
}

/// A `named` serving master files, stopped on drop.
struct Named {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // Both UDP and TCP on the same port: pick one UDP port that TCP can also bind.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn write_zones(spec: &Spec, dir: &Path) -> Vec<(String, PathBuf)> {
    export(spec)
        .into_iter()
        .map(|file| {
            let path = dir.join(format!("{}.zone", file.zone));
            std::fs::write(&path, &file.text).unwrap();
            (file.origin, path)
        })
        .collect()
}

fn start_named(spec: &Spec) -> Named {
    let dir = tempfile::tempdir().unwrap();
    let zones = write_zones(spec, dir.path());
    let port = free_port();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  allow-query {{ any; }};\n}};\ncontrols {{ }};\n",
        d = dir.path().display()
    );
    for (origin, path) in &zones {
        conf.push_str(&format!(
            "zone \"{}\" {{ type primary; file \"{}\"; }};\n",
            origin.trim_end_matches('.'),
            path.display()
        ));
    }
    let conf_path = dir.path().join("named.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(tool("named"))
        .args(["-g", "-c"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start named");
    Named {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    }
}

async fn until_serving(named: &Named, spec: &Spec) {
    let start = Instant::now();
    loop {
        let findings = verify_resolution(spec, ResolverChoice::Server(named.addr))
            .await
            .unwrap();
        if findings.iter().all(|f| f.code != "resolution.failed")
            || start.elapsed() > Duration::from_secs(15)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn exported_zones_pass_named_checkzone() {
    let dir = tempfile::tempdir().unwrap();
    for (origin, path) in write_zones(&example_spec(), dir.path()) {
        let out = Command::new(tool("named-checkzone"))
            .arg(&origin)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "named-checkzone {origin}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

async fn every_name_lands_in(vip: Vip) {
    let mut spec = example_spec();
    spec.dns.vip = vip;
    let named = start_named(&spec);
    until_serving(&named, &spec).await;
    let findings = verify_resolution(&spec, ResolverChoice::Server(named.addr))
        .await
        .unwrap();
    assert_eq!(findings.len(), 4, "{findings:#?}");
    for f in &findings {
        assert_eq!(f.severity, Severity::Info, "{f:#?}");
        assert_eq!(f.code, "resolution.in_vip");
        assert!(
            f.message.contains(&format!("inside {}", vip.range())),
            "{f:#?}"
        );
    }
}

#[tokio::test]
async fn named_serving_the_restricted_zones_resolves_every_name_into_199_36_153_4_30() {
    every_name_lands_in(Vip::Restricted).await;
}

#[tokio::test]
async fn named_serving_the_private_zones_resolves_every_name_into_199_36_153_8_30() {
    every_name_lands_in(Vip::Private).await;
}

#[tokio::test]
async fn names_outside_the_vip_are_high_findings() {
    // The restricted zones checked against the private VIP: every answer is outside.
    let spec = example_spec();
    let named = start_named(&spec);
    until_serving(&named, &spec).await;
    let mut other = spec.clone();
    other.dns.vip = Vip::Private;
    let findings = verify_resolution(&other, ResolverChoice::Server(named.addr))
        .await
        .unwrap();
    assert!(
        findings
            .iter()
            .all(|f| f.severity == Severity::High && f.code == "resolution.outside_vip"),
        "{findings:#?}"
    );
}
