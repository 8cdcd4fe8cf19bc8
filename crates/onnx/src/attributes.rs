//! Typed access to a node's attributes, with errors naming the node and
//! the attribute.

use crate::error::{OnnxError, Result};
use crate::proto::{attribute_type, AttributeProto, TensorProto};

/// A node's attributes.
pub struct Attributes<'a> {
    node: &'a str,
    op_type: &'a str,
    attrs: &'a [AttributeProto],
}

impl<'a> Attributes<'a> {
    /// Wraps the attributes of node `node` (its label) of `op_type`; an
    /// attribute given twice is an error.
    pub fn new(node: &'a str, op_type: &'a str, attrs: &'a [AttributeProto]) -> Result<Self> {
        let this = Self {
            node,
            op_type,
            attrs,
        };
        for (i, a) in attrs.iter().enumerate() {
            if attrs[..i].iter().any(|b| b.name == a.name) {
                return Err(this.error(&a.name, "given twice"));
            }
        }
        Ok(this)
    }

    /// An attribute error for `name`.
    pub fn error(&self, name: &str, message: impl Into<String>) -> OnnxError {
        OnnxError::Attribute {
            node: self.node.to_string(),
            op_type: self.op_type.to_string(),
            attribute: name.to_string(),
            message: message.into(),
        }
    }

    /// Whether the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The attribute, checked to be of type `want` (an attribute without a
    /// declared type is accepted when `present` says it holds that kind).
    fn typed(
        &self,
        name: &str,
        want: i32,
        what: &str,
        present: impl Fn(&AttributeProto) -> bool,
    ) -> Result<Option<&'a AttributeProto>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == want || (a.r#type == 0 && present(a)) => Ok(Some(a)),
            Some(a) => Err(self.error(
                name,
                format!("expected {what}, found attribute type {}", a.r#type),
            )),
        }
    }

    /// An integer attribute.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .typed(name, attribute_type::INT, "an integer", |a| a.i.is_some())?
            .map(|a| a.i.unwrap_or(0)))
    }

    /// An integer attribute with a default.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A 0/1 flag with a default.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.error(name, format!("expected 0 or 1, found {v}"))),
        }
    }

    /// A non-negative integer attribute that fits in `usize`, with a default.
    pub fn count_or(&self, name: &str, default: usize) -> Result<usize> {
        match self.int(name)? {
            None => Ok(default),
            Some(v) => usize::try_from(v).map_err(|_| self.error(name, format!("{v} is negative"))),
        }
    }

    /// A float attribute.
    pub fn float(&self, name: &str) -> Result<Option<f64>> {
        Ok(self
            .typed(name, attribute_type::FLOAT, "a float", |a| a.f.is_some())?
            .map(|a| f64::from(a.f.unwrap_or(0.0))))
    }

    /// A float attribute with a default.
    pub fn float_or(&self, name: &str, default: f64) -> Result<f64> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    /// A list-of-integers attribute.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, attribute_type::INTS, "a list of integers", |a| {
                !a.ints.is_empty()
            })?
            .map(|a| a.ints.clone()))
    }

    /// A list-of-floats attribute.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f64>>> {
        Ok(self
            .typed(name, attribute_type::FLOATS, "a list of floats", |a| {
                !a.floats.is_empty()
            })?
            .map(|a| a.floats.iter().map(|&v| f64::from(v)).collect()))
    }

    /// A string attribute (UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.typed(name, attribute_type::STRING, "a string", |a| a.s.is_some())? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone().unwrap_or_default())
                .map(Some)
                .map_err(|_| self.error(name, "not UTF-8")),
        }
    }

    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        Ok(self
            .typed(name, attribute_type::TENSOR, "a tensor", |a| a.t.is_some())?
            .and_then(|a| a.t.as_ref()))
    }

    /// Names of the attributes present, for messages.
    pub fn names(&self) -> Vec<&'a str> {
        self.attrs.iter().map(|a| a.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            i: Some(v),
            r#type: attribute_type::INT,
            ..Default::default()
        }
    }

    #[test]
    fn typed_getters() {
        let attrs = vec![
            int("group", 4),
            AttributeProto {
                name: "pads".into(),
                ints: vec![1, 1, 2, 2],
                r#type: attribute_type::INTS,
                ..Default::default()
            },
            AttributeProto {
                name: "alpha".into(),
                f: Some(0.5),
                ..Default::default() // no declared type: inferred
            },
            AttributeProto {
                name: "auto_pad".into(),
                s: Some(b"NOTSET".to_vec()),
                r#type: attribute_type::STRING,
                ..Default::default()
            },
        ];
        let a = Attributes::new("n", "Conv", &attrs).unwrap();
        assert_eq!(a.int("group").unwrap(), Some(4));
        assert_eq!(a.int_or("missing", 7).unwrap(), 7);
        assert_eq!(a.ints("pads").unwrap(), Some(vec![1, 1, 2, 2]));
        assert_eq!(a.float("alpha").unwrap(), Some(0.5));
        assert_eq!(a.string("auto_pad").unwrap().as_deref(), Some("NOTSET"));
        assert!(a.has("group") && !a.has("strides"));
        let e = a.float("group").unwrap_err().to_string();
        assert!(e.contains("attribute \"group\": expected a float"), "{e}");
    }

    #[test]
    fn flags_counts_and_duplicates() {
        let attrs = vec![int("keepdims", 2), int("axis", -1)];
        let a = Attributes::new("n", "ReduceMean", &attrs).unwrap();
        assert!(a.flag("keepdims", true).is_err());
        assert!(a.count_or("axis", 0).is_err());
        assert!(a.flag("missing", true).unwrap());
        let twice = vec![int("axis", 0), int("axis", 1)];
        assert!(Attributes::new("n", "Concat", &twice).is_err());
    }
}
