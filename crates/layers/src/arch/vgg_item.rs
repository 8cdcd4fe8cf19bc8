//! One entry of a VGG configuration: a number of channels or `"M"`.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An entry of torchvision's VGG `cfg` list: a 3x3 convolution with this many
/// output channels (then [batch norm and] ReLU), or `"M"`, a 2x2 max pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggItem {
    /// A convolution with this many output channels.
    Conv(usize),
    /// A max pool, kernel 2, stride 2.
    MaxPool,
}

impl Serialize for VggItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Conv(c) => s.serialize_u64(*c as u64),
            Self::MaxPool => s.serialize_str("M"),
        }
    }
}

struct ItemVisitor;

impl Visitor<'_> for ItemVisitor {
    type Value = VggItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of channels or \"M\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<VggItem, E> {
        usize::try_from(v)
            .map(VggItem::Conv)
            .map_err(|_| E::custom(format!("channel count {v} is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<VggItem, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("channel count {v} is negative")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<VggItem, E> {
        if v == "M" {
            Ok(VggItem::MaxPool)
        } else {
            Err(E::custom(format!(
                "unknown VGG cfg entry \"{v}\" (expected a number or \"M\")"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for VggItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}
