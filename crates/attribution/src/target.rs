//! What to explain: a class for every item, a class per item, or a seed tensor.

use crate::error::{AttributionError, Result};
use sightline_tensor::{Element, Tensor};

/// The target of an explanation, turned into the backward seed at the logits.
#[derive(Clone, Debug, PartialEq)]
pub enum Target<T> {
    /// One class for every item of the batch (a one-hot row per item).
    Class(usize),
    /// One class per item of the batch.
    PerItem(Vec<usize>),
    /// A seed tensor shaped like the logits, used unchanged.
    Seed(Tensor<T>),
}

impl<T: Element> Target<T> {
    /// The class of each of `n` items; a seed tensor names no classes and
    /// is an error here.
    pub fn item_classes(&self, n: usize) -> Result<Vec<usize>> {
        match self {
            Target::Class(c) => Ok(vec![*c; n]),
            Target::PerItem(cs) if cs.len() == n => Ok(cs.clone()),
            Target::PerItem(cs) => Err(AttributionError::TargetCount {
                expected: n,
                found: cs.len(),
            }),
            Target::Seed(_) => Err(AttributionError::InvalidOption(
                "this method explains classes, not a seed tensor".into(),
            )),
        }
    }

    /// The target of item `i` of a batch of `n` alone (a batch of one): its
    /// class, or its row of a seed tensor (`1 x K`).
    pub fn item(&self, i: usize, n: usize) -> Result<Target<T>> {
        if i >= n {
            return Err(AttributionError::InvalidOption(format!(
                "item {i} of a batch of {n}"
            )));
        }
        Ok(match self {
            Target::Class(c) => Target::Class(*c),
            Target::PerItem(cs) if cs.len() == n => Target::Class(cs[i]),
            Target::PerItem(cs) => {
                return Err(AttributionError::TargetCount {
                    expected: n,
                    found: cs.len(),
                })
            }
            Target::Seed(s) => {
                if s.shape().first() != Some(&n) || s.ndim() != 2 {
                    return Err(AttributionError::SeedShape {
                        expected: vec![n, s.shape().last().copied().unwrap_or(0)],
                        found: s.shape().to_vec(),
                    });
                }
                let row = s.select0(i)?;
                let k = row.len();
                Target::Seed(row.reshape([1, k])?)
            }
        })
    }

    /// The backward seed for logits of shape `N x K`.
    pub fn seed(&self, logits_shape: &[usize]) -> Result<Tensor<T>> {
        let (n, k) = match logits_shape {
            [n, k] => (*n, *k),
            _ => {
                return Err(AttributionError::SeedShape {
                    expected: logits_shape.to_vec(),
                    found: vec![],
                })
            }
        };
        if let Target::Seed(t) = self {
            if t.shape() != logits_shape {
                return Err(AttributionError::SeedShape {
                    expected: logits_shape.to_vec(),
                    found: t.shape().to_vec(),
                });
            }
            if t.has_non_finite() {
                return Err(AttributionError::InvalidOption(
                    "the seed tensor holds a NaN or infinite value".into(),
                ));
            }
            return Ok(t.clone());
        }
        let classes = self.item_classes(n)?;
        let mut seed = Tensor::zeros([n, k]);
        for (i, &c) in classes.iter().enumerate() {
            if c >= k {
                return Err(AttributionError::TargetOutOfRange {
                    target: c,
                    num_classes: k,
                });
            }
            seed.data_mut()[i * k + c] = T::one();
        }
        Ok(seed)
    }

    /// The classes of the `k` highest logits of each item, best first
    /// (ties by class number; NaN ranks below every number, so it is never
    /// first unless the whole row is NaN). `k` must lie in `1..=K` for `N x K`
    /// logits with `K >= 1`.
    pub fn top_k(logits: &Tensor<T>, k: usize) -> Result<Vec<Vec<usize>>> {
        let [_, classes] = logits.dims2("top_k")?;
        if classes == 0 {
            return Err(AttributionError::InvalidOption(
                "top_k of logits with zero classes".into(),
            ));
        }
        if k == 0 || k > classes {
            return Err(AttributionError::InvalidOption(format!(
                "top_k: k must lie in 1..={classes} (the logits' classes), got {k}"
            )));
        }
        Ok(logits
            .data()
            .chunks(classes)
            .map(|row| {
                let mut idx: Vec<usize> = (0..classes).collect();
                // Descending by value, NaN last; stable, so ties keep class order.
                idx.sort_by(|&a, &b| match (row[a].is_nan(), row[b].is_nan()) {
                    (false, false) => row[b]
                        .partial_cmp(&row[a])
                        .unwrap_or(std::cmp::Ordering::Equal),
                    (x, y) => x.cmp(&y),
                });
                idx.truncate(k);
                idx
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        let s = Target::<f32>::Class(2).seed(&[2, 3]).unwrap();
        assert_eq!(s.data(), &[0., 0., 1., 0., 0., 1.]);
        let s = Target::<f32>::PerItem(vec![0, 1]).seed(&[2, 3]).unwrap();
        assert_eq!(s.data(), &[1., 0., 0., 0., 1., 0.]);
        assert!(matches!(
            Target::<f32>::Class(3).seed(&[1, 3]),
            Err(AttributionError::TargetOutOfRange {
                target: 3,
                num_classes: 3
            })
        ));
        assert!(matches!(
            Target::<f32>::PerItem(vec![0]).seed(&[2, 3]),
            Err(AttributionError::TargetCount {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            Target::Seed(Tensor::<f32>::zeros([2, 2])).seed(&[2, 3]),
            Err(AttributionError::SeedShape { .. })
        ));
    }

    #[test]
    fn items_of_a_batch() {
        assert_eq!(
            Target::<f32>::PerItem(vec![4, 7]).item(1, 2).unwrap(),
            Target::Class(7)
        );
        assert_eq!(
            Target::<f32>::Class(3).item(0, 5).unwrap(),
            Target::Class(3)
        );
        let seed = Tensor::<f32>::from_vec([2, 2], vec![1., 2., 3., 4.]).unwrap();
        let Target::Seed(row) = Target::Seed(seed.clone()).item(1, 2).unwrap() else {
            panic!("a seed")
        };
        assert_eq!(
            (row.shape(), row.data()),
            (&[1usize, 2][..], &[3f32, 4.][..])
        );
        assert!(Target::<f32>::PerItem(vec![1]).item(0, 2).is_err());
        assert!(Target::<f32>::Class(1).item(2, 2).is_err());
        assert!(Target::Seed(seed).item(0, 3).is_err());
    }

    #[test]
    fn top_k_orders_by_score() {
        let l = Tensor::<f32>::from_vec([1, 4], vec![0.1, 3.0, -1.0, 2.0]).unwrap();
        assert_eq!(Target::top_k(&l, 2).unwrap(), vec![vec![1, 3]]);
    }

    #[test]
    fn top_k_ranks_nan_last_and_refuses_bad_k() {
        let nan = f32::NAN;
        let l = Tensor::<f32>::from_vec(
            [2, 4],
            vec![nan, 1.0, f32::NEG_INFINITY, 1.0, nan, nan, -5.0, nan],
        )
        .unwrap();
        assert_eq!(
            Target::top_k(&l, 4).unwrap(),
            vec![vec![1, 3, 2, 0], vec![2, 0, 1, 3]]
        );
        assert_eq!(Target::top_k(&l, 1).unwrap(), vec![vec![1], vec![2]]);
        for k in [0, 5, usize::MAX] {
            assert!(matches!(
                Target::top_k(&l, k),
                Err(AttributionError::InvalidOption(_))
            ));
        }
        let empty = Tensor::<f32>::zeros([1, 0]);
        let e = Target::top_k(&empty, 1).unwrap_err();
        assert!(e.to_string().contains("zero classes"), "{e}");
    }
}
