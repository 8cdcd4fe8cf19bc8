//! The report of `sightline evaluate`: each image's scores, their means per
//! method, and the merge of shards' reports into the report one run over
//! all their images gives.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One method's scores on one image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// Area under the deletion curve (lower: a better map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_auc: Option<f64>,
    /// Area under the insertion curve (higher: a better map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insertion_auc: Option<f64>,
    /// The cascading randomisation, from the top layer down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanity: Option<Vec<SanityEntry>>,
}

/// One step of the sanity check: the layers down to `layer` random.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SanityEntry {
    /// The lowest layer randomised.
    pub layer: String,
    /// Spearman's rank correlation with the trained model's map (`null`
    /// for a constant map).
    pub spearman: Option<f64>,
    /// The same of the maps' absolute values.
    pub spearman_abs: Option<f64>,
}

/// One image's scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageScores {
    /// The output name of the image (unique in the run).
    pub stem: String,
    /// Its file.
    pub path: String,
    /// The class whose probability the games follow.
    pub class: usize,
    /// Scores by method name.
    pub methods: BTreeMap<String, MethodScores>,
}

/// An image that could not be scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The output name of the image.
    pub stem: String,
    /// Its file.
    pub path: String,
    /// Why.
    pub error: String,
}

/// The means of one method over the images.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// Images scored.
    pub images: usize,
    /// Mean deletion AUC.
    pub deletion_auc: Option<f64>,
    /// Mean insertion AUC.
    pub insertion_auc: Option<f64>,
    /// Mean Spearman correlation per sanity step (layer), over the images
    /// whose map was not constant there.
    pub sanity: Vec<(String, Option<f64>)>,
}

/// The report of a run (or of merged shards).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The model, as described by the library.
    pub model: String,
    /// The methods, in the order asked.
    pub methods: Vec<String>,
    /// The metrics computed (`deletion`, `insertion`, `sanity`).
    pub metrics: Vec<String>,
    /// Every scored image, by stem.
    pub images: Vec<ImageScores>,
    /// The images that failed, by stem.
    pub failed: Vec<Failure>,
    /// Means per method.
    pub summary: BTreeMap<String, MethodSummary>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

impl Report {
    /// The report of `images` and `failed` (each sorted by stem here, so
    /// that any split of the same images gives the same report).
    pub fn new(
        model: String,
        methods: Vec<String>,
        metrics: Vec<String>,
        mut images: Vec<ImageScores>,
        mut failed: Vec<Failure>,
    ) -> Self {
        images.sort_by(|a, b| a.stem.cmp(&b.stem));
        failed.sort_by(|a, b| a.stem.cmp(&b.stem));
        let summary = methods
            .iter()
            .map(|m| {
                let scores: Vec<&MethodScores> =
                    images.iter().filter_map(|i| i.methods.get(m)).collect();
                let layers: Vec<String> = scores
                    .iter()
                    .find_map(|s| s.sanity.as_ref())
                    .map(|steps| steps.iter().map(|e| e.layer.clone()).collect())
                    .unwrap_or_default();
                let sanity = layers
                    .iter()
                    .enumerate()
                    .map(|(k, layer)| {
                        let at = scores.iter().filter_map(|s| {
                            s.sanity
                                .as_ref()
                                .and_then(|v| v.get(k))
                                .and_then(|e| e.spearman)
                        });
                        (layer.clone(), mean(at))
                    })
                    .collect();
                let summary = MethodSummary {
                    images: scores.len(),
                    deletion_auc: mean(scores.iter().filter_map(|s| s.deletion_auc)),
                    insertion_auc: mean(scores.iter().filter_map(|s| s.insertion_auc)),
                    sanity,
                };
                (m.clone(), summary)
            })
            .collect();
        Self {
            model,
            methods,
            metrics,
            images,
            failed,
            summary,
        }
    }

    /// The shards' reports merged: the report one run over all their
    /// images gives. They must be of the same model, methods and metrics;
    /// an image in two shards must have the same scores in both (a rerun),
    /// and is counted once; an image that failed in one shard and was
    /// scored in another counts as scored.
    pub fn merge(reports: &[Report]) -> Result<Report, String> {
        let first = reports.first().ok_or("no report to merge")?;
        let mut images: BTreeMap<String, ImageScores> = BTreeMap::new();
        let mut failed: BTreeMap<String, Failure> = BTreeMap::new();
        for (k, r) in reports.iter().enumerate() {
            if (&r.model, &r.methods, &r.metrics) != (&first.model, &first.methods, &first.metrics)
            {
                return Err(format!(
                    "report {} is of another run ({}, methods {:?}, metrics {:?}) than report 1 ({}, {:?}, {:?})",
                    k + 1,
                    r.model,
                    r.methods,
                    r.metrics,
                    first.model,
                    first.methods,
                    first.metrics
                ));
            }
            for i in &r.images {
                match images.get(&i.stem) {
                    Some(seen) if seen != i => {
                        return Err(format!(
                            "image `{}` has different scores in two reports",
                            i.stem
                        ))
                    }
                    Some(_) => {}
                    None => {
                        images.insert(i.stem.clone(), i.clone());
                    }
                }
            }
            for f in &r.failed {
                failed.entry(f.stem.clone()).or_insert_with(|| f.clone());
            }
        }
        failed.retain(|stem, _| !images.contains_key(stem));
        Ok(Report::new(
            first.model.clone(),
            first.methods.clone(),
            first.metrics.clone(),
            images.into_values().collect(),
            failed.into_values().collect(),
        ))
    }
}

/// `K/N` of `--shard`: this run takes the images `K, K + N, K + 2N, ...`
/// (0-based, `K < N`), so that N runs with K = 0 ... N - 1 (a SLURM array
/// index, a Kubernetes completion index) cover every image once.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if n > 0 && k < n => Ok((k, n)),
        _ => Err(format!(
            "--shard {s}: expected K/N with 0 <= K < N (this run takes every N-th image from the K-th)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(stem: &str, d: f64) -> ImageScores {
        let mut methods = BTreeMap::new();
        methods.insert(
            "gradient".to_string(),
            MethodScores {
                deletion_auc: Some(d),
                insertion_auc: Some(1.0 - d),
                sanity: Some(vec![SanityEntry {
                    layer: "fc".into(),
                    spearman: Some(d / 2.0),
                    spearman_abs: None,
                }]),
            },
        );
        ImageScores {
            stem: stem.into(),
            path: format!("{stem}.png"),
            class: 1,
            methods,
        }
    }

    fn report(images: Vec<ImageScores>, failed: Vec<Failure>) -> Report {
        Report::new(
            "m".into(),
            vec!["gradient".into()],
            vec!["deletion".into(), "insertion".into(), "sanity".into()],
            images,
            failed,
        )
    }

    #[test]
    fn shards_merge_into_the_report_of_one_run() {
        let all = report(
            vec![image("a", 0.1), image("b", 0.3), image("c", 0.2)],
            vec![],
        );
        let one = report(vec![image("c", 0.2), image("a", 0.1)], vec![]);
        let fail = Failure {
            stem: "b".into(),
            path: "b.png".into(),
            error: "x".into(),
        };
        let two = report(vec![image("b", 0.3)], vec![]);
        let earlier = report(vec![], vec![fail.clone()]);
        assert_eq!(
            Report::merge(&[one.clone(), two.clone(), earlier]).unwrap(),
            all
        );
        let s = &all.summary["gradient"];
        assert_eq!(s.images, 3);
        assert!((s.deletion_auc.unwrap() - 0.2).abs() < 1e-15);
        assert!((s.sanity[0].1.unwrap() - 0.1).abs() < 1e-15);
        // A failure nobody scored stays; conflicting scores are an error.
        let kept = Report::merge(&[one.clone(), report(vec![], vec![fail])]).unwrap();
        assert_eq!(kept.failed.len(), 1);
        assert!(Report::merge(&[one.clone(), report(vec![image("a", 0.5)], vec![])]).is_err());
        let mut other = two;
        other.model = "n".into();
        assert!(Report::merge(&[one, other]).is_err());
        assert!(Report::merge(&[]).is_err());
    }

    #[test]
    fn shards_are_k_of_n() {
        assert_eq!(parse_shard("0/4"), Ok((0, 4)));
        assert_eq!(parse_shard(" 3 / 4 "), Ok((3, 4)));
        for bad in ["4/4", "1/0", "-1/2", "a/b", "3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
