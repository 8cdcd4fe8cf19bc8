#!/usr/bin/env python3
"""Times the same saliency jobs in PyTorch + TorchRay and in sightline, their
calls interleaved one by one on the same machine, and prints both and their
ratio (PyTorch / sightline as a speedup; with --table, sightline / PyTorch
against issue 7's targets).

    python3 benches/pytorch/compare.py                      # VGG16 and ResNet-50, guided backprop
    python3 benches/pytorch/compare.py --arch vgg16 --method gradient,grad_cam --iters 8
    python3 benches/pytorch/compare.py --python ~/torch-venv/bin/python
    python3 benches/pytorch/compare.py --table --python ~/torch-venv/bin/python   # issue 7's table
    python3 benches/pytorch/compare.py --onnx-table --python ~/torch-venv/bin/python  # ONNX families
    python3 benches/pytorch/compare.py --lrp-table --python ~/torch-venv/bin/python   # LRP vs Zennit
    python3 benches/pytorch/compare.py --rise-table --rise-masks 256 --iters 2 --python ...  # RISE
    python3 benches/pytorch/compare.py --onnx --arch mobilenet_v2 --method grad_cam --layer features

PyTorch is optional: the PyTorch side runs in the interpreter given by
`--python` (default: this one) and is skipped, with a note, when that
interpreter has no torch/torchvision/torchray. Nothing here is a test
dependency. A venv for it: `python -m venv v && v/bin/pip install torch
torchvision torchray captum` (several GB).

How a job is timed: each side is one process that loads its model, makes
one untimed warm-up call and says it is ready (the sides start one after
the other, so their warm-ups never overlap). Then the driver asks for one
call at a time, alternating the sides (A B, B A, A B, ...), with a pause of
`--gap` seconds after each call so that the other side's idle threads
(OpenMP and rayon workers spin for a while before they sleep) have gone
quiet (`--gap`, default 0.25 s). Only one side ever runs at a time, and the
two calls of a pair are a second or so apart: a host whose speed drifts by
tens of percent over minutes slows both alike, and the ratio of each pair
is taken before the median. `--iters` is the number of calls per side
(pairs; even by default, so that each side goes first as often).

The sightline side is `sightline bench --arch A --method M --size S
--batch B --stepped --json` (the binary from `--sightline`, default
target/release/sightline, built with `cargo build --release` if missing).
Both sides use random weights and a random input, batch 1 and 224 x 224 by
default; in the tables (--table, --lrp-table, --onnx-table) sightline reads
the PyTorch side's random weights from a file, as a user runs it (the
PyTorch side keeps them in memory, its leanest case): safetensors saved
once to target/onnx-bench/ARCH.safetensors for the presets, the ONNX export
below for the families; and the same number of threads (`--threads`, default 2:
RAYON_NUM_THREADS for sightline, torch.set_num_threads for PyTorch).

The PyTorch job is the one of the project's reference timings
(torch_bench.py): torchvision model, eval mode, TorchRay's function for the
method, target class 1, a warm-up call, then the timed calls.

With `--onnx` (and in `--onnx-table`), sightline runs the same torchvision
model exported to ONNX (`bench --model`), as a user who brings their own
network does: the PyTorch interpreter exports it once (torchscript
exporter, opset 17, batch norm kept, the PyTorch side's random weights)
to target/onnx-bench/ARCH.onnx, so sightline's peak memory includes
reading the weights from that file.
"""
import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The PyTorch job, run as `python -c TORCH_JOB ARGS_JSON`, with the protocol of
# `sightline bench --stepped` (see `Side`).
TORCH_JOB = r'''
import json, resource, sys, time
a = json.loads(sys.argv[1])
import torch, torchvision
if a["threads"]:
    torch.set_num_threads(a["threads"])
torch.manual_seed(0)
model = getattr(torchvision.models, a["arch"])(weights=None).eval()
x = torch.randn(a["batch"], 3, a["size"], a["size"])
if a.get("export"):
    torch.onnx.export(model, x[:1], a["export"], dynamo=False, opset_version=17,
                      do_constant_folding=False)
    print(json.dumps({"exported": a["export"]}), flush=True)
    raise SystemExit(0)
if a.get("save_weights"):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a["save_weights"])
    print(json.dumps({"saved": a["save_weights"]}), flush=True)
    raise SystemExit(0)
target = 1
method = a["method"]

def run():
    if method == "forward":
        with torch.no_grad():
            model(x)
    elif method == "gradient":
        from torchray.attribution.gradient import gradient
        gradient(model, x.clone().requires_grad_(True), target)
    elif method == "guided_backprop":
        from torchray.attribution.guided_backprop import guided_backprop
        guided_backprop(model, x.clone().requires_grad_(True), target)
    elif method == "deconvnet":
        from torchray.attribution.deconvnet import deconvnet
        deconvnet(model, x.clone().requires_grad_(True), target)
    elif method == "grad_cam":
        from torchray.attribution.grad_cam import grad_cam
        layer = a.get("layer") or ("features.29" if a["arch"].startswith("vgg") else "layer4")
        grad_cam(model, x, target, saliency_layer=layer)
    elif method == "lrp.epsilon_plus_flat":
        # Zennit's composite with the canonizer of the family, its Gradient
        # attributor, one-hot output relevance (the LRP fixtures' setup).
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonPlusFlat
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer
        canon = ResNetCanonizer() if a["arch"].startswith("resnet") else VGGCanonizer()
        with Gradient(model=model, composite=EpsilonPlusFlat(canonizers=[canon])) as attr:
            attr(x.clone().requires_grad_(True), torch.eye(1000)[[target] * x.shape[0]])
    elif method == "rise":
        # TorchRay's RISE (all classes, as it computes them), its default
        # batch of 32 masked copies per forward pass.
        from torchray.attribution.rise import rise
        rise(model, x, num_masks=a["rise_masks"], batch_size=32)
    elif method == "extremal_perturbation":
        # TorchRay's defaults at 224 x 224 (area 0.1, step 7, sigma 21,
        # jitter), `ep_iters` steps.
        from torchray.attribution.extremal_perturbation import extremal_perturbation
        extremal_perturbation(model, x, target, areas=[0.1], max_iter=a["ep_iters"])
    elif method == "captum_guided_backprop":
        from captum.attr import GuidedBackprop
        GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=target)
    else:
        raise SystemExit("unknown method " + method)

run()  # warm-up
print(json.dumps({"ready": True}), flush=True)
ts = []
while sys.stdin.readline():
    t, c = time.perf_counter(), time.process_time()
    run()
    ts.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"ms": ts[-1], "cpu_ms": (time.process_time() - c) * 1000}), flush=True)
print(json.dumps({
    "calls": len(ts),
    "threads": torch.get_num_threads(),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}), flush=True)
'''

GRAD_CAM_LAYER = {"vgg": "features.29", "resnet": "layer4"}

SEVEN = ("gradient,deconvnet,guided_backprop,grad_cam,linear_approx,"
         "excitation_backprop,contrastive_excitation_backprop")

# The jobs of issue 7's table: (label, arch, sightline methods, PyTorch method,
# batch, target ratio sightline / PyTorch). The seven-method job is timed
# against PyTorch's time for one method (guided backprop), batch 8 against
# batch 1 per image (its target row compares sightline with itself).
TABLE = [
    ("VGG16 guided backprop", "vgg16", "guided_backprop", "guided_backprop", 1, 0.5),
    ("ResNet-50 guided backprop", "resnet50", "guided_backprop", "guided_backprop", 1, 0.6),
    ("VGG16 Grad-CAM features.29", "vgg16", "grad_cam", "grad_cam", 1, 0.6),
    ("VGG16 all seven, one forward", "vgg16", SEVEN, "guided_backprop", 1, 1.5),
    ("VGG16 guided backprop batch 8", "vgg16", "guided_backprop", "guided_backprop", 8, None),
]


# Issue 20's jobs: LRP with Zennit's EpsilonPlusFlat (and its VGG / ResNet
# canonizer) against sightline's `lrp.epsilon_plus_flat`. Targets: time and
# peak RSS <= 0.5 of Zennit's.
LRP_TABLE = [
    ("VGG16 LRP epsilon_plus_flat", "vgg16", "lrp.epsilon_plus_flat",
     "lrp.epsilon_plus_flat", 1, 0.5),
    ("ResNet-50 LRP epsilon_plus_flat", "resnet50", "lrp.epsilon_plus_flat",
     "lrp.epsilon_plus_flat", 1, 0.5),
]


# Issue 19's jobs on ONNX exports: (label, arch, method, Grad-CAM layer, time
# target). Peak RSS target: 0.5. DenseNet's Grad-CAM probes
# `features.denseblock4`: TorchRay fails on `features`, whose output
# DenseNet's forward passes to an in-place ReLU.
ONNX_TABLE = [
    ("MobileNetV2 guided backprop", "mobilenet_v2", "guided_backprop", None, 0.6),
    ("MobileNetV2 Grad-CAM features", "mobilenet_v2", "grad_cam", "features", 0.6),
    ("DenseNet-121 guided backprop", "densenet121", "guided_backprop", None, 0.6),
    ("DenseNet-121 Grad-CAM denseblock4", "densenet121", "grad_cam", "features.denseblock4", 0.6),
    ("EfficientNet-B0 guided backprop", "efficientnet_b0", "guided_backprop", None, 0.6),
    ("EfficientNet-B0 Grad-CAM features", "efficientnet_b0", "grad_cam", "features", 0.6),
]
ONNX_RSS_TARGET = 0.5

# Issue 21's jobs: TorchRay's `rise` (every class) against `bench --method
# rise` (the target class), both 32 masked copies per forward pass,
# `--rise-masks` masks (TorchRay's default is 8,000); TorchRay's
# `extremal_perturbation` (area 0.1, its 224-pixel defaults) against `bench
# --method extremal_perturbation`, `--ep-iters` steps (default 800). Both
# times are linear in the count, so fewer give the same ratio sooner.
# Target: time <= 0.5.
RISE_TABLE = [
    ("ResNet-50 RISE", "resnet50", "rise", 0.5),
    ("VGG16 RISE", "vgg16", "rise", 0.5),
    ("ResNet-50 extremal", "resnet50", "extremal_perturbation", 0.5),
    ("VGG16 extremal", "vgg16", "extremal_perturbation", 0.5),
]


def run_rise_table(a, exe):
    """Issue 21's RISE jobs, interleaved as in `run_table`, sightline on the
    PyTorch side's weights read from a file."""
    rows = []
    for label, arch, method, target in RISE_TABLE:
        weights = weights_export(a.python, arch)
        counts = (dict(rise_masks=a.rise_masks) if method == "rise"
                  else dict(ep_iters=a.ep_iters))
        makers = {
            "pytorch": functools.partial(torch_side, a.python, arch, method, a.size, 1,
                                         a.threads, **counts),
            "sightline": functools.partial(sightline_side, exe, arch, method, a.size, 1,
                                           a.threads, weights=weights, **counts),
        }
        sides = interleave(makers, a.iters, a.gap)
        pt, sl = sides["pytorch"], sides["sightline"]
        ratio, spread = summary(pair_ratios(sl.ms(), pt.ms()))
        rows.append((label, pt, sl, ratio, spread, target))
    print(f"{'job':20} {'n':>6} {'PyTorch ms':>11} {'sightline ms':>13} {'ratio':>6} "
          f"{'range':>11} {'target':>7} {'PyTorch MiB':>12} {'sightline MiB':>14}")
    for label, pt, sl, ratio, spread, target in rows:
        t, s = side_record(pt), side_record(sl)
        spread = "-" if spread is None else "{}-{}".format(*spread)
        n = a.rise_masks if "RISE" in label else a.ep_iters
        print(f"{label:20} {n:>6} {fmt(t['ms_median']):>11} {fmt(s['ms_median']):>13} "
              f"{'-' if ratio is None else ratio:>6} {spread:>11} {'<= ' + str(target):>7} "
              f"{fmt(t['peak_rss_mib']):>12} {fmt(s['peak_rss_mib']):>14}")
        for side in (t, s):
            if side.get("error"):
                print(f"{'':20} {side['error']}")


def onnx_export(python, arch):
    """target/onnx-bench/ARCH.onnx, exported by `python` (with torch) if missing."""
    path = ROOT / "target" / "onnx-bench" / f"{arch}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        args = json.dumps(dict(arch=arch, method="forward", size=224, batch=1, threads=0,
                               export=str(path)))
        subprocess.run([python, "-c", TORCH_JOB, args], check=True, stdout=subprocess.DEVNULL)
    return path


def weights_export(python, arch):
    """target/onnx-bench/ARCH.safetensors: the PyTorch side's random weights
    (its seed 0), saved by `python` (with torch and safetensors) if missing,
    which sightline's side of the preset tables loads, as a user does."""
    path = ROOT / "target" / "onnx-bench" / f"{arch}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        args = json.dumps(dict(arch=arch, method="forward", size=224, batch=1, threads=0,
                               save_weights=str(path)))
        subprocess.run([python, "-c", TORCH_JOB, args], check=True, stdout=subprocess.DEVNULL)
    return path


def torch_available(python):
    probe = "import torch, torchvision, torchray"
    r = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip().splitlines()[-1:] if r.stderr else []


class Side:
    """One side of a job: a process that warms up and prints a ready line,
    then makes one call per line it reads and answers each with a JSON line
    {"ms", "cpu_ms"}; when its input ends, it prints a summary JSON line
    (with its peak RSS) and exits. Lines that are not such JSON objects (a
    library's warnings) are passed to stderr, never taken for an answer."""

    def __init__(self, name, cmd, env=None):
        self.name, self.calls, self.summary, self.error = name, [], {}, None
        self.stderr = tempfile.TemporaryFile(mode="w+")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr, text=True, bufsize=1, env=env)
        except OSError as e:
            self.proc, self.error = None, f"{name} did not start: {e}"
            return
        self._expect(lambda r: r.get("ready"))

    def _expect(self, wanted):
        """The next JSON object the process prints for which `wanted` holds;
        None, with `error` set, when its output ends first."""
        while True:
            text = self.proc.stdout.readline()
            if not text:
                self.proc.wait()
                self.stderr.seek(0)
                last = (self.stderr.read().strip().splitlines() or ["no message"])[-1]
                self.error = f"{self.name} exited ({self.proc.returncode}): {last}"
                return None
            try:
                r = json.loads(text)
            except json.JSONDecodeError:
                r = None
            if isinstance(r, dict) and wanted(r):
                return r
            sys.stderr.write(f"{self.name}: {text}")

    def call(self):
        """One timed call, recorded when it answers."""
        if self.error:
            return
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it ended: _expect says why
        answer = self._expect(lambda r: "ms" in r)
        if answer is not None:
            self.calls.append(answer)

    def finish(self):
        """Ends the input, reads the summary, waits for the process."""
        if self.proc is None:
            return self
        if self.error is None:
            self.proc.stdin.close()
            self.summary = self._expect(lambda r: "peak_rss_mib" in r) or {}
            self.proc.wait()
            if self.summary and self.proc.returncode != 0:
                self.error = f"{self.name} exited ({self.proc.returncode})"
        else:
            self.proc.wait()
        return self

    @classmethod
    def not_started(cls, name, why):
        """A side the job did not start, because another failed (`why`)."""
        side = cls.__new__(cls)
        side.name, side.calls, side.summary, side.proc = name, [], {}, None
        side.error = f"not started ({why})"
        return side

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def ms(self):
        return [c["ms"] for c in self.calls]

    def cpu_ms(self):
        return [c["cpu_ms"] for c in self.calls if c.get("cpu_ms") is not None]


def interleave(makers, calls, gap):
    """Starts the sides (`makers`: name -> function making the side) one
    after the other, each warming up alone, then makes `calls` calls of
    each, alternating their order from one round to the next, pausing `gap`
    seconds after every call; returns the finished sides by name. When a
    side fails to start, the job stops there: the sides not started yet get
    an error saying so. A side that fails later leaves the others to go on."""
    sides = {}
    try:
        for name, make in makers.items():
            side = sides[name] = make()
            if side.error:
                for rest in makers:
                    sides.setdefault(rest, Side.not_started(rest, side.error))
                return {n: s.finish() for n, s in sides.items()}
        order = list(sides.values())
        for k in range(calls):
            for side in (order if k % 2 == 0 else order[::-1]):
                side.call()
                time.sleep(gap)
        return {n: s.finish() for n, s in sides.items()}
    finally:
        for side in sides.values():  # after an exception (or Ctrl-C): no process left
            side.kill()


def torch_side(python, arch, method, size, batch, threads, layer=None, rise_masks=None,
               ep_iters=None):
    args = json.dumps(dict(arch=arch, method=method, size=size, batch=batch, threads=threads,
                           layer=layer, rise_masks=rise_masks, ep_iters=ep_iters))
    return Side("PyTorch", [python, "-c", TORCH_JOB, args])


def sightline_binary(path):
    if path:
        return Path(path)
    exe = ROOT / "target" / "release" / "sightline"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return exe


def sightline_side(exe, arch, method, size, batch, threads, layer=None, onnx=None,
                   weights=None, rise_masks=None, ep_iters=None):
    model = ["--model", str(onnx)] if onnx else ["--arch", arch]
    if weights:
        model += ["--weights", str(weights)]
    cmd = [str(exe), "bench", *model, "--method", method, "--size", str(size),
           "--batch", str(batch), "--stepped", "--json"]
    if rise_masks:
        cmd += ["--rise-masks", str(rise_masks)]
    if ep_iters:
        cmd += ["--ep-iters", str(ep_iters)]
    if layer:
        cmd += ["--layer", layer]
    elif method == "grad_cam" and not onnx:
        for prefix, layer in GRAD_CAM_LAYER.items():
            if arch.startswith(prefix):
                cmd += ["--layer", layer]
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    return Side("sightline", cmd, env)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def pair_ratios(num, den, scale=1.0):
    """Ratios of the calls made in the same round (num[k] * scale / den[k])."""
    return [n * scale / d for n, d in zip(num, den) if n and d]


def summary(ratios):
    """Median and range of ratios, rounded."""
    if not ratios:
        return None, None
    return round(median(ratios), 2), [round(min(ratios), 2), round(max(ratios), 2)]


def fmt(v, unit=""):
    return "-" if v is None else f"{v:.1f}{unit}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vgg16,resnet50", help="comma-separated torchvision names")
    p.add_argument("--method", default="guided_backprop", help="comma-separated methods")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=None,
                   help="timed calls per side, i.e. pairs (default 10; --table: 16); even, "
                        "so that each side goes first equally often")
    p.add_argument("--gap", type=float, default=0.25,
                   help="seconds of pause after each call (default 0.25)")
    p.add_argument("--threads", type=int, default=2, help="0: each library's default")
    p.add_argument("--python", default=sys.executable, help="interpreter with torch + torchray")
    p.add_argument("--sightline", help="sightline binary (default: target/release/sightline)")
    p.add_argument("--json", action="store_true", help="print one JSON object per job")
    p.add_argument("--table", action="store_true",
                   help="run the jobs of issue 7's table instead of --arch x --method")
    p.add_argument("--onnx", action="store_true",
                   help="sightline runs each torchvision model exported to ONNX (bench --model)")
    p.add_argument("--layer", help="layer probed by grad_cam on both sides")
    p.add_argument("--onnx-table", action="store_true",
                   help="run issue 19's jobs (ONNX exports of three families)")
    p.add_argument("--lrp-table", action="store_true",
                   help="run issue 20's jobs (LRP EpsilonPlusFlat against Zennit)")
    p.add_argument("--rise-table", action="store_true",
                   help="run issue 21's jobs (RISE and extremal perturbation against TorchRay)")
    p.add_argument("--ep-iters", type=int, default=800,
                   help="steps per extremal perturbation call (default TorchRay's 800)")
    p.add_argument("--rise-masks", type=int, default=8000,
                   help="masks per RISE call (default TorchRay's 8000)")
    a = p.parse_args()
    if a.iters is None:
        a.iters = 16 if (a.table or a.onnx_table) else 10
    if a.iters < 1 or a.gap < 0:
        p.error("--iters must be positive and --gap not negative")

    have_torch, why = torch_available(a.python)
    if not have_torch:
        print(f"note: no PyTorch/TorchRay in {a.python} ({' '.join(why)}); "
              "timing sightline only", file=sys.stderr)
    exe = sightline_binary(a.sightline)
    if a.table:
        return run_table(a, have_torch, exe)
    if a.lrp_table:
        return run_table(a, have_torch, exe, LRP_TABLE)
    if a.rise_table:
        if not have_torch:
            p.error("--rise-table needs PyTorch (--python)")
        return run_rise_table(a, exe)
    if a.onnx_table:
        if not have_torch:
            p.error("--onnx-table needs PyTorch (--python) to export the models")
        return run_onnx_table(a, exe)
    if a.onnx and not have_torch:
        p.error("--onnx needs PyTorch (--python) to export the models")

    rows = []
    for arch in a.arch.split(","):
        for method in a.method.split(","):
            makers = {}
            onnx = onnx_export(a.python, arch) if a.onnx else None
            if have_torch:
                makers["pytorch"] = functools.partial(torch_side, a.python, arch, method,
                                                      a.size, a.batch, a.threads, a.layer)
            makers["sightline"] = functools.partial(sightline_side, exe, arch, method, a.size,
                                                    a.batch, a.threads, a.layer, onnx)
            sides = interleave(makers, a.iters, a.gap)
            sl, pt = sides["sightline"], sides.get("pytorch")
            ratios = pair_ratios(pt.ms(), sl.ms()) if pt else []
            ratio, spread = summary(ratios)
            row = dict(arch=arch, method=method, size=a.size, batch=a.batch,
                       threads=a.threads, pairs=len(ratios),
                       pytorch=None if pt is None else side_record(pt),
                       sightline=side_record(sl), speedup=ratio, speedup_range=spread)
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)

    if a.json:
        return
    print(f"{'arch':10} {'method':18} {'PyTorch ms':>11} {'sightline ms':>13} "
          f"{'speedup':>8} {'range':>11} {'PyTorch MiB':>12} {'sightline MiB':>14}")
    for r in rows:
        t, s = r["pytorch"] or {}, r["sightline"]
        spread = "-" if r["speedup_range"] is None else "{}-{}".format(*r["speedup_range"])
        print(f"{r['arch']:10} {r['method']:18} {fmt(t.get('ms_median')):>11} "
              f"{fmt(s.get('ms_median')):>13} "
              f"{('-' if r['speedup'] is None else str(r['speedup']) + 'x'):>8} {spread:>11} "
              f"{fmt(t.get('peak_rss_mib')):>12} {fmt(s.get('peak_rss_mib')):>14}")
        for side in (t, s):
            if side.get("error"):
                print(f"{'':29} {side['error']}")
        if r["pytorch"] and 0 < r["pairs"] < a.iters:
            print(f"{'':29} (speedup of {r['pairs']} pairs of {a.iters})")


def side_record(side):
    """What the JSON output keeps of a side: its calls, medians, peak RSS."""
    return dict(error=side.error, ms=[round(m, 1) for m in side.ms()],
                ms_median=median(side.ms()), cpu_ms_median=median(side.cpu_ms()),
                peak_rss_mib=side.summary.get("peak_rss_mib"))


def run_onnx_table(a, exe):
    """Issue 19's jobs: the torchvision families exported to ONNX, batch 1,
    time and peak RSS ratios (sightline / PyTorch + TorchRay) against the
    targets, each job interleaved as in `run_table`."""
    rows = []
    for label, arch, method, layer, target in ONNX_TABLE:
        onnx = onnx_export(a.python, arch)
        makers = {
            "pytorch": functools.partial(torch_side, a.python, arch, method, a.size, 1,
                                         a.threads, layer),
            "sightline": functools.partial(sightline_side, exe, arch, method, a.size, 1,
                                           a.threads, layer, onnx),
        }
        sides = interleave(makers, a.iters, a.gap)
        pt, sl = sides["pytorch"], sides["sightline"]
        ratio, spread = summary(pair_ratios(sl.ms(), pt.ms()))
        rss = (sl.summary.get("peak_rss_mib") and pt.summary.get("peak_rss_mib")
               and sl.summary["peak_rss_mib"] / pt.summary["peak_rss_mib"])
        row = dict(job=label, arch=arch, method=method, layer=layer, target=target,
                   rss_target=ONNX_RSS_TARGET, pytorch=side_record(pt),
                   sightline=side_record(sl), time_ratio=ratio, time_ratio_range=spread,
                   rss_ratio=None if not rss else round(rss, 2))
        rows.append(row)
        if a.json:
            print(json.dumps(row), flush=True)
    if a.json:
        return
    print(f"{'job':36} {'PyTorch ms':>10} {'sightline ms':>12} {'ratio':>6} {'range':>11} "
          f"{'target':>7} {'PyTorch MiB':>11} {'sightline MiB':>13} {'RSS ratio':>9}")
    for r in rows:
        t, s = r["pytorch"], r["sightline"]
        ratio = "-" if r["time_ratio"] is None else str(r["time_ratio"])
        spread = ("-" if r["time_ratio_range"] is None
                  else "{}-{}".format(*r["time_ratio_range"]))
        rss = "-" if r["rss_ratio"] is None else str(r["rss_ratio"])
        print(f"{r['job']:36} {fmt(t.get('ms_median')):>10} {fmt(s.get('ms_median')):>12} "
              f"{ratio:>6} {spread:>11} {'<= ' + str(r['target']):>7} "
              f"{fmt(t.get('peak_rss_mib')):>11} {fmt(s.get('peak_rss_mib')):>13} {rss:>9}")
        for side in (t, s):
            if side.get("error"):
                print(f"{'':36} {side['error']}")


def run_table(a, have_torch, exe, table=TABLE):
    """Issue 7's jobs, with time and peak RSS ratios (sightline / PyTorch)
    against the targets. Each job interleaves `--iters` calls of each side
    (see the module's doc); the time ratio is the median of the rounds'
    ratios, shown with their range. The CPU ratio is that of the median CPU
    time per call (user + system, all threads, idle spinning included),
    which time the host takes away from the process does not inflate. The
    batch-8 job also interleaves sightline at batch 1 (three processes),
    and compares its time per image with that."""
    rows = []
    for label, arch, methods, torch_method, batch, target in table:
        makers = {}
        weights = weights_export(a.python, arch) if have_torch else None
        if have_torch:
            makers["pytorch"] = functools.partial(torch_side, a.python, arch, torch_method,
                                                  a.size, batch, a.threads)
        makers["sightline"] = functools.partial(sightline_side, exe, arch, methods, a.size,
                                                batch, a.threads, weights=weights)
        if batch > 1:
            makers["batch1"] = functools.partial(sightline_side, exe, arch, methods, a.size, 1,
                                                 a.threads, weights=weights)
        sides = interleave(makers, a.iters, a.gap)
        pt, sl, one = sides.get("pytorch"), sides["sightline"], sides.get("batch1")
        ratios = pair_ratios(sl.ms(), pt.ms()) if pt else []
        ratio, spread = summary(ratios)
        cpu = (pt and median(sl.cpu_ms()) and median(pt.cpu_ms())
               and median(sl.cpu_ms()) / median(pt.cpu_ms()))
        rss = (pt and sl.summary.get("peak_rss_mib") and pt.summary.get("peak_rss_mib")
               and sl.summary["peak_rss_mib"] / pt.summary["peak_rss_mib"])
        row = dict(job=label, arch=arch, methods=methods, batch=batch, pairs=len(ratios),
                   target=target, pytorch=None if pt is None else side_record(pt),
                   sightline=side_record(sl), time_ratio=ratio, time_ratio_range=spread,
                   cpu_ratio=None if not cpu else round(cpu, 2),
                   rss_ratio=None if not rss else round(rss, 2))
        if one is not None:
            row["sightline_batch1"] = side_record(one)
            per_image = pair_ratios(sl.ms(), one.ms(), 1.0 / batch)
            row["per_image_vs_batch1"], row["per_image_vs_batch1_range"] = summary(per_image)
        rows.append(row)
        if a.json:
            print(json.dumps(row), flush=True)
    if a.json:
        return
    print(f"{'job':32} {'PyTorch ms':>10} {'sightline ms':>12} {'ratio':>6} {'range':>11} "
          f"{'target':>7} {'CPU ratio':>9} {'PyTorch MiB':>11} {'sightline MiB':>13} "
          f"{'RSS ratio':>9}")
    for r in rows:
        t, s = r["pytorch"] or {}, r["sightline"]
        target = "-" if r["target"] is None else f"<= {r['target']}"
        ratio = "-" if r["time_ratio"] is None else str(r["time_ratio"])
        spread = ("-" if r["time_ratio_range"] is None
                  else "{}-{}".format(*r["time_ratio_range"]))
        rss = "-" if r["rss_ratio"] is None else str(r["rss_ratio"])
        cpu = "-" if r["cpu_ratio"] is None else str(r["cpu_ratio"])
        print(f"{r['job']:32} {fmt(t.get('ms_median')):>10} "
              f"{fmt(s.get('ms_median')):>12} {ratio:>6} {spread:>11} {target:>7} "
              f"{cpu:>9} {fmt(t.get('peak_rss_mib')):>11} {fmt(s.get('peak_rss_mib')):>13} "
              f"{rss:>9}")
        for side in (t, s, r.get("sightline_batch1") or {}):
            if side.get("error"):
                print(f"{'':32} {side['error']}")
        if r["pytorch"] and 0 < r["pairs"] < a.iters:
            print(f"{'':32} (ratio of {r['pairs']} pairs of {a.iters})")
        one = r.get("sightline_batch1")
        if one and one["ms"] and s["ms"]:
            lo, hi = r["per_image_vs_batch1_range"] or (None, None)
            print(f"{'':32} per image {fmt(median(s['ms']) / r['batch'])} ms vs batch 1 "
                  f"{fmt(one['ms_median'])} ms: ratio "
                  f"{r['per_image_vs_batch1']} ({lo}-{hi}; target: no slower, <= 1)")


if __name__ == "__main__":
    main()
