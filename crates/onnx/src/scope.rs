//! Layer scopes: the PyTorch module paths a node belongs to, outermost
//! first (`["features", "features.1", "features.1.conv"]`).
//!
//! - The dynamo exporter writes them to the node's `metadata_props` key
//!   `pkg.torch.onnx.name_scopes` as a Python list literal of full paths,
//!   led by `''` (the root module) and ended by the node's own name:
//!   `['', 'encoder', 'encoder.ln', 'layer_norm_4']`.
//! - The torchscript exporter writes them into node names,
//!   `/features/features.1/conv/conv.0/conv.0.0/Conv`, each segment named
//!   relative to its nearest ancestor that is not a container: a segment
//!   that extends an earlier segment by `.suffix` is that segment's module
//!   plus `.suffix` (`conv.0` after `conv` is `features.1.conv.0`), any
//!   other segment is a child of the previous module (`conv` after
//!   `features.1` is `features.1.conv`).

use crate::proto::NodeProto;

/// The metadata key of the dynamo exporter's scopes.
pub const NAME_SCOPES_KEY: &str = "pkg.torch.onnx.name_scopes";

/// The module paths of a node: from its dynamo metadata when present,
/// else from a torchscript-style name (starting with `/`); `None` when the
/// node carries neither (see [`infer_missing`]).
pub fn node_scope(node: &NodeProto) -> Option<Vec<String>> {
    if let Some(entry) = node
        .metadata_props
        .iter()
        .find(|p| p.key == NAME_SCOPES_KEY)
    {
        return Some(dynamo_scope(&entry.value).unwrap_or_default());
    }
    node.name
        .starts_with('/')
        .then(|| torchscript_scope(&node.name))
}

/// Scopes for nodes that carry none (the dynamo exporter leaves some
/// decomposed nodes, such as the Split of `chunk`, without metadata): the
/// longest scope prefix shared by the nodes that consume their outputs.
/// `scopes` and `consumers` are indexed by node, in topological order, so
/// consumers come after their producers and are settled first.
pub fn infer_missing(scopes: &mut [Option<Vec<String>>], consumers: &[Vec<usize>]) {
    for i in (0..scopes.len()).rev() {
        if scopes[i].is_some() {
            continue;
        }
        let mut common: Option<Vec<String>> = None;
        for &c in consumers.get(i).map_or(&[][..], Vec::as_slice) {
            let Some(Some(theirs)) = scopes.get(c) else {
                continue;
            };
            common = Some(match common {
                None => theirs.clone(),
                Some(mine) => mine
                    .into_iter()
                    .zip(theirs.iter())
                    .take_while(|(a, b)| a == *b)
                    .map(|(a, _)| a)
                    .collect(),
            });
        }
        scopes[i] = Some(common.unwrap_or_default());
    }
}

/// Scopes from a `name_scopes` value: the leading root `''` and the
/// trailing node name are dropped. `None` if the value is not a list of
/// string literals.
pub fn dynamo_scope(value: &str) -> Option<Vec<String>> {
    let mut items = parse_python_str_list(value)?;
    items.pop();
    Some(items.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Scopes from a torchscript node name (`/a/a.1/b/Op`): empty unless the
/// name starts with `/`.
pub fn torchscript_scope(name: &str) -> Vec<String> {
    let Some(rest) = name.strip_prefix('/') else {
        return Vec::new();
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    segments.pop(); // the op's own name
    let segments: Vec<&str> = segments.into_iter().filter(|s| !s.is_empty()).collect();
    let mut full: Vec<String> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        // The longest earlier segment this one extends by ".suffix".
        let base = (0..i)
            .filter(|&j| {
                seg.len() > segments[j].len()
                    && seg.starts_with(segments[j])
                    && seg.as_bytes()[segments[j].len()] == b'.'
            })
            .max_by_key(|&j| (segments[j].len(), j));
        let path = match (base, full.last()) {
            (Some(j), _) => format!("{}{}", full[j], &seg[segments[j].len()..]),
            (None, Some(parent)) => format!("{parent}.{seg}"),
            (None, None) => seg.to_string(),
        };
        full.push(path);
    }
    full
}

/// Parses a Python list of string literals (`['a', "b\\'c"]`), as
/// `repr(list_of_str)` writes it.
pub fn parse_python_str_list(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim().chars().peekable();
    if chars.next()? != '[' {
        return None;
    }
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next()? {
            ']' if out.is_empty() => break,
            q @ ('\'' | '"') => {
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        c if c == q => break,
                        '\\' => match chars.next()? {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'x' => {
                                let hex: String = [chars.next()?, chars.next()?].iter().collect();
                                s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            c => s.push(c),
                        },
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            _ => return None,
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next()? {
            ',' => continue,
            ']' => break,
            _ => return None,
        }
    }
    chars.all(char::is_whitespace).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StringStringEntryProto;

    #[test]
    fn torchscript_names_join_into_full_paths() {
        assert_eq!(
            torchscript_scope("/features/features.1/conv/conv.0/conv.0.0/Conv"),
            vec![
                "features",
                "features.1",
                "features.1.conv",
                "features.1.conv.0",
                "features.1.conv.0.0"
            ]
        );
        assert_eq!(
            torchscript_scope("/features/features.18/features.18.2/Clip"),
            vec!["features", "features.18", "features.18.2"]
        );
        assert_eq!(
            torchscript_scope("/features/denseblock1/denselayer2/conv1/Conv"),
            vec![
                "features",
                "features.denseblock1",
                "features.denseblock1.denselayer2",
                "features.denseblock1.denselayer2.conv1"
            ]
        );
        assert_eq!(
            torchscript_scope("/features/features.1/features.1.0/block/block.3/MatMul"),
            vec![
                "features",
                "features.1",
                "features.1.0",
                "features.1.0.block",
                "features.1.0.block.3"
            ]
        );
        assert_eq!(
            torchscript_scope("/GlobalAveragePool"),
            Vec::<String>::new()
        );
        assert_eq!(torchscript_scope("Identity_12"), Vec::<String>::new());
        assert_eq!(
            torchscript_scope("/classifier/classifier.1/Gemm"),
            vec!["classifier", "classifier.1"]
        );
        // "features.10" does not extend "features.1".
        assert_eq!(
            torchscript_scope("/features/features.1/features.10/Relu"),
            vec!["features", "features.1", "features.10"]
        );
    }

    #[test]
    fn dynamo_scopes_drop_root_and_node_name() {
        assert_eq!(
            dynamo_scope("['', 'encoder', 'encoder.ln', 'layer_norm_4']").unwrap(),
            vec!["encoder", "encoder.ln"]
        );
        assert_eq!(dynamo_scope("['', 'view']").unwrap(), Vec::<String>::new());
        assert_eq!(dynamo_scope("[]").unwrap(), Vec::<String>::new());
        assert!(dynamo_scope("['', 'a'").is_none());
        assert!(dynamo_scope("not a list").is_none());
    }

    #[test]
    fn python_literals() {
        assert_eq!(
            parse_python_str_list(r#"['a', "b'c", 'd\'e', 'f\\g', '\x41']"#).unwrap(),
            vec!["a", "b'c", "d'e", "f\\g", "A"]
        );
        assert_eq!(
            parse_python_str_list(" [ ] ").unwrap(),
            Vec::<String>::new()
        );
        assert!(parse_python_str_list("['a',]x").is_none());
        assert!(parse_python_str_list("['a' 'b']").is_none());
        assert!(parse_python_str_list("['\\x4").is_none());
    }

    #[test]
    fn metadata_wins_over_the_name() {
        let node = NodeProto {
            name: "/ignored/Conv".into(),
            metadata_props: vec![StringStringEntryProto {
                key: NAME_SCOPES_KEY.into(),
                value: "['', 'conv_proj', 'conv2d']".into(),
            }],
            ..Default::default()
        };
        assert_eq!(node_scope(&node), Some(vec!["conv_proj".to_string()]));
        let plain = NodeProto {
            name: "/layer1/layer1.0/conv1/Conv".into(),
            ..Default::default()
        };
        assert_eq!(
            node_scope(&plain).unwrap(),
            vec!["layer1", "layer1.0", "layer1.0.conv1"]
        );
        let top = NodeProto {
            name: "/Flatten".into(),
            ..Default::default()
        };
        assert_eq!(node_scope(&top), Some(vec![]));
        let bare = NodeProto {
            name: "node_Split_393".into(),
            ..Default::default()
        };
        assert_eq!(node_scope(&bare), None);
    }

    #[test]
    fn missing_scopes_come_from_consumers() {
        let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        // 0: a Split without metadata feeding 1 and 2 (inside stage2.1), and
        // 3: an orphan without consumers.
        let mut scopes = vec![
            None,
            s(&["stage2", "stage2.1"]),
            s(&[
                "stage2",
                "stage2.1",
                "stage2.1.branch2",
                "stage2.1.branch2.0",
            ]),
            None,
        ];
        let consumers = vec![vec![1, 2], vec![], vec![], vec![]];
        infer_missing(&mut scopes, &consumers);
        assert_eq!(scopes[0], s(&["stage2", "stage2.1"]));
        assert_eq!(scopes[3], s(&[]));
    }
}
