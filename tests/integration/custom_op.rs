//! An op and a rule defined outside the crates, as a user writes them:
//! Softplus with its standard backward and a guided-style rule, in a
//! network of the user's own, explained through the `Explainer`.

use sightline::attribution::{Explainer, Method, SaliencyOptions, Target};
use sightline::autograd::ops::{conv, linear, pool};
use sightline::autograd::{Op, OpKind, Result, Retain, Rule, RuleContext, RuleSet, Tape, Var};
use sightline::layers::{Classifier, DefaultLayers, Model};
use sightline::tensor::{Conv2dParams, Tensor};
use std::sync::Arc;

/// The kind by which rule sets choose a rule for Softplus.
const SOFTPLUS: OpKind = OpKind::new("softplus");

/// A recorded Softplus `ln(1 + e^x)`: it keeps its input, which both rules
/// read.
#[derive(Debug)]
struct SoftplusOp {
    input: Arc<Tensor<f64>>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Records Softplus of `x`.
fn softplus(tape: &mut Tape<f64>, x: &Var<f64>) -> Result<Var<f64>> {
    let y = x.value().map(|v| v.max(0.0) + (-v.abs()).exp().ln_1p());
    let op = SoftplusOp {
        input: x.value_arc().clone(),
    };
    Ok(tape.record(op, &[x], y))
}

/// `g * d/dx softplus(x)`, or with `guided`, `max(g, 0) * ...`.
fn backward(
    ctx: &RuleContext<'_, f64>,
    rule: &str,
    g: &Tensor<f64>,
    guided: bool,
) -> Result<Vec<Option<Tensor<f64>>>> {
    let op: &SoftplusOp = ctx.op(rule)?;
    if !ctx.needs(0) {
        return Ok(vec![None]);
    }
    let gx = g
        .zip_map(&op.input, "softplus backward", |g, x| {
            let g = if guided { g.max(0.0) } else { g };
            g * sigmoid(x)
        })
        .map_err(|e| ctx.kernel(e))?;
    Ok(vec![Some(gx)])
}

impl Op<f64> for SoftplusOp {
    fn kind(&self) -> OpKind {
        SOFTPLUS
    }

    fn backward(
        &self,
        ctx: &RuleContext<'_, f64>,
        g: &Tensor<f64>,
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        backward(ctx, "standard", g, false)
    }
}

/// Guided backprop's idea on Softplus: only positive gradients pass.
#[derive(Debug)]
struct GuidedSoftplus;

impl Rule<f64> for GuidedSoftplus {
    fn name(&self) -> &str {
        "guided_softplus"
    }

    fn backward(
        &self,
        ctx: &RuleContext<'_, f64>,
        g: &Tensor<f64>,
    ) -> Result<Vec<Option<Tensor<f64>>>> {
        backward(ctx, self.name(), g, true)
    }
}

/// conv (3 -> 4, 3 x 3) -> softplus -> global average pool -> linear (4 -> 5).
#[derive(Debug)]
struct SoftNet {
    conv_w: Arc<Tensor<f64>>,
    fc_w: Arc<Tensor<f64>>,
    fc_b: Arc<Tensor<f64>>,
}

impl SoftNet {
    fn new() -> Self {
        let vals = |n: usize, seed: usize| -> Vec<f64> {
            (0..n)
                .map(|i| (((i + seed) * 7919) % 997) as f64 / 498.0 - 1.0)
                .collect()
        };
        Self {
            conv_w: Arc::new(Tensor::from_vec([4, 3, 3, 3], vals(108, 1)).unwrap()),
            fc_w: Arc::new(Tensor::from_vec([5, 4], vals(20, 2)).unwrap()),
            fc_b: Arc::new(Tensor::from_vec([5], vals(5, 3)).unwrap()),
        }
    }
}

/// Runs `f` as the layer `name`, registering its output.
fn layer(
    tape: &mut Tape<f64>,
    name: &str,
    f: impl FnOnce(&mut Tape<f64>) -> Result<Var<f64>>,
) -> sightline::layers::Result<Var<f64>> {
    tape.push_scope(name);
    let y = f(tape);
    if let Ok(y) = &y {
        tape.mark_layer_output(y);
    }
    tape.pop_scope();
    Ok(y?)
}

impl Classifier<f64> for SoftNet {
    fn forward(&self, tape: &mut Tape<f64>, x: &Var<f64>) -> sightline::layers::Result<Var<f64>> {
        let h = layer(tape, "conv", |t| {
            let w = t.constant(self.conv_w.clone());
            conv::conv2d(t, x, &w, None, Conv2dParams::new(1, 1))
        })?;
        let a = layer(tape, "act", |t| softplus(t, &h))?;
        let p = layer(tape, "pool", |t| pool::adaptive_avg_pool2d(t, &a, (1, 1)))?;
        let n = p.shape()[0];
        let flat = sightline::autograd::ops::shape::reshape(tape, &p, &[n, 4])?;
        layer(tape, "fc", |t| {
            let (w, b) = (t.constant(self.fc_w.clone()), t.constant(self.fc_b.clone()));
            linear::linear(t, &flat, &w, Some(&b))
        })
    }

    fn layer_paths(&self) -> Vec<String> {
        ["conv", "act", "pool", "fc"].map(String::from).to_vec()
    }

    fn num_classes(&self) -> usize {
        5
    }

    fn default_layers(&self) -> DefaultLayers {
        DefaultLayers {
            grad_cam: "act".into(),
            excitation: "act".into(),
            contrast: "pool".into(),
            classifier: "fc".into(),
        }
    }
}

fn input() -> Tensor<f64> {
    let data = (0..2 * 3 * 6 * 5)
        .map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0)
        .collect();
    Tensor::from_vec([2, 3, 6, 5], data).unwrap()
}

fn model() -> Model<f64> {
    Model::from_classifier(Arc::new(SoftNet::new()))
}

/// The standard gradient through the user's op is the true gradient:
/// central differences of the target logit.
#[test]
fn softplus_standard_backward_is_the_gradient() {
    let model = model();
    let x = input();
    let ex = Explainer::new(&model, &x).unwrap();
    let target: Target<f64> = Target::PerItem(vec![3, 1]);
    let seed = target.seed(ex.logits().shape()).unwrap();
    let g = ex.gradient_at("", &seed, &RuleSet::standard()).unwrap();
    let score = |x: &Tensor<f64>| -> f64 {
        let l = model.logits(x).unwrap();
        l.data()[3] + l.data()[5 + 1]
    };
    let h = 1e-6;
    for i in (0..x.len()).step_by(7) {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus.data_mut()[i] += h;
        minus.data_mut()[i] -= h;
        let numeric = (score(&plus) - score(&minus)) / (2.0 * h);
        let analytic = g.data()[i];
        assert!(
            (numeric - analytic).abs() <= 1e-7 * (1.0 + numeric.abs()),
            "element {i}: numeric {numeric}, analytic {analytic}"
        );
    }
}

/// The user's rule runs where a rule set puts it (by kind, or by layer
/// name), and only there: it maps the gradient at Softplus's output to
/// `max(g, 0) * sigmoid(x)` at its input, and the built-in guided
/// backprop (a ReLU rule) leaves Softplus standard.
#[test]
fn a_user_rule_on_a_user_op_runs_through_the_explainer() {
    let model = model();
    let x = input();
    let ex = Explainer::new(&model, &x).unwrap();
    let target: Target<f64> = Target::PerItem(vec![1, 2]);
    let seed = target.seed(ex.logits().shape()).unwrap();
    let at_act = ex.gradient_at("act", &seed, &RuleSet::standard()).unwrap();
    let conv_out = model_layer_input(&model, &x);
    assert!(at_act.data().iter().any(|&g| g < 0.0) && at_act.data().iter().any(|&g| g > 0.0));
    let want: Vec<f64> = at_act
        .data()
        .iter()
        .zip(conv_out.data())
        .map(|(&g, &z)| g.max(0.0) * sigmoid(z))
        .collect();
    let by_kind = RuleSet::standard().with(SOFTPLUS, Arc::new(GuidedSoftplus));
    let by_layer = RuleSet::standard().with_layer("act", None, Arc::new(GuidedSoftplus));
    for rules in [&by_kind, &by_layer] {
        let got = ex.gradient_at("conv", &seed, rules).unwrap();
        assert_eq!(got.shape(), conv_out.shape());
        for (g, w) in got.data().iter().zip(&want) {
            assert!((g - w).abs() <= 1e-12, "{g} vs {w}");
        }
    }
    // A rule set for another layer leaves Softplus alone.
    let elsewhere = RuleSet::standard().with_layer("fc", Some(SOFTPLUS), Arc::new(GuidedSoftplus));
    let standard = ex.gradient_at("conv", &seed, &RuleSet::standard()).unwrap();
    assert_eq!(ex.gradient_at("conv", &seed, &elsewhere).unwrap(), standard);
    // TorchRay's guided backprop changes ReLUs only: here, the gradient.
    let guided = ex
        .saliency(
            &Method::GuidedBackprop,
            &target,
            &SaliencyOptions::default(),
        )
        .unwrap();
    let gradient = ex
        .saliency(&Method::Gradient, &target, &SaliencyOptions::default())
        .unwrap();
    assert_eq!(guided.map, gradient.map);
    // The user's rule on another op is an error naming both, not a silent no-op.
    let wrong = RuleSet::standard().with(OpKind::LINEAR, Arc::new(GuidedSoftplus));
    let err = ex.gradient_at("", &seed, &wrong).unwrap_err().to_string();
    assert!(
        err.contains("guided_softplus") && err.contains("linear"),
        "{err}"
    );
}

/// The convolution's output (Softplus's input), from a forward pass that
/// keeps layer outputs.
fn model_layer_input(model: &Model<f64>, x: &Tensor<f64>) -> Tensor<f64> {
    let mut tape = Tape::with_kept_layers(Retain::Minimal, &["conv"]);
    let input = tape.input(x.clone());
    model.forward(&mut tape, &input).unwrap();
    let out = tape.layer_output("conv").unwrap();
    out.value.as_ref().unwrap().as_ref().clone()
}
