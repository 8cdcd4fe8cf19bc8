//! The saliency API on models of several shapes: one forward for many
//! answers, and typed errors for bad requests.

use sightline::attribution::captum::{
    self, Baseline, IgOptions, Integration, NoiseKind, NoiseTunnelOptions,
};
use sightline::attribution::{
    saliency, AttributionError, Explainer, Method, ModelForm, Resize, SaliencyOptions, Target,
};
use sightline::autograd::Retain;
use sightline::layers::{Architecture, LayerError, Model};
use sightline::tensor::Tensor;

fn arch(json: &str) -> Architecture {
    serde_json::from_str(json).expect("architecture")
}

fn vgg_bn() -> Model<f32> {
    let a = arch(
        r#"{"kind":"vgg","cfg":[6,6,"M",12,"M",24,24,"M",24,"M"],"batch_norm":true,"avgpool":[3,3],"hidden":24,"num_classes":13}"#,
    );
    Model::random(&a, 7).unwrap()
}

fn resnet_bottleneck() -> Model<f32> {
    let a = arch(
        r#"{"kind":"resnet","block":"bottleneck","layers":[1,2,1,1],"widths":[4,8,8,16],"num_classes":11}"#,
    );
    Model::random(&a, 8).unwrap()
}

fn input(n: usize, h: usize, w: usize) -> Tensor<f32> {
    let len = n * 3 * h * w;
    let data = (0..len)
        .map(|i| ((i * 7919) % 997) as f32 / 498.0 - 1.0)
        .collect();
    Tensor::from_vec([n, 3, h, w], data).unwrap()
}

#[test]
fn one_forward_answers_every_method_and_target_as_separate_calls() {
    for model in [vgg_bn(), resnet_bottleneck()] {
        let x = input(2, 61, 53);
        // Batch norms folded, as the one-method calls fold them.
        let ex = Explainer::with_retention(&model, &x, Retain::All, &[]).unwrap();
        let top = Target::top_k(ex.logits(), 3).unwrap();
        let targets: Vec<Target<f32>> = (0..3)
            .map(|k| Target::PerItem(top.iter().map(|t| t[k]).collect()))
            .collect();
        let opts = SaliencyOptions {
            resize: Resize::Input,
            ..Default::default()
        };
        let many = ex.saliency_many(&Method::all(), &targets, &opts).unwrap();
        for (m, method) in Method::all().iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                let alone = saliency(&model, &x, method, target, &opts).unwrap();
                assert_eq!(many[m][t].map, alone.map, "{method} target {t}");
                assert_eq!(many[m][t].map.shape(), &[2, 1, 61, 53]);
                assert!(!alone.map.has_non_finite(), "{method}");
            }
        }
    }
}

#[test]
fn default_layers_follow_torchray() {
    let vgg16 = Model::<f32>::random(&Architecture::preset("vgg16").unwrap(), 1).unwrap();
    let d = vgg16.default_layers();
    assert_eq!(
        (d.grad_cam.as_str(), d.excitation.as_str()),
        ("features.29", "features.23")
    );
    assert_eq!(
        (d.contrast.as_str(), d.classifier.as_str()),
        ("classifier.4", "classifier.6")
    );
    let r = resnet_bottleneck().default_layers();
    assert_eq!(
        (r.grad_cam.as_str(), r.excitation.as_str()),
        ("layer4", "layer3")
    );
    assert_eq!(
        (r.contrast.as_str(), r.classifier.as_str()),
        ("avgpool", "fc")
    );
}

/// The gradient methods' form of the model merges batch norms into the
/// convolutions before them except after the layers it is told to keep: a
/// merged convolution cannot be probed (a typed error saying why), a kept
/// one can, and the maps match the plain model's to rounding.
#[test]
fn merged_batch_norms_keep_named_layers_and_match_plain_maps() {
    let model = resnet_bottleneck();
    let x = input(1, 45, 38);
    let conv = "layer1.0.conv1";
    let merged = ModelForm::BatchNormsMerged.apply(&model, &[]).unwrap();
    let all_merged = Explainer::with_retention(&merged, &x, Retain::Minimal, &[]).unwrap();
    let at = SaliencyOptions::at(conv);
    let e = all_merged
        .saliency(&Method::GradCam, &Target::Class(3), &at)
        .unwrap_err();
    assert!(
        matches!(&e, AttributionError::InvalidOption(m) if m.contains("merged") && m.contains(conv)),
        "{e}"
    );
    let keeping = ModelForm::BatchNormsMerged.apply(&model, &[conv]).unwrap();
    let kept = Explainer::with_retention(&keeping, &x, Retain::Minimal, &[conv]).unwrap();
    let plain = Explainer::new(&model, &x).unwrap();
    let a = kept
        .saliency(&Method::GradCam, &Target::Class(3), &at)
        .unwrap();
    let b = plain
        .saliency(&Method::GradCam, &Target::Class(3), &at)
        .unwrap();
    assert_close(&a.map, &b.map);
    let opts = SaliencyOptions::default();
    for method in [Method::Gradient, Method::GuidedBackprop] {
        let a = all_merged
            .saliency(&method, &Target::Class(3), &opts)
            .unwrap();
        let b = plain.saliency(&method, &Target::Class(3), &opts).unwrap();
        assert_close(&a.map, &b.map);
    }
}

fn assert_close(a: &Tensor<f32>, b: &Tensor<f32>) {
    assert_eq!(a.shape(), b.shape());
    let scale = b.max_abs();
    assert!(scale > 0.0);
    let diff = a.max_abs_diff(b).unwrap();
    assert!(diff <= 1e-5 * scale, "{diff} vs {scale}");
}

#[test]
fn bad_requests_are_typed_errors() {
    let model = vgg_bn();
    let x = input(2, 40, 56);
    let ex = Explainer::new(&model, &x).unwrap();
    let opts = SaliencyOptions::default();
    let e = ex
        .saliency(&Method::Gradient, &Target::Class(13), &opts)
        .unwrap_err();
    assert!(matches!(
        e,
        AttributionError::TargetOutOfRange {
            target: 13,
            num_classes: 13
        }
    ));
    let e = ex
        .saliency(&Method::Gradient, &Target::PerItem(vec![1]), &opts)
        .unwrap_err();
    assert!(matches!(
        e,
        AttributionError::TargetCount {
            expected: 2,
            found: 1
        }
    ));
    let e = ex
        .saliency(
            &Method::Gradient,
            &Target::Seed(Tensor::zeros([2, 12])),
            &opts,
        )
        .unwrap_err();
    assert!(matches!(e, AttributionError::SeedShape { .. }));
    let e = ex
        .saliency(
            &Method::GradCam,
            &Target::Class(0),
            &SaliencyOptions::at("features.99"),
        )
        .unwrap_err();
    assert!(e.to_string().contains("features.99"), "{e}");
    let e = ex
        .saliency(
            &Method::GradCam,
            &Target::Class(0),
            &SaliencyOptions::at("classifier.0"),
        )
        .unwrap_err();
    assert!(matches!(e, AttributionError::NotSpatial { .. }), "{e}");
    // Input that is not N x 3 x H x W, or too small for the architecture.
    let e = Explainer::new(&model, &Tensor::zeros([1, 1, 40, 40]))
        .err()
        .unwrap();
    assert!(
        matches!(e, AttributionError::Layer(LayerError::InputShape { .. })),
        "{e}"
    );
    let e = Explainer::new(&model, &input(1, 8, 8)).err().unwrap();
    assert!(
        matches!(e, AttributionError::Layer(LayerError::InputTooSmall { .. })),
        "{e}"
    );
    let e = "risee".parse::<Method>().unwrap_err();
    assert!(matches!(e, AttributionError::UnknownMethod { .. }));
}

#[test]
fn integrated_gradients_is_complete_and_batches_do_not_change_it() {
    let model = resnet_bottleneck();
    let x = input(1, 33, 35);
    let target = Target::Class(4);
    let opts = IgOptions {
        n_steps: 64,
        method: Integration::GaussLegendre,
        internal_batch_size: 64,
        ..IgOptions::default()
    };
    let ig = captum::integrated_gradients(&model, &x, &target, &opts).unwrap();
    // Completeness: attributions sum to F(x) - F(baseline).
    let fx = model.logits(&x).unwrap().data()[4];
    let f0 = model.logits(&Tensor::zeros([1, 3, 33, 35])).unwrap().data()[4];
    let sum: f32 = ig.data().iter().sum();
    assert!(
        (sum - (fx - f0)).abs() < 0.02 * (fx - f0).abs().max(1.0),
        "{sum} vs {}",
        fx - f0
    );
    let small = IgOptions {
        internal_batch_size: 5,
        ..opts.clone()
    };
    let ig2 = captum::integrated_gradients(&model, &x, &target, &small).unwrap();
    assert!(ig.max_abs_diff(&ig2).unwrap() <= 1e-5 * ig.max_abs().max(1e-6));
    let bad = IgOptions {
        baseline: Baseline::Tensor(Tensor::zeros([1, 3, 2, 2])),
        ..opts
    };
    assert!(captum::integrated_gradients(&model, &x, &target, &bad).is_err());
}

#[test]
fn noise_tunnel_wraps_any_method_reproducibly() {
    let model = vgg_bn();
    let x = input(2, 40, 40);
    let opts = NoiseTunnelOptions {
        kind: NoiseKind::SmoothGrad,
        samples: 4,
        stdev: 0.1,
        seed: 42,
        batch: 3,
    };
    let run = || {
        captum::noise_tunnel(&x, &Target::PerItem(vec![1, 2]), &opts, |b, t| {
            captum::saliency(&model, b, t, true)
        })
        .unwrap()
    };
    let a = run();
    assert_eq!(a, run());
    assert_eq!(a.shape(), x.shape());
    // Zero noise: SmoothGrad is the plain attribution.
    let still = NoiseTunnelOptions { stdev: 0.0, ..opts };
    let s = captum::noise_tunnel(&x, &Target::PerItem(vec![1, 2]), &still, |b, t| {
        captum::saliency(&model, b, t, true)
    })
    .unwrap();
    let plain = captum::saliency(&model, &x, &Target::PerItem(vec![1, 2]), true).unwrap();
    assert!(s.max_abs_diff(&plain).unwrap() <= 1e-6 * plain.max_abs());
}

#[test]
fn resize_to_a_given_size_and_smooth() {
    let model = vgg_bn();
    let x = input(1, 40, 56);
    let ex = Explainer::new(&model, &x).unwrap();
    let at = |resize, resize_mode, smooth| SaliencyOptions {
        layer: Some("features.20".into()),
        resize,
        resize_mode,
        smooth,
    };
    use sightline::tensor::ResizeMode::{Bilinear, Nearest};
    let raw = ex
        .saliency(
            &Method::GradCam,
            &Target::Class(3),
            &at(Resize::Off, Bilinear, 0.0),
        )
        .unwrap();
    assert_eq!(raw.map.shape(), &[1, 1, 5, 7]);
    assert_eq!(raw.activation.shape(), &[1, 24, 5, 7]);
    let to = Resize::To {
        width: 70,
        height: 50,
    };
    let near = ex
        .saliency(&Method::GradCam, &Target::Class(3), &at(to, Nearest, 0.0))
        .unwrap();
    assert_eq!(near.map.shape(), &[1, 1, 50, 70]);
    // Nearest upsampling by 10 repeats each cell in a 10 x 10 block.
    for (i, &v) in near.map.data().iter().enumerate() {
        let (r, c) = (i / 70, i % 70);
        assert_eq!(v, raw.map.data()[(r / 10) * 7 + c / 10]);
    }
    let smooth = ex
        .saliency(&Method::GradCam, &Target::Class(3), &at(to, Bilinear, 0.05))
        .unwrap();
    assert_eq!(smooth.map.shape(), &[1, 1, 50, 70]);
    // Smoothing keeps the mass (replicate padding) approximately and lowers the peak.
    let bil = ex
        .saliency(&Method::GradCam, &Target::Class(3), &at(to, Bilinear, 0.0))
        .unwrap();
    assert!(smooth.map.max_abs() <= bil.map.max_abs());
    let bad = ex.saliency(
        &Method::GradCam,
        &Target::Class(3),
        &at(
            Resize::To {
                width: 0,
                height: 5,
            },
            Bilinear,
            0.0,
        ),
    );
    assert!(matches!(bad, Err(AttributionError::InvalidOption(_))));
    let bad = ex.saliency(
        &Method::GradCam,
        &Target::Class(3),
        &at(Resize::Off, Bilinear, -1.0),
    );
    assert!(matches!(bad, Err(AttributionError::InvalidOption(_))));
}

#[test]
fn requests_with_their_own_options_equal_separate_calls() {
    let model = resnet_bottleneck();
    let x = input(1, 45, 39);
    let ex = Explainer::new(&model, &x).unwrap();
    let requests = vec![
        (Method::GradCam, SaliencyOptions::at("layer3")),
        (Method::LinearApprox, SaliencyOptions::at("layer2.0")),
        (
            Method::Gradient,
            SaliencyOptions {
                resize: Resize::To {
                    width: 20,
                    height: 10,
                },
                smooth: 0.1,
                ..Default::default()
            },
        ),
        (Method::GradCam, SaliencyOptions::at("layer4")),
    ];
    let targets = [Target::Class(1), Target::Class(7)];
    let all = ex.saliency_requests(&requests, &targets).unwrap();
    for (r, (method, opts)) in requests.iter().enumerate() {
        for (t, target) in targets.iter().enumerate() {
            let alone = ex.saliency(method, target, opts).unwrap();
            assert_eq!(all[r][t].map, alone.map, "request {r} target {t}");
            assert_eq!(all[r][t].layer, alone.layer);
        }
    }
    assert_eq!(all[2][0].map.shape(), &[1, 1, 10, 20]);
}
