//! Class names: the 1000 ImageNet-1k classes in torchvision's order (the
//! short names of the well-known `imagenet_classes.txt`: 0 `tench`,
//! 281 `tabby`, 282 `tiger cat`, ...), embedded in the binary.

use std::sync::OnceLock;

/// `assets/imagenet_classes.txt`: one class name a line, in class order.
pub const IMAGENET_CLASSES_TXT: &str = include_str!("../assets/imagenet_classes.txt");

/// Number of ImageNet-1k classes.
pub const IMAGENET_NUM_CLASSES: usize = 1000;

/// The 1000 ImageNet class names, index = class.
pub fn imagenet_classes() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| IMAGENET_CLASSES_TXT.lines().map(str::trim).collect())
}

/// How the classes of a model are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// ImageNet's names (a model with 1000 classes).
    ImageNet,
    /// `class K` (any other number of classes).
    Numbered,
}

impl Labels {
    /// ImageNet's names for a 1000-class model, numbers otherwise.
    pub fn for_classes(num_classes: usize) -> Self {
        if num_classes == IMAGENET_NUM_CLASSES {
            Labels::ImageNet
        } else {
            Labels::Numbered
        }
    }

    /// The name of class `k`: ImageNet's, or `class K`.
    pub fn name(self, k: usize) -> String {
        match self {
            Labels::ImageNet => match imagenet_classes().get(k) {
                Some(name) => (*name).to_string(),
                None => format!("class {k}"),
            },
            Labels::Numbered => format!("class {k}"),
        }
    }

    /// `name (K) score`, as the command prints a prediction: `tabby (281) 0.71`
    /// (`class K 0.71` without names). A score below 0.005 is written in
    /// scientific notation (`1.6e-3`) rather than as `0.00`.
    pub fn describe(self, k: usize, score: f32) -> String {
        let score = if score.abs() >= 0.005 || score == 0.0 {
            format!("{score:.2}")
        } else {
            format!("{score:.1e}")
        };
        match self {
            Labels::ImageNet => format!("{} ({k}) {score}", self.name(k)),
            Labels::Numbered => format!("{} {score}", self.name(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_names_in_torchvision_order() {
        let names = imagenet_classes();
        assert_eq!(names.len(), 1000);
        assert_eq!(names[0], "tench");
        assert_eq!(names[1], "goldfish");
        assert_eq!(names[2], "great white shark");
        assert_eq!(names[207], "golden retriever");
        assert_eq!(names[281], "tabby");
        assert_eq!(names[282], "tiger cat");
        assert_eq!(names[340], "zebra");
        assert_eq!(names[999], "toilet tissue");
        assert!(names.iter().all(|n| !n.is_empty() && !n.contains('_')));
    }

    #[test]
    fn numbered_for_other_models() {
        assert_eq!(Labels::for_classes(1000), Labels::ImageNet);
        assert_eq!(Labels::for_classes(10), Labels::Numbered);
        assert_eq!(Labels::Numbered.name(3), "class 3");
        assert_eq!(Labels::ImageNet.describe(281, 0.714), "tabby (281) 0.71");
        assert_eq!(Labels::Numbered.describe(3, 0.5), "class 3 0.50");
        assert_eq!(
            Labels::ImageNet.describe(906, 0.0016),
            "Windsor tie (906) 1.6e-3"
        );
        assert_eq!(Labels::ImageNet.name(5000), "class 5000");
    }
}
