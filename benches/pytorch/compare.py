#!/usr/bin/env python3
"""Times the same saliency jobs in PyTorch + TorchRay and in sightline, their
calls interleaved one by one on the same machine, and prints both and their
ratio.

    python3 benches/pytorch/compare.py                      # VGG16 and ResNet-50, guided backprop
    python3 benches/pytorch/compare.py --arch vgg16 --method gradient,grad_cam --iters 9
    python3 benches/pytorch/compare.py --python ~/torch-venv/bin/python
    python3 benches/pytorch/compare.py --table --python ~/torch-venv/bin/python   # issue 7's table

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
quiet. Only one side ever runs at a time, and the two calls of a pair are
a second or so apart: a host whose speed drifts by tens of percent over
minutes slows both alike, and the ratio of each pair is taken before the
median. `--iters` is the number of calls per side (pairs).

The sightline side is `sightline bench --arch A --method M --size S
--batch B --stepped --json` (the binary from `--sightline`, default
target/release/sightline, built with `cargo build --release` if missing).
Both sides use random weights and a random input, batch 1 and 224 x 224 by
default, and the same number of threads (`--threads`, default 2:
RAYON_NUM_THREADS for sightline, torch.set_num_threads for PyTorch).

The PyTorch job is the one of the project's reference timings
(torch_bench.py): torchvision model, eval mode, TorchRay's function for the
method, target class 1, a warm-up call, then the timed calls.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The PyTorch job, run as `python -c TORCH_JOB ARGS_JSON`; prints one JSON line.
TORCH_JOB = r'''
import json, resource, statistics, sys, time
a = json.loads(sys.argv[1])
import torch, torchvision
if a["threads"]:
    torch.set_num_threads(a["threads"])
torch.manual_seed(0)
model = getattr(torchvision.models, a["arch"])(weights=None).eval()
x = torch.randn(a["batch"], 3, a["size"], a["size"])
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
        layer = "features.29" if a["arch"].startswith("vgg") else "layer4"
        grad_cam(model, x, target, saliency_layer=layer)
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


def torch_available(python):
    probe = "import torch, torchvision, torchray"
    r = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip().splitlines()[-1:] if r.stderr else []


class Side:
    """One side of a job: a process that makes one call per line it reads
    and answers each with a JSON line {"ms", "cpu_ms"}; when its input
    ends, it prints a summary JSON line (with its peak RSS) and exits."""

    def __init__(self, name, cmd, env=None):
        self.name, self.calls, self.summary, self.error = name, [], {}, None
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1, env=env)
        while self.error is None:
            line = self._line()
            if line is not None and line.get("ready"):
                break

    def _line(self):
        """The next JSON line of the process, or None (and `error` set) when
        it ended or printed something else."""
        text = self.proc.stdout.readline()
        if not text:
            self.proc.wait()
            self.stderr.seek(0)
            last = (self.stderr.read().strip().splitlines() or ["exited"])[-1]
            self.error = f"{self.name}: {last}"
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return {}

    def call(self):
        if self.error:
            return
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._line()
        if line is not None and "ms" in line:
            self.calls.append(line)

    def finish(self):
        if self.error is None:
            self.proc.stdin.close()
            last = None
            while (line := self._line()) is not None:
                last = line
            if self.proc.returncode == 0:  # the output ended as it should
                self.error = None
            self.summary = last or {}
        self.proc.wait()
        return self

    def ms(self):
        return [c["ms"] for c in self.calls]

    def cpu_ms(self):
        return [c["cpu_ms"] for c in self.calls if c.get("cpu_ms") is not None]


def interleave(makers, calls, gap):
    """Starts the sides one after the other (each warms up alone), then
    makes `calls` calls of each, alternating their order from one round to
    the next, pausing `gap` seconds after every call; returns the finished
    sides."""
    sides = []
    for make in makers:
        sides.append(make())
    for k in range(calls):
        for side in (sides if k % 2 == 0 else sides[::-1]):
            side.call()
            time.sleep(gap)
    return [side.finish() for side in sides]


def torch_side(python, arch, method, size, batch, threads):
    args = json.dumps(dict(arch=arch, method=method, size=size, batch=batch, threads=threads))
    return Side("PyTorch", [python, "-c", TORCH_JOB, args])


def sightline_binary(path):
    if path:
        return Path(path)
    exe = ROOT / "target" / "release" / "sightline"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return exe


def sightline_side(exe, arch, method, size, batch, threads):
    cmd = [str(exe), "bench", "--arch", arch, "--method", method, "--size", str(size),
           "--batch", str(batch), "--stepped", "--json"]
    if method == "grad_cam":
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
                   help="timed calls per side (default 9; --table: 15)")
    p.add_argument("--gap", type=float, default=0.25,
                   help="seconds of pause after each call")
    p.add_argument("--threads", type=int, default=2, help="0: each library's default")
    p.add_argument("--python", default=sys.executable, help="interpreter with torch + torchray")
    p.add_argument("--sightline", help="sightline binary (default: target/release/sightline)")
    p.add_argument("--json", action="store_true", help="print one JSON object per job")
    p.add_argument("--table", action="store_true",
                   help="run the jobs of issue 7's table instead of --arch x --method")
    a = p.parse_args()
    if a.iters is None:
        a.iters = 15 if a.table else 9
    if a.iters < 1 or a.gap < 0:
        p.error("--iters must be positive and --gap not negative")

    have_torch, why = torch_available(a.python)
    if not have_torch:
        print(f"note: no PyTorch/TorchRay in {a.python} ({' '.join(why)}); "
              "timing sightline only", file=sys.stderr)
    exe = sightline_binary(a.sightline)
    if a.table:
        return run_table(a, have_torch, exe)

    rows = []
    for arch in a.arch.split(","):
        for method in a.method.split(","):
            makers = [lambda: sightline_side(exe, arch, method, a.size, a.batch, a.threads)]
            if have_torch:
                makers.insert(0, lambda: torch_side(a.python, arch, method, a.size, a.batch,
                                                    a.threads))
            sides = interleave(makers, a.iters, a.gap)
            sl, pt = sides[-1], (sides[0] if have_torch else None)
            ratio, spread = summary(pair_ratios(pt.ms(), sl.ms()) if pt else [])
            row = dict(arch=arch, method=method, size=a.size, batch=a.batch,
                       threads=a.threads, calls=a.iters,
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
        if s["error"]:
            print(f"{r['arch']:10} {r['method']:18} sightline failed: {s['error']}")
            continue
        if t.get("error"):
            print(f"{r['arch']:10} {r['method']:18} PyTorch failed: {t['error']}")
        spread = "-" if r["speedup_range"] is None else "{}-{}".format(*r["speedup_range"])
        print(f"{r['arch']:10} {r['method']:18} {fmt(t.get('ms_median')):>11} "
              f"{fmt(s.get('ms_median')):>13} "
              f"{('-' if r['speedup'] is None else str(r['speedup']) + 'x'):>8} {spread:>11} "
              f"{fmt(t.get('peak_rss_mib')):>12} {fmt(s.get('peak_rss_mib')):>14}")


def side_record(side):
    """What the JSON output keeps of a side: its calls, medians, peak RSS."""
    return dict(error=side.error, ms=[round(m, 1) for m in side.ms()],
                ms_median=median(side.ms()), cpu_ms_median=median(side.cpu_ms()),
                peak_rss_mib=side.summary.get("peak_rss_mib"))


def run_table(a, have_torch, exe):
    """Issue 7's jobs, with time and peak RSS ratios (sightline / PyTorch)
    against the targets. Each job interleaves `--iters` calls of each side
    (see the module's doc); the time ratio is the median of the rounds'
    ratios, shown with their range. The CPU ratio is that of the median CPU
    time per call (user + system, all threads, idle spinning included),
    which time the host takes away from the process does not inflate. The
    batch-8 job also interleaves sightline at batch 1, and compares its
    time per image with that."""
    rows = []
    for label, arch, methods, torch_method, batch, target in TABLE:
        makers = [lambda: sightline_side(exe, arch, methods, a.size, batch, a.threads)]
        if batch > 1:
            makers.append(lambda: sightline_side(exe, arch, methods, a.size, 1, a.threads))
        if have_torch:
            makers.insert(0, lambda: torch_side(a.python, arch, torch_method, a.size, batch,
                                                a.threads))
        sides = interleave(makers, a.iters, a.gap)
        pt = sides.pop(0) if have_torch else None
        sl, one = sides[0], (sides[1] if batch > 1 else None)
        ratio, spread = summary(pair_ratios(sl.ms(), pt.ms()) if pt else [])
        cpu = (pt and median(sl.cpu_ms()) and median(pt.cpu_ms())
               and median(sl.cpu_ms()) / median(pt.cpu_ms()))
        rss = (pt and sl.summary.get("peak_rss_mib") and pt.summary.get("peak_rss_mib")
               and sl.summary["peak_rss_mib"] / pt.summary["peak_rss_mib"])
        errors = [s.error for s in (pt, sl, one) if s is not None and s.error]
        row = dict(job=label, arch=arch, methods=methods, batch=batch, calls=a.iters,
                   target=target, error=errors[0] if errors else None,
                   pytorch=None if pt is None else side_record(pt),
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
        if r["error"]:
            print(f"{r['job']:32} failed: {r['error']}")
            continue
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
        if "sightline_batch1" in r:
            lo, hi = r["per_image_vs_batch1_range"] or (None, None)
            print(f"{'':32} per image {fmt(median(s['ms']) / r['batch'])} ms vs batch 1 "
                  f"{fmt(r['sightline_batch1']['ms_median'])} ms: ratio "
                  f"{r['per_image_vs_batch1']} ({lo}-{hi}; target: no slower, <= 1)")


if __name__ == "__main__":
    main()
