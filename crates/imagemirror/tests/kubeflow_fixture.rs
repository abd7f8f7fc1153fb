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
