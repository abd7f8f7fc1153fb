//! Generated multi-document manifests with non-ASCII text in every kind of scalar, key and
//! comment, CRLF and a BOM: every image is rewritten through [`crate::manifests::rewrite`] and
//! an independent parser (yaml_serde) reads the same documents back, with the new images.

use proptest::prelude::*;
use serde::Deserialize;
use yaml_serde::{Mapping, Value};

use super::{Node, parse};

/// Choices drawn from a list proptest generates (and shrinks); past its end, zeros.
struct Choices(Vec<u32>, usize);

impl Choices {
    fn pick(&mut self, n: usize) -> usize {
        let c = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        c as usize % n
    }
    fn chance(&mut self, in_four: usize) -> bool {
        self.pick(4) < in_four
    }
}

const PIECES: &[&str] = &[
    "\u{a0}", "é", "—", "⇒", "😀", "中文", "ab", "q", "x-z", "漢",
];

/// Text for a plain scalar, key or comment: pieces, some separated by one space.
fn words(c: &mut Choices) -> String {
    let mut s = String::new();
    for i in 0..1 + c.pick(5) {
        if i > 0 && c.chance(2) {
            s.push(' ');
        }
        s.push_str(PIECES[c.pick(PIECES.len())]);
    }
    s
}

/// A scalar written in a random style at `indent` (the indentation of its key) after `key: `;
/// returns the text after the key and the value.
fn scalar(c: &mut Choices, indent: usize, quote_chars: bool) -> (String, String) {
    let pad = " ".repeat(indent + 2);
    let w = words(c);
    match c.pick(5) {
        0 => {
            // Plain, folded over two lines at a space.
            if c.chance(2) && w.contains(' ') {
                (w.replacen(' ', &format!("\n{pad}"), 1), w)
            } else {
                (w.clone(), w)
            }
        }
        1 => {
            let v = if quote_chars { format!("{w}'s") } else { w };
            let mut out = format!("'{}'", v.replace('\'', "''"));
            if c.chance(1) && v.contains(' ') {
                out = out.replacen(' ', &format!("\n{pad}"), 1);
            }
            (out, v)
        }
        2 => {
            let v = if quote_chars { format!("{w}\"\\\t") } else { w };
            let mut out = String::from("\"");
            for ch in v.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    'é' if quote_chars => out.push_str("\\u00e9"),
                    _ => out.push(ch),
                }
            }
            out.push('"');
            (out, v)
        }
        style => {
            let lines: Vec<String> = (0..1 + c.pick(3)).map(|_| words(c)).collect();
            let strip = c.chance(2);
            let mut out = String::from(if style == 3 { "|" } else { ">" });
            if strip {
                out.push('-');
            }
            for l in &lines {
                out.push('\n');
                out.push_str(&pad);
                out.push_str(l);
            }
            let mut v = lines.join(if style == 3 { "\n" } else { " " });
            if !strip {
                v.push('\n');
            }
            (out, v)
        }
    }
}

/// One generated document: its text (LF), its value, and its images.
fn document(c: &mut Choices, images: &mut Vec<String>, n: usize) -> (String, Value) {
    let mut t = String::new();
    if c.chance(2) {
        t.push_str(&format!("# {}\n", words(c)));
    }
    let mut doc = Mapping::new();
    let s = |x: &str| Value::String(x.to_string());
    if c.chance(1) {
        // A ConfigMap: block scalars and non-ASCII keys.
        t.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n");
        let mut data = Mapping::new();
        for i in 0..1 + c.pick(3) {
            let key = format!("{}{i}", words(c).replace(' ', "_"));
            let (text, value) = scalar(c, 2, true);
            t.push_str(&format!("  {key}: {text}\n"));
            data.insert(s(&key), s(&value));
        }
        doc.insert(s("apiVersion"), s("v1"));
        doc.insert(s("kind"), s("ConfigMap"));
        doc.insert(
            s("metadata"),
            Value::Mapping([(s("name"), s("cm"))].into_iter().collect()),
        );
        doc.insert(s("data"), Value::Mapping(data));
        return (t, Value::Mapping(doc));
    }
    let name = words(c);
    t.push_str(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: '{}'\n  annotations:\n",
        name.replace('\'', "''")
    ));
    let mut annotations = Mapping::new();
    for i in 0..1 + c.pick(3) {
        let key = format!("{}{i}", words(c).replace(' ', "."));
        let (text, value) = scalar(c, 4, true);
        t.push_str(&format!("    {key}: {text}\n"));
        if c.chance(1) {
            t.push_str(&format!("    # {}\n", words(c)));
        }
        annotations.insert(s(&key), s(&value));
    }
    t.push_str("spec:\n  template:\n    spec:\n      containers:\n");
    let mut containers = Vec::new();
    for j in 0..1 + c.pick(3) {
        let image = format!(
            "{}/app{n}-{j}:{}",
            ["gcr.io/p", "quay.io/o/r", "localhost:5000/x"][c.pick(3)],
            c.pick(100)
        );
        images.push(image.clone());
        let cname = format!("c{j}");
        let env = words(c);
        let written = match c.pick(3) {
            0 => image.clone(),
            1 => format!("'{image}'"),
            _ => format!("\"{image}\""),
        };
        if c.chance(1) {
            t.push_str(&format!(
                "      - {{name: {cname}, image: {written}, env: [{{name: E, value: '{env}'}}]}}\n"
            ));
        } else {
            let etext = format!("'{env}'");
            t.push_str(&format!("      - name: {cname}\n"));
            if c.chance(1) {
                t.push_str(&format!("        # {} image: not-this\n", words(c)));
            }
            let comment = if c.chance(2) {
                format!(" # {}", words(c))
            } else {
                String::new()
            };
            t.push_str(&format!("        image: {written}{comment}\n"));
            t.push_str(&format!(
                "        env:\n        - name: E\n          value: {etext}\n"
            ));
        }
        let mut ctr = Mapping::new();
        ctr.insert(s("name"), s(&cname));
        ctr.insert(s("image"), s(&image));
        let mut e = Mapping::new();
        e.insert(s("name"), s("E"));
        e.insert(s("value"), s(&env));
        ctr.insert(s("env"), Value::Sequence(vec![Value::Mapping(e)]));
        containers.push(Value::Mapping(ctr));
    }
    let mut meta = Mapping::new();
    meta.insert(s("name"), s(&name));
    meta.insert(s("annotations"), Value::Mapping(annotations));
    let pod = [(s("containers"), Value::Sequence(containers))];
    let template = [(s("spec"), Value::Mapping(pod.into_iter().collect()))];
    let spec = [(
        s("template"),
        Value::Mapping(template.into_iter().collect()),
    )];
    doc.insert(s("apiVersion"), s("apps/v1"));
    doc.insert(s("kind"), s("Deployment"));
    doc.insert(s("metadata"), Value::Mapping(meta));
    doc.insert(s("spec"), Value::Mapping(spec.into_iter().collect()));
    (t, Value::Mapping(doc))
}

/// A stream of documents: (text, documents, images in order).
fn stream(c: &mut Choices) -> (String, Vec<Value>, Vec<String>) {
    let mut text = String::new();
    let mut docs = Vec::new();
    let mut images = Vec::new();
    for n in 0..1 + c.pick(4) {
        if n > 0 || c.chance(2) {
            text.push_str("---");
            if c.chance(2) {
                text.push_str(&format!(" # {}", words(c)));
            }
            text.push('\n');
        }
        let (t, v) = document(c, &mut images, n);
        text.push_str(&t);
        docs.push(v);
        if c.chance(1) {
            text.push_str("...\n");
            if c.chance(2) {
                text.push_str(&format!("# {}\n", words(c)));
            }
        }
    }
    // Line endings: LF, CRLF or mixed; and maybe a BOM.
    let mode = c.pick(3);
    let mut out = String::new();
    if c.chance(1) {
        out.push('\u{feff}');
    }
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let crlf = mode == 1 || mode == 2 && (c.chance(2) || i % 3 == 0);
        match line.strip_suffix('\n') {
            Some(l) if crlf => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            _ => out.push_str(line),
        }
    }
    (out, docs, images)
}

fn read_all(text: &str) -> Vec<Value> {
    // libyaml (under yaml_serde) stops at a BOM before a `---` line ("did not find expected
    // <document start>"), so it reads the text after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}:\n{text}")))
        .collect()
}

/// Replaces every image of `docs` by its mirror.
fn mirrored(v: &mut Value, images: &[String]) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                if k.as_str() == Some("image")
                    && let Value::String(s) = val
                    && images.contains(s)
                {
                    *s = mirror(s);
                } else {
                    mirrored(val, images);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| mirrored(i, images)),
        _ => {}
    }
}

fn mirror(image: &str) -> String {
    format!("mirror.example/{image}@sha256:{}", "ab".repeat(32))
}

fn check_ranges(text: &str, n: &Node, verbatim: &mut usize) {
    match n {
        Node::Scalar(s) => {
            if let Some(r) = s.source_range(0..s.value.len()) {
                assert_eq!(&text[r], s.value);
                *verbatim += 1;
            }
            for seg in &s.segments {
                assert_eq!(
                    &text[seg.source..seg.source + seg.len],
                    &s.value[seg.value..seg.value + seg.len]
                );
            }
        }
        Node::Seq(items) => items.iter().for_each(|i| check_ranges(text, i, verbatim)),
        Node::Map(entries) => entries.iter().for_each(|(k, v)| {
            check_ranges(text, k, verbatim);
            check_ranges(text, v, verbatim);
        }),
        Node::Alias => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_image_is_rewritten_and_nothing_else_changes(
        choices in prop::collection::vec(any::<u32>(), 0..400),
    ) {
        let (text, docs, images) = stream(&mut Choices(choices, 0));
        // The generator writes what it means.
        prop_assert_eq!(&read_all(&text), &docs, "{}", text);

        let mut verbatim = 0;
        for d in parse(&text).unwrap() {
            check_ranges(&text, &d, &mut verbatim);
        }
        prop_assert!(verbatim > images.len());

        let out = crate::manifests::rewrite("gen.yaml", &text, |i| Some(mirror(i))).unwrap();
        prop_assert!(out.unmapped.is_empty(), "{:?}", out.unmapped);
        let got: Vec<&str> = out.replaced.iter().map(|(u, _)| u.image.as_str()).collect();
        let mut want: Vec<&str> = images.iter().map(String::as_str).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got_sorted, want);

        let mut expected = docs;
        expected.iter_mut().for_each(|d| mirrored(d, &images));
        prop_assert_eq!(&read_all(&out.text), &expected, "{}", out.text);
        // Only image bytes changed: taking the new images out gives the old text back.
        let mut back = out.text.clone();
        for i in &images {
            back = back.replacen(&mirror(i), i, 1);
        }
        prop_assert_eq!(back, text);
    }
}
