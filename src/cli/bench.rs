//! `sightline bench`: times a saliency job end to end (forward, backward,
//! map) after a warm-up, with the model's FLOPs, the effective convolution
//! throughput of the run, matrixmultiply's sgemm throughput measured in the
//! same process, and the peak resident memory.

use super::explain::model::model_forms;
use super::explain::{load_model, method_layers, transforms_weights};
use super::options::{KernelOptions, MethodArgs};
use super::CliError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sightline::budget::{model_pass_bytes, parse_size, product, MemoryBudget};
use sightline::footprint::pass_footprint;
use sightline::imageio::Preprocess;
use sightline_attribution::captum::TunnelledMethod;
use sightline_attribution::perturbation::ExtremalVariant;
use sightline_attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline_autograd::{Retain, Tape, VarId};
use sightline_layers::{Canonizer, MergeBatchNorm, Model};
use sightline_tensor::gemm::{gemm, MatRef};
use sightline_tensor::Tensor;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model exported to ONNX (either PyTorch exporter; external weights
    /// `MODEL.onnx.data` beside it), in place of `--arch` and `--weights`.
    #[arg(long, conflicts_with_all = ["arch", "weights"], required_unless_present = "arch")]
    pub model: Option<PathBuf>,
    /// Architecture: a preset or the path of an architecture JSON file.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights (safetensors); without them, random weights from `--seed`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the random weights and of the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `forward` (the forward pass alone), or saliency methods (any
    /// `explain` takes), comma-separated, timed together from one forward
    /// pass.
    #[arg(long, value_delimiter = ',', default_value = "forward")]
    pub method: Vec<String>,
    /// Parameters of the methods (LRP, RISE, extremal perturbation,
    /// integrated gradients, noise tunnel; `--baseline black` with
    /// ImageNet's mean and std).
    #[command(flatten)]
    pub params: MethodArgs,
    /// The kernel policy the model computes under.
    #[command(flatten)]
    pub kernels: KernelOptions,
    /// Layer probed by the methods that probe one: `L` for all of them, or
    /// `METHOD=L,METHOD=L` per method.
    #[arg(long)]
    pub layer: Option<String>,
    /// Height and width of the input.
    #[arg(long, default_value_t = 224, allow_negative_numbers = true)]
    pub size: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub batch: usize,
    /// Timed iterations (at most 1,000,000).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub iters: usize,
    /// Untimed iterations first (at most 1,000,000).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub warmup: usize,
    /// Side of the square sgemm product measured for comparison.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    pub gemm_size: usize,
    /// Memory the benchmark may plan to use (`4G`, `512M`, bytes)
    /// [default: 3/4 of the machine's available memory].
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Time one call per line read from standard input instead of
    /// `--iters` calls (which it ignores): after the warm-up, print
    /// `{"ready": true}`, then for each line run one call and print
    /// `{"ms": .., "cpu_ms": ..}`, until the input ends; then the report of
    /// those calls. For a driver that
    /// alternates calls with another program (`benches/pytorch/compare.py`),
    /// so that both meet the same state of a noisy host.
    #[arg(long)]
    pub stepped: bool,
}

/// Most timed or warm-up iterations (their times are kept).
pub const MAX_ITERS: usize = 1_000_000;

/// What one iteration runs.
enum Job {
    /// `model.logits`, on the model with its batch norms merged.
    Forward(Model<f32>),
    /// Per form of the model the methods run on (`ModelForm`): one
    /// forward pass keeping what its methods need, then each of them (with
    /// its layer) for each item's best class.
    Methods(Vec<(Model<f32>, Vec<Method>, Vec<String>)>),
}

impl Job {
    fn run(&self, x: &Tensor<f32>) -> Result<(), CliError> {
        let forms = match self {
            Job::Forward(model) => {
                model.logits(x)?;
                return Ok(());
            }
            Job::Methods(forms) => forms,
        };
        // One forward pass per form of the model, as `explain` runs them.
        for (model, methods, layers) in forms {
            let keep: Vec<&str> = layers
                .iter()
                .map(String::as_str)
                .filter(|l| !l.is_empty())
                .collect();
            let ex = Explainer::for_methods(model, x, methods, &keep)?;
            let best = Target::top_k(ex.logits(), 1)?
                .into_iter()
                .map(|v| v[0])
                .collect();
            let target = Target::PerItem(best);
            let requests: Vec<(Method, SaliencyOptions)> = methods
                .iter()
                .zip(layers)
                .map(|(m, l)| {
                    let opts = SaliencyOptions {
                        layer: Some(l.clone()),
                        resize: Resize::Input,
                        ..SaliencyOptions::default()
                    };
                    (m.clone(), opts)
                })
                .collect();
            ex.saliency_requests(&requests, std::slice::from_ref(&target))?;
        }
        Ok(())
    }
}

/// Multiply-adds of the convolution and linear layers of one forward pass,
/// with the variable each one reads.
struct ProductCount {
    /// (input variable, multiply-adds) per conv or linear node, in recording order.
    nodes: Vec<(VarId, u64)>,
    /// Variable id of the input and of every layer output.
    input: VarId,
    tape: Tape<f32>,
}

impl ProductCount {
    /// Records one forward pass of `x` and counts its products exactly from
    /// the recorded shapes: a conv output element costs `C_in / groups * kh *
    /// kw` multiply-adds (the weight's size over its output channels), a
    /// linear output element `in_features`.
    fn record(model: &Model<f32>, x: &Tensor<f32>) -> Result<Self, CliError> {
        // On the model with its batch norms merged, as the timed
        // gradient-style jobs run it: the same convolutions.
        let merged = MergeBatchNorm::exact().apply(model)?;
        let model = &merged;
        let mut tape = Tape::new(Retain::Minimal).with_kernels(model.kernels());
        let input = tape.input(x.clone());
        model.forward(&mut tape, &input)?;
        let mut nodes = Vec::new();
        for node in tape.nodes() {
            let out = tape.var_shape(node.output)?;
            let macs = node.op.multiply_adds(&node.input_shapes, out);
            if macs == 0 {
                continue;
            }
            let x_id = node.inputs.first().copied().unwrap_or(0);
            nodes.push((x_id, macs));
        }
        Ok(Self {
            nodes,
            input: input.id(),
            tape,
        })
    }

    /// Multiply-adds of the forward pass.
    fn forward(&self) -> u64 {
        self.nodes.iter().map(|n| n.1).sum()
    }

    /// The variable of a probe (`""` is the input).
    fn var(&self, layer: &str) -> VarId {
        if layer.is_empty() {
            return self.input;
        }
        self.tape
            .layer_output(layer)
            .map(|o| o.id)
            .unwrap_or(self.input)
    }

    /// Multiply-adds of the conv and linear nodes reading variables in `lo..hi`.
    fn between(&self, lo: VarId, hi: VarId) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.0 >= lo && n.0 < hi)
            .map(|n| n.1)
            .sum()
    }

    /// Multiply-adds of the backward passes of `method` probing `layer`: each
    /// conv or linear node between the probe and the logits computes its input
    /// gradient (as many products as its forward); excitation rules also
    /// recompute `f(x; W+)` (twice as many); the contrastive variant runs two
    /// passes down to its contrast layer and one from there to the probe;
    /// guided Grad-CAM a pass to its layer and one to the input; integrated
    /// gradients a forward and a backward pass per path point; the noise
    /// tunnel its method's passes per sample.
    fn backward(&self, model: &Model<f32>, method: &Method, layer: &str) -> u64 {
        let probe = self.var(layer);
        let all = VarId::MAX;
        let whole = self.between(self.input, all);
        let ig = |steps: usize| 2 * steps as u64 * whole;
        match method {
            Method::GuidedGradCam => self.between(probe, all) + whole,
            Method::IntegratedGradients(p) => ig(p.n_steps),
            Method::NoiseTunnel(p) => {
                let per_sample = match &p.method {
                    TunnelledMethod::IntegratedGradients(ig_params) => ig(ig_params.n_steps),
                    _ => 2 * whole,
                };
                p.samples as u64 * per_sample
            }
            Method::ExcitationBackprop => 2 * self.between(probe, all),
            Method::ContrastiveExcitationBackprop { contrast_layer, .. } => {
                let defaults = model.default_layers();
                let contrast = self.var(contrast_layer.as_deref().unwrap_or(&defaults.contrast));
                2 * (2 * self.between(contrast, all) + self.between(probe, contrast))
            }
            // A forward pass per mask, no backward pass.
            Method::Rise(p) => p.num_masks as u64 * self.between(self.input, all),
            // A forward and a backward pass per step, on two images for dual.
            Method::ExtremalPerturbation(p) => {
                let images = if p.variant == ExtremalVariant::Dual {
                    2
                } else {
                    1
                };
                3 * images * p.max_iter as u64 * self.between(self.input, all)
            }
            _ => self.between(probe, all),
        }
    }
}

/// Peak resident memory of this process in MiB (`VmHWM`), where `/proc` has it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time this process has used so far (user and system, all threads),
/// in ms, where `getrusage` has it. Beside the wall time of a call it shows
/// how much of it the threads ran (rayon's idle workers spin for a while
/// before they sleep, which counts too).
#[cfg(unix)]
pub fn cpu_ms() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given when it returns 0.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Some(ms(usage.ru_utime) + ms(usage.ru_stime))
}

/// CPU time of this process: unknown off Unix.
#[cfg(not(unix))]
pub fn cpu_ms() -> Option<f64> {
    None
}

/// GFLOP/s of an `n x n x n` sgemm (best of 3 after a warm-up): through the
/// tensor crate's `gemm` (matrixmultiply's kernel in rayon column blocks, as
/// the convolutions run it), and one plain `matrixmultiply::sgemm` call on
/// this thread.
pub fn sgemm_gflops(n: usize) -> Result<(f64, f64), CliError> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let a: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut c = vec![0.0f32; n * n];
    let flop = 2.0 * (n as f64).powi(3);
    let best = |f: &mut dyn FnMut() -> Result<(), CliError>| -> Result<f64, CliError> {
        f()?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(flop / best / 1e9)
    };
    let parallel = best(&mut || {
        gemm(
            1.0,
            MatRef::row_major(&a, n, n),
            MatRef::row_major(&b, n, n),
            0.0,
            &mut c,
        )?;
        Ok(())
    })?;
    let single = best(&mut || {
        // SAFETY: a, b and c are distinct n x n row-major buffers.
        unsafe {
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                a.as_ptr(),
                n as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        Ok(())
    })?;
    Ok((parallel, single))
}

/// When the timed calls run: `--iters` of them back to back, or (with
/// `--stepped`) one per line of standard input, each announced on standard
/// output.
struct Steps {
    stdin: Option<std::io::StdinLock<'static>>,
}

impl Steps {
    /// Prints the ready line first when stepped.
    fn new(stepped: bool) -> Result<Self, CliError> {
        if stepped {
            print_line(&json!({ "ready": true }))?;
        }
        Ok(Steps {
            stdin: stepped.then(|| std::io::stdin().lock()),
        })
    }

    /// Whether to run another call, `done` having run: while fewer than
    /// `iters`, or (stepped) when a line arrives, not when the input ends.
    fn next_call(&mut self, iters: usize, done: usize) -> Result<bool, CliError> {
        let Some(stdin) = &mut self.stdin else {
            return Ok(done < iters);
        };
        let mut line = String::new();
        let read = std::io::BufRead::read_line(stdin, &mut line)
            .map_err(|e| CliError::from(format!("--stepped: reading standard input: {e}")))?;
        Ok(read > 0)
    }

    /// Prints one call's time when stepped.
    fn report(&self, ms: f64, cpu_ms: Option<f64>) -> Result<(), CliError> {
        if self.stdin.is_some() {
            print_line(&json!({ "ms": ms, "cpu_ms": cpu_ms }))?;
        }
        Ok(())
    }
}

/// One JSON line on standard output, flushed (the driver waits for it).
fn print_line(v: &serde_json::Value) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing standard output: {e}").into())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.size == 0 || args.batch == 0 || args.gemm_size == 0 {
        return Err("--size, --batch and --gemm-size must be positive".into());
    }
    if args.iters == 0 && !args.stepped {
        return Err("--iters must be positive".into());
    }
    if args.iters > MAX_ITERS || args.warmup > MAX_ITERS {
        return Err(format!("--iters and --warmup must be at most {MAX_ITERS}").into());
    }
    let budget = MemoryBudget::from_option(args.max_memory);
    let n = args.gemm_size as u64;
    // Three n x n f32 matrices.
    budget.check(
        format!("--gemm-size {} (three {n} x {n} matrices)", args.gemm_size),
        product(12, &[n, n]),
    )?;
    let names: Vec<String> = args.method.iter().map(|m| m.trim().to_string()).collect();
    let forward_only = names.iter().any(|n| n == "forward");
    if forward_only && names.len() > 1 {
        return Err(
            "`forward` times the forward pass alone; do not combine it with methods".into(),
        );
    }
    let model = load_model(
        args.model.as_deref(),
        args.arch.as_deref(),
        args.weights.as_deref(),
        args.seed,
        &budget,
    )?
    .with_kernels(args.kernels.policy());
    let (job, methods, layers) = if forward_only {
        let merged = MergeBatchNorm::exact().apply(&model)?;
        (Job::Forward(merged), Vec::new(), Vec::new())
    } else {
        let methods = args.params.methods(&names, &Preprocess::default())?;
        let layers = method_layers(&model, &methods, args.layer.as_deref())?;
        let forms = model_forms(&model, &methods, &layers)?
            .into_iter()
            .map(|(form, idx)| {
                (
                    form,
                    idx.iter().map(|&i| methods[i].clone()).collect(),
                    idx.iter().map(|&i| layers[i].clone()).collect(),
                )
            })
            .collect();
        (Job::Methods(forms), methods, layers)
    };
    let shape = [args.batch, model.channels(), args.size, args.size];
    budget.check(
        format!(
            "--batch {} --size {} (one pass of {} on {shape:?})",
            args.batch,
            args.size,
            model.describe()
        ),
        model_pass_bytes(&model, &shape, transforms_weights(&methods)),
    )?;
    let footprint_mib = pass_footprint(&model, &shape, rayon::current_num_threads())
        .ok()
        .map(|f| f.total() as f64 / f64::from(1u32 << 20));
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let n_in = args.batch * 3 * args.size * args.size;
    let data: Vec<f32> = (0..n_in).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let x = Tensor::from_vec([args.batch, 3, args.size, args.size], data)?;
    let one = x.select0(0)?.reshape([1, 3, args.size, args.size])?;
    let count = ProductCount::record(&model, &one)?;
    let forward_macs = count.forward();
    let job_macs = forward_macs
        + methods
            .iter()
            .zip(&layers)
            .map(|(m, l)| count.backward(&model, m, l))
            .sum::<u64>();
    drop(count);

    for _ in 0..args.warmup {
        job.run(&x)?;
    }
    let mut times = Vec::with_capacity(args.iters);
    let mut cpu_times = Vec::with_capacity(args.iters);
    let mut steps = Steps::new(args.stepped)?;
    while steps.next_call(args.iters, times.len())? {
        let (t, cpu) = (Instant::now(), cpu_ms());
        job.run(&x)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        let cpu = match (cpu, cpu_ms()) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        cpu_times.extend(cpu);
        steps.report(ms, cpu)?;
    }
    if times.is_empty() {
        return Err("--stepped: the input ended before the first call".into());
    }
    cpu_times.sort_by(f64::total_cmp);
    let cpu_median = (!cpu_times.is_empty()).then(|| median(&cpu_times));
    let peak = peak_rss_mib();
    let (sgemm, sgemm_1t) = sgemm_gflops(args.gemm_size)?;

    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let ms_median = median(&sorted);
    let ms_min = sorted[0];
    let ms_mean = times.iter().sum::<f64>() / times.len() as f64;
    let images_per_s = args.batch as f64 / (ms_median / 1e3);
    let gflops = 2.0 * forward_macs as f64 / 1e9;
    let conv_gflops = 2.0 * job_macs as f64 * args.batch as f64 / (ms_median / 1e3) / 1e9;
    let method_names: Vec<&str> = if forward_only {
        vec!["forward"]
    } else {
        methods.iter().map(Method::name).collect()
    };
    let report = json!({
        "arch": model.describe(),
        "methods": method_names,
        "layers": layers,
        "size": args.size,
        "batch": args.batch,
        "iters": times.len(),
        "warmup": args.warmup,
        "threads": rayon::current_num_threads(),
        "ms_median": ms_median,
        "ms_min": ms_min,
        "ms_mean": ms_mean,
        "cpu_ms_median": cpu_median,
        "images_per_s": images_per_s,
        "gflops": gflops,
        "gmacs": forward_macs as f64 / 1e9,
        "job_gflop": 2.0 * job_macs as f64 * args.batch as f64 / 1e9,
        "conv_gflops": conv_gflops,
        "sgemm_gflops": sgemm,
        "sgemm_1t_gflops": sgemm_1t,
        "gemm_size": args.gemm_size,
        "peak_rss_mib": peak,
        "footprint_mib": footprint_mib,
    });
    let text = if args.json {
        format!("{report}\n")
    } else {
        text_report(&report)
    };
    // A closed pipe (`| head`) ends the report quietly.
    sightline::out!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The report as aligned text lines.
fn text_report(r: &serde_json::Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let u = |k: &str| r[k].as_u64().unwrap_or(0);
    let methods: Vec<&str> = r["methods"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str()).collect())
        .unwrap_or_default();
    let memory = match r["peak_rss_mib"].as_f64() {
        Some(p) => format!("peak RSS {p:.1} MiB"),
        None => "peak RSS unknown (no /proc/self/status)".to_string(),
    };
    format!(
        "{arch} {methods} on {batch} x 3 x {size} x {size}, {threads} threads, {iters} iterations after {warmup} warm-up\n\
         time     median {med:.1} ms, min {min:.1} ms, mean {mean:.1} ms; CPU time median {cpu}\n\
         speed    {ips:.2} images/s\n\
         model    {gflops:.2} GFLOP per image forward ({gmacs:.2} G multiply-adds, conv + linear)\n\
         compute  conv {conv:.1} GFLOP/s effective | sgemm {sgemm:.1} GFLOP/s ({n}^3, {threads} threads), {sgemm1:.1} GFLOP/s (1 thread)\n\
         memory   {memory}\n",
        arch = r["arch"].as_str().unwrap_or(""),
        methods = methods.join(","),
        batch = u("batch"),
        size = u("size"),
        threads = u("threads"),
        iters = u("iters"),
        warmup = u("warmup"),
        med = f("ms_median"),
        min = f("ms_min"),
        mean = f("ms_mean"),
        cpu = r["cpu_ms_median"]
            .as_f64()
            .map_or("unknown".to_string(), |c| format!("{c:.1} ms (all threads)")),
        ips = f("images_per_s"),
        gflops = f("gflops"),
        gmacs = f("gmacs"),
        conv = f("conv_gflops"),
        sgemm = f("sgemm_gflops"),
        sgemm1 = f("sgemm_1t_gflops"),
        n = u("gemm_size"),
    )
}
