use super::*;

/// Every scalar of every document, in document order.
fn scalars(nodes: &[Node]) -> Vec<&Scalar> {
    fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Scalar>) {
        match n {
            Node::Scalar(s) => out.push(s),
            Node::Seq(items) => items.iter().for_each(|i| walk(i, out)),
            Node::Map(entries) => entries.iter().for_each(|(k, v)| {
                walk(k, out);
                walk(v, out);
            }),
            Node::Alias => {}
        }
    }
    let mut out = Vec::new();
    nodes.iter().for_each(|n| walk(n, &mut out));
    out
}

/// Parses `text` and checks every segment of every scalar against the text; returns
/// (value, style, whole value verbatim at) for each scalar.
fn read(text: &str) -> Vec<(String, Style, Option<&str>)> {
    let docs = parse(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    scalars(&docs)
        .into_iter()
        .map(|s| {
            for seg in &s.segments {
                assert_eq!(
                    &text[seg.source..seg.source + seg.len],
                    &s.value[seg.value..seg.value + seg.len],
                    "{s:?} in {text:?}"
                );
            }
            let whole = s.source_range(0..s.value.len()).map(|r| &text[r]);
            if let Some(w) = whole {
                assert_eq!(w, s.value);
            }
            (s.value.clone(), s.style, whole)
        })
        .collect()
}

/// The value of the scalar `value` and whether it is verbatim.
fn verbatim(text: &str, value: &str) -> bool {
    let all = read(text);
    let found = all
        .iter()
        .find(|(v, _, _)| v == value)
        .unwrap_or_else(|| panic!("no {value:?} in {all:?}"));
    found.2.is_some()
}

const NON_ASCII: &str = "\u{a0}é—⇒😀中文";

#[test]
fn plain_quoted_and_block_scalars_after_non_ascii() {
    let text = format!(
        "# {NON_ASCII} comment\n\
         {NON_ASCII}key: {NON_ASCII} plain\n\
         lit: |\n  {NON_ASCII} one\n   two {NON_ASCII}\n\n  three\n\
         fold: >-\n  {NON_ASCII} a\n  b\n\n  c\n    d\n  e\n\
         sq: '{NON_ASCII} it''s'\n\
         dq: \"{NON_ASCII} \\u00e9 x\"\n\
         image: gcr.io/{NON_ASCII}/x:1 # {NON_ASCII}\n\
         q: 'gcr.io/y:2'\n\
         d: \"gcr.io/z:3\"\n"
    );
    let all = read(&text);
    let get = |v: &str| all.iter().find(|(x, _, _)| x == v).unwrap().clone();
    assert_eq!(
        get(&format!("{NON_ASCII}key")).2.unwrap(),
        format!("{NON_ASCII}key")
    );
    assert!(get(&format!("{NON_ASCII} plain")).2.is_some());
    assert_eq!(
        get(&format!("{NON_ASCII} one\n two {NON_ASCII}\n\nthree\n")).1,
        Style::Literal
    );
    assert_eq!(
        get(&format!("gcr.io/{NON_ASCII}/x:1")).2.unwrap(),
        format!("gcr.io/{NON_ASCII}/x:1")
    );
    assert!(get("gcr.io/y:2").2.is_some());
    assert!(get("gcr.io/z:3").2.is_some());

    // Parts of a multi-line or escaped scalar.
    let docs = parse(&text).unwrap();
    let doc = &docs[0];
    let lit = doc.get("lit").and_then(Node::as_scalar).unwrap();
    assert!(lit.source_range(0..lit.value.len()).is_none());
    let one = lit.value.find("one").unwrap();
    assert_eq!(
        &text[lit.source_range(0..one + 3).unwrap()],
        format!("{NON_ASCII} one")
    );
    let two = lit.value.find(" two").unwrap();
    let r = lit.source_range(two..two + 5 + NON_ASCII.len()).unwrap();
    assert_eq!(&text[r], format!(" two {NON_ASCII}"));
    let three = lit.value.find("three").unwrap();
    assert_eq!(&text[lit.source_range(three..three + 5).unwrap()], "three");
    // Across a line break: not verbatim.
    assert!(lit.source_range(one..two + 2).is_none());

    let fold = doc.get("fold").and_then(Node::as_scalar).unwrap();
    assert_eq!(fold.value, format!("{NON_ASCII} a b\nc\n  d\ne"));
    let d = fold.value.find("  d").unwrap();
    assert_eq!(&text[fold.source_range(d..d + 3).unwrap()], "  d");
    assert!(fold.source_range(0..NON_ASCII.len() + 4).is_none());

    let sq = doc.get("sq").and_then(Node::as_scalar).unwrap();
    assert_eq!(sq.value, format!("{NON_ASCII} it's"));
    assert!(sq.source_range(0..sq.value.len()).is_none());
    let it = sq.value.find("it").unwrap();
    assert_eq!(
        &text[sq.source_range(0..it + 2).unwrap()],
        format!("{NON_ASCII} it")
    );
    let dq = doc.get("dq").and_then(Node::as_scalar).unwrap();
    assert_eq!(dq.value, format!("{NON_ASCII} é x"));
    assert!(dq.source_range(0..dq.value.len()).is_none());
    let x = dq.value.len() - 2;
    assert_eq!(&text[dq.source_range(x..x + 2).unwrap()], " x");
}

#[test]
fn multi_line_flow_scalars_fold() {
    let text = "a: x  \n  y\n\n  z\nb: 'p\n\n  q  r'\nc: \"m\\\n   n \\\n o\\tp\"\n";
    let all = read(text);
    assert_eq!(
        all.iter()
            .map(|(v, _, w)| (v.as_str(), w.is_some()))
            .collect::<Vec<_>>(),
        [
            ("a", true),
            ("x y\nz", false),
            ("b", true),
            ("p\nq  r", false),
            ("c", true),
            ("mn o\tp", false),
        ]
    );
    let docs = parse(text).unwrap();
    let a = docs[0].get("a").and_then(Node::as_scalar).unwrap();
    assert_eq!(&text[a.source_range(4..5).unwrap()], "z");
    let b = docs[0].get("b").and_then(Node::as_scalar).unwrap();
    assert_eq!(&text[b.source_range(2..6).unwrap()], "q  r");
    let c = docs[0].get("c").and_then(Node::as_scalar).unwrap();
    assert_eq!(&text[c.source_range(1..3).unwrap()], "n ");
    assert!(c.source_range(0..2).is_none());
}

#[test]
fn block_scalar_headers() {
    for (text, value) in [
        ("a: |2\n    x\n  y\nb: 1\n", "  x\ny\n"),
        ("a: |-\n  x\n\n\nb: 1\n", "x"),
        ("a: |+\n  x\n\n\nb: 1\n", "x\n\n\n"),
        ("a: >2-\n   x\n  y\n", " x\ny"),
        ("a: |\n\n\n  x\n   \n  y\n", "\n\nx\n \ny\n"),
        ("a: >\n  x\n\n\n  y\n", "x\n\ny\n"),
        ("a: >\n  \tx\n  y\n", "\tx\ny\n"),
        ("- |\n  x\n- >-\n   y\n   z\n", "x\n"),
        ("--- |\n  中\n--- >\n é\n", "中\n"),
    ] {
        let all = read(text);
        assert!(all.iter().any(|(v, _, _)| v == value), "{text:?}: {all:?}");
        // Each non-empty line of a literal value is verbatim in the text.
        let docs = parse(text).unwrap();
        for s in scalars(&docs)
            .into_iter()
            .filter(|s| s.style == Style::Literal)
        {
            let mut at = 0;
            for line in s.value.split('\n') {
                if !line.is_empty() {
                    let r = s.source_range(at..at + line.len());
                    assert_eq!(r.map(|r| &text[r]), Some(line), "{text:?} {s:?}");
                }
                at += line.len() + 1;
            }
        }
    }
}

#[test]
fn crlf_breaks_are_never_verbatim() {
    let text = "a: é\r\nb: |\r\n  é—\r\n  x\r\nc: 'p\r\n  q'\r\nd: z\r\n";
    let all = read(text);
    let got: Vec<(&str, bool)> = all
        .iter()
        .map(|(v, _, w)| (v.as_str(), w.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("a", true),
            ("é", true),
            ("b", true),
            ("é—\nx\n", false),
            ("c", true),
            ("p q", false),
            ("d", true),
            ("z", true),
        ]
    );
    let docs = parse(text).unwrap();
    let b = docs[0].get("b").and_then(Node::as_scalar).unwrap();
    assert_eq!(&text[b.source_range(0.."é—".len()).unwrap()], "é—");
    assert_eq!(&text[b.source_range(6..7).unwrap()], "x");
}

#[test]
fn bom_and_document_markers() {
    let text = "\u{feff}# é\na: é—\n--- # 中 comment\nb: |\n  ⇒\n...\n--- !!map\nc: 😀\n...\n";
    let docs = parse(text).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0].get("a").and_then(Node::as_str), Some("é—"));
    let all = read(text);
    assert!(
        all.iter().all(|(v, _, w)| w.is_some() || v.contains('\n')),
        "{all:?}"
    );
    assert_eq!(docs[2].get("c").and_then(Node::as_scalar).unwrap().line, 8);
}

#[test]
fn flow_collections() {
    let text = "x: {image: 'é/x', b: [a, \"中\", {k: v}], c: y}\ny: [é,\n  中, {k: w}]\n";
    let all = read(text);
    for (v, _, w) in &all {
        assert!(w.is_some(), "{v:?} {all:?}");
    }
    let docs = parse(text).unwrap();
    assert_eq!(
        docs[0]
            .get("x")
            .unwrap()
            .get("image")
            .and_then(Node::as_str),
        Some("é/x")
    );
}

#[test]
fn empty_scalars() {
    let text = "a: ''\nb: \"\"\nc:\nd: |\ne: x\n";
    let docs = parse(text).unwrap();
    let r = docs[0]
        .get("a")
        .and_then(Node::as_scalar)
        .unwrap()
        .source_range(0..0);
    assert_eq!(r, Some(4..4));
    let r = docs[0]
        .get("b")
        .and_then(Node::as_scalar)
        .unwrap()
        .source_range(0..0);
    assert_eq!(r, Some(10..10));
    assert!(
        docs[0]
            .get("c")
            .and_then(Node::as_scalar)
            .unwrap()
            .source_range(0..0)
            .is_none()
    );
    assert_eq!(docs[0].get("e").and_then(Node::as_str), Some("x"));
}

#[test]
fn anchors_tags_and_lone_cr() {
    for text in [
        "a: &x é\nb: !!str 中\nc: &y 'q'\nd: !t |\n  z\ne: *x\n",
        "a: é\rb: 中\r",
    ] {
        let all = read(text);
        assert!(
            all.iter().all(|(v, _, w)| w.is_some() || v == "z\n"),
            "{text:?}: {all:?}"
        );
    }
}

#[test]
fn a_scalar_holding_yaml_maps_through() {
    let text = "kind: ConfigMap\ndata:\n  cfg: |\n    # ⇒ é\n    images:\n      main: \"gcr.io/中/x:1\"\n      other: {i: 'q/é:2'}\n";
    let docs = parse(text).unwrap();
    let outer = docs[0]
        .get("data")
        .unwrap()
        .get("cfg")
        .and_then(Node::as_scalar)
        .unwrap();
    let inner = parse(&outer.value).unwrap();
    let images = inner[0].get("images").unwrap();
    let s = images.get("main").and_then(Node::as_scalar).unwrap();
    let r = s.source_range(0..s.value.len()).unwrap();
    let r = outer.source_range(r).unwrap();
    assert_eq!(&text[r], "gcr.io/中/x:1");
    let s = images
        .get("other")
        .unwrap()
        .get("i")
        .and_then(Node::as_scalar)
        .unwrap();
    let r = outer
        .source_range(s.source_range(0..s.value.len()).unwrap())
        .unwrap();
    assert_eq!(&text[r], "q/é:2");
    // JSON in a scalar too.
    let text = "data:\n  j: '{\"image\": \"é/x:1\", \"n\": [1, \"中\"]}'\n";
    let docs = parse(text).unwrap();
    let outer = docs[0]
        .get("data")
        .unwrap()
        .get("j")
        .and_then(Node::as_scalar)
        .unwrap();
    let inner = parse(&outer.value).unwrap();
    let s = inner[0].get("image").and_then(Node::as_scalar).unwrap();
    let r = outer
        .source_range(s.source_range(0..s.value.len()).unwrap())
        .unwrap();
    assert_eq!(&text[r], "é/x:1");
}

#[test]
fn errors_say_where() {
    let err = parse("a: é\nb: [\n").unwrap_err();
    assert!(err.line >= 2, "{err}");
    assert!(verbatim("a: é\n", "é"));
}
