//! The images of the real Kubeflow 1.10 render (`fixtures/kubeflow` at the repository root):
//! every pod-spec image is found and rewritten in place, and nothing else changes.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Instant;

use kfsec_imagemirror::manifests::{rewrite, scan};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../fixtures/kubeflow/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn render() -> String {
    let gz = std::fs::read(fixture("kubeflow-1.10-rendered.yaml.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Section (a) of image-locations.md: (object, field, image, line).
fn surveyed() -> BTreeSet<(String, String, String, usize)> {
    let survey = std::fs::read_to_string(fixture("image-locations.md")).unwrap();
    let start = survey.find("## (a)").unwrap();
    let end = start + survey[start..].find("## (b)").unwrap();
    survey[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("`spec."))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | kind | namespace/name | container | field | image | line |
            (
                format!("{}/{}", cells[1], cells[2]),
                cells[4].trim_matches('`').to_string(),
                cells[5].trim_matches('`').to_string(),
                cells[6].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_pod_spec_image_of_kubeflow_is_found() {
    let text = render();
    let t = Instant::now();
    let uses = scan("kubeflow.yaml", &text).unwrap();
    eprintln!(
        "scan of {} bytes: {:?} ({} uses)",
        text.len(),
        t.elapsed(),
        uses.len()
    );
    assert_eq!(uses.len(), 53);
    let found: BTreeSet<(String, String, String, usize)> = uses
        .iter()
        .map(|u| (u.object.clone(), u.field.clone(), u.image.clone(), u.line))
        .collect();
    let expected = surveyed();
    assert_eq!(expected.len(), 53);
    assert_eq!(found, expected);
    let objects: BTreeSet<&str> = uses.iter().map(|u| u.object.as_str()).collect();
    assert_eq!(objects.len(), 49);
    for kind in [("Deployment/", 47), ("StatefulSet/", 1), ("DaemonSet/", 1)] {
        let n = objects.iter().filter(|o| o.starts_with(kind.0)).count();
        assert_eq!(n, kind.1, "{kind:?}");
    }
}

#[test]
fn kubeflow_rewrite_changes_only_the_image_bytes() {
    let text = render();
    let pin = |image: &str| {
        let hex: String = (0..64)
            .map(|i| char::from(b"0123456789abcdef"[(i * 7 + image.len()) % 16]))
            .collect();
        format!("mirror.example/{image}@sha256:{hex}")
    };
    let out = rewrite("kubeflow.yaml", &text, |image| Some(pin(image))).unwrap();
    assert_eq!(out.replaced.len(), 53, "{:?}", out.unmapped);
    assert!(out.unmapped.is_empty());
    let image_lines: BTreeSet<(usize, String)> = out
        .replaced
        .iter()
        .map(|(u, _)| (u.line, u.image.clone()))
        .collect();
    let old: Vec<&str> = text.split('\n').collect();
    let new: Vec<&str> = out.text.split('\n').collect();
    assert_eq!(old.len(), new.len());
    let mut changed = 0;
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        if a == b {
            continue;
        }
        changed += 1;
        let line = i + 1;
        let (_, image) = image_lines
            .iter()
            .find(|(l, _)| *l == line)
            .unwrap_or_else(|| panic!("line {line} changed: {a:?} -> {b:?}"));
        let at = a.find(image.as_str()).unwrap();
        assert_eq!(&b[..at], &a[..at], "line {line}");
        assert_eq!(&b[at..at + pin(image).len()], pin(image), "line {line}");
        assert_eq!(
            &b[at + pin(image).len()..],
            &a[at + image.len()..],
            "line {line}"
        );
    }
    assert_eq!(changed, image_lines.len());
    // The result reads back with the new images.
    let again = scan("kubeflow.yaml", &out.text).unwrap();
    let images: Vec<String> = again.iter().map(|u| u.image.clone()).collect();
    let want: Vec<String> = out.replaced.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(images, want);
}

/// The pinned mirror of `image` under the test's destination (`mirror.example/...`).
fn pinned(image: &str) -> Option<String> {
    let destination = "mirror.example/kf".parse().unwrap();
    let mirror = kfsec_imagemirror::ImageRef::parse(image)
        .ok()?
        .mirrored(&destination)
        .ok()?;
    Some(mirror.pinned(&format!("sha256:{}", "c".repeat(64))))
}

#[test]
fn the_kubeflow_preset_finds_every_surveyed_image_and_the_rewrite_changes_only_their_bytes() {
    use kfsec_imagemirror::fields::{Fields, Preset};
    use kfsec_imagemirror::manifests::scan_with;
    let text = render();
    let fields = Fields::new(&[Preset::Kubeflow], &[], &[]);
    let scan = scan_with("kubeflow.yaml", &text, &fields).unwrap();
    // Every occurrence the survey found in an image field a controller reads: 53 in pod
    // specs, 14 in custom resources, 5 in args and env, 40 in ConfigMap data (not KServe's
    // `_example` documentation, not sync.py's run-time defaults, not the ART explainer's
    // repository, which KServe completes with a tag at run time).
    let survey = std::fs::read_to_string(fixture("image-findings.tsv")).unwrap();
    let mut expected = BTreeSet::new();
    for row in survey.lines().skip(1) {
        let cells: Vec<&str> = row.split('\t').collect();
        let (value, line, how) = (cells[5], cells[6], cells[7]);
        let functional = !cells[4].contains("_example")
            && !cells[4].contains("sync.py")
            && !how.contains("template")
            && !matches!(how, "part" | "key-indirection")
            && value != "kserve/art-explainer";
        if functional {
            expected.insert((value.to_string(), line.parse::<usize>().unwrap()));
        }
    }
    let found: BTreeSet<(String, usize)> = scan
        .uses
        .iter()
        .filter(|u| !u.prefix)
        .map(|u| (u.image.clone(), u.line))
        .collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
    // And the hub of the images Istio's injector adds to every pod.
    let hubs: Vec<_> = scan.uses.iter().filter(|u| u.prefix).collect();
    assert_eq!(hubs.len(), 1, "{hubs:#?}");
    assert_eq!(hubs[0].image, "gcr.io/istio-release");
    assert_eq!(hubs[0].field, "data.values » global.hub");
    assert_eq!(scan.uses.len(), 113);
    // Suspects: only what Kubeflow assembles at run time (the Istio hub, sync.py's defaults).
    let suspects: BTreeSet<&str> = scan.suspects.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        suspects,
        BTreeSet::from([
            "gcr.io/istio-release",
            "ghcr.io/kubeflow/kfp-frontend",
            "ghcr.io/kubeflow/kfp-visualization-server"
        ]),
        "{:#?}",
        scan.suspects
    );

    // The rewrite: every use replaced in place; putting each image back gives the input, byte
    // for byte, so nothing but the image values changed.
    let out = kfsec_imagemirror::manifests::rewrite_uses("kubeflow.yaml", &text, &fields, |u| {
        if u.prefix {
            Some(format!("mirror.example/kf/{}", u.image))
        } else {
            pinned(&u.image)
        }
    })
    .unwrap();
    assert_eq!(out.replaced.len(), 113, "{:#?}", out.unmapped);
    assert!(out.unmapped.is_empty(), "{:#?}", out.unmapped);
    let mut back = out.text.clone();
    let mut pairs: Vec<(String, String)> = out
        .replaced
        .iter()
        .map(|(u, new)| (new.clone(), u.image.clone()))
        .collect();
    pairs.sort_by_key(|(new, _)| std::cmp::Reverse(new.len()));
    pairs.dedup();
    for (new, old) in &pairs {
        back = back.replace(new.as_str(), old);
    }
    assert!(back == text, "something besides the image values changed");
    // And the rewritten text still holds YAML and JSON where it did, now with mirrors.
    let again = scan_with("kubeflow.yaml", &out.text, &fields).unwrap();
    assert_eq!(again.uses.len(), 113);
    assert!(
        again
            .uses
            .iter()
            .all(|u| u.image.starts_with("mirror.example/kf/")
                && (u.prefix || u.image.contains("@sha256:"))),
        "{:#?}",
        again.uses
    );
}

#[test]
fn the_nesting_limit_lets_all_of_kubeflow_through_and_stops_a_deep_file_at_once() {
    use kfsec_core::limits::{MAX_YAML_DEPTH, yaml_nesting};
    let text = render();
    yaml_nesting(&text, MAX_YAML_DEPTH).unwrap();
    // The deepest document of the render, by the same count: far under the limit.
    let deepest = (1..=MAX_YAML_DEPTH)
        .find(|&limit| yaml_nesting(&text, limit).is_ok())
        .unwrap();
    println!("Kubeflow 1.10's deepest nesting, counted as the limit counts it: {deepest}");
    assert!(deepest < MAX_YAML_DEPTH / 2, "{deepest}");

    // 100,000 indented levels: refused with the line, no stack overflow, through the public
    // scan (which parses with yaml-rust2).
    let deep: String = (0..100_000)
        .map(|i| format!("{}a:\n", " ".repeat(i % 4000)))
        .collect();
    let fields = kfsec_imagemirror::fields::Fields::default();
    let err = kfsec_imagemirror::manifests::scan_with("deep.yaml", &deep, &fields).unwrap_err();
    assert!(err.to_string().contains("nested more than 128"), "{err}");
}
