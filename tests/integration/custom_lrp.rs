//! An LRP rule written outside the crates: the epsilon rule
//! (`x * W^T (R / stab(z))`) through the `Affine` view the built-in weight
//! rules use, placed by a user composite, on the fixture VGG: the same
//! relevance as the built-in epsilon rule, and a rule on another kind of op
//! refused.

use sightline::attribution::lrp::Composite;
use sightline::attribution::{Explainer, Target};
use sightline::autograd::{lrp, OpKind, Result, Rule, RuleContext};
use sightline::layers::{Architecture, Model};
use sightline::tensor::Tensor;
use std::path::Path;
use std::sync::Arc;

/// The epsilon rule with epsilon 1e-6, written by a user.
#[derive(Debug)]
struct LrpZero;

impl Rule<f64> for LrpZero {
    fn name(&self) -> &str {
        "user_lrp_zero"
    }

    fn backward(
        &self,
        ctx: &RuleContext<'_, f64>,
        r: &Tensor<f64>,
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        let op = ctx
            .node
            .op
            .affine()
            .ok_or_else(|| ctx.mismatch(self.name()))?;
        let x = op
            .input()
            .ok_or_else(|| ctx.not_retained(self.name(), "input"))?;
        let z = op
            .forward_with(x, op.weight(), op.bias())
            .map_err(|e| ctx.kernel(e))?;
        let s = r
            .zip_map(&z, "s", |r, z| r / lrp::stabilize(z, 1e-6))
            .map_err(|e| ctx.kernel(e))?;
        let back = op
            .input_gradient_with(&s, op.weight(), x.shape())
            .map_err(|e| ctx.kernel(e))?;
        let rel = back
            .zip_map(x, "r", |b, x| b * x)
            .map_err(|e| ctx.kernel(e))?;
        let mut out: Vec<Option<Tensor<f64>>> = (0..ctx.node.inputs.len()).map(|_| None).collect();
        out[0] = Some(rel);
        Ok(out)
    }
}

fn tiny_vgg() -> (Model<f64>, Tensor<f64>) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(fixtures.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let arch = Architecture::from_json_value(&m["models"]["tiny_vgg"]["architecture"]).unwrap();
    let model = Model::from_safetensors(&arch, fixtures.join("tiny_vgg.safetensors")).unwrap();
    let x = Tensor::from_vec(
        vec![1, 3, 32, 32],
        (0..3 * 32 * 32)
            .map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0)
            .collect(),
    )
    .unwrap();
    (model, x)
}

#[test]
fn a_user_rule_joins_the_composite_and_matches_the_built_in_one() {
    let (model, x) = tiny_vgg();
    let ex = Explainer::new(&model, &x).unwrap();
    let seed = Target::Class(2).seed(ex.logits().shape()).unwrap();
    let composite = |rule: Arc<dyn Rule<f64>>| {
        Composite::new()
            .with_kinds(&[OpKind::RELU], Arc::new(lrp::Pass))
            .with_kinds(
                &[OpKind::ADAPTIVE_AVG_POOL2D],
                Arc::new(lrp::Norm::default()),
            )
            .with_kinds(&[OpKind::CONV2D, OpKind::LINEAR], rule)
    };
    let user = composite(Arc::new(LrpZero)).rule_set(ex.tape()).unwrap();
    let built_in = composite(Arc::new(lrp::Epsilon::new(1e-6).unwrap()))
        .rule_set(ex.tape())
        .unwrap();
    let a = ex.gradient_at("", &seed, &user).unwrap();
    let b = ex.gradient_at("", &seed, &built_in).unwrap();
    assert!(
        a.max_abs() > 0.0,
        "user {} built-in {}",
        a.max_abs(),
        b.max_abs()
    );
    assert!(a.max_abs_diff(&b).unwrap() <= 1e-9 * b.max_abs());
    // On a max pool (not affine) the user's rule says so.
    let wrong = Composite::new()
        .with_kinds(&[OpKind::MAX_POOL2D], Arc::new(LrpZero))
        .rule_set(ex.tape())
        .unwrap();
    let e = ex.gradient_at("", &seed, &wrong).unwrap_err().to_string();
    assert!(
        e.contains("user_lrp_zero") && e.contains("max_pool2d"),
        "{e}"
    );
}
