#!/usr/bin/env python3
"""Times the same saliency jobs in PyTorch + TorchRay and in sightline, one
after the other on the same machine, and prints both and their ratio.

    python3 benches/pytorch/compare.py                      # VGG16 and ResNet-50, guided backprop
    python3 benches/pytorch/compare.py --arch vgg16 --method gradient,grad_cam --iters 5
    python3 benches/pytorch/compare.py --python ~/torch-venv/bin/python
    python3 benches/pytorch/compare.py --table --python ~/torch-venv/bin/python   # issue 7's table
    python3 benches/pytorch/compare.py --table --rounds 3 --python ~/torch-venv/bin/python

PyTorch is optional: the PyTorch side runs in the interpreter given by
`--python` (default: this one) and is skipped, with a note, when that
interpreter has no torch/torchvision/torchray. Nothing here is a test
dependency. A venv for it: `python -m venv v && v/bin/pip install torch
torchvision torchray captum` (several GB).

The sightline side runs `sightline bench --arch A --method M --size S
--batch B --iters N --json` (the binary from `--sightline`, default
target/release/sightline, built with `cargo build --release` if missing).
Both sides use random weights and a random input, batch 1 and 224 x 224 by
default, and the same number of threads (`--threads`, default 2:
RAYON_NUM_THREADS for sightline, torch.set_num_threads for PyTorch).

The PyTorch job is the one of the project's reference timings
(torch_bench.py): torchvision model, eval mode, TorchRay's function for the
method, target class 1, a warm-up call, then the median of the timed calls.
"""
import argparse
import json
import os
import subprocess
import sys
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

run()
ts, cs = [], []
for _ in range(a["iters"]):
    t, c = time.perf_counter(), time.process_time()
    run()
    ts.append((time.perf_counter() - t) * 1000)
    cs.append((time.process_time() - c) * 1000)
print(json.dumps({
    "ms_median": round(statistics.median(ts), 1),
    "cpu_ms_median": round(statistics.median(cs), 1),
    "ms_min": round(min(ts), 1),
    "images_per_s": round(a["batch"] * 1000 / statistics.median(ts), 2),
    "threads": torch.get_num_threads(),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
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


def run_torch(python, arch, method, size, batch, iters, threads):
    args = json.dumps(dict(arch=arch, method=method, size=size, batch=batch,
                           iters=iters, threads=threads))
    r = subprocess.run([python, "-c", TORCH_JOB, args], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def sightline_binary(path):
    if path:
        return Path(path)
    exe = ROOT / "target" / "release" / "sightline"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return exe


def run_sightline(exe, arch, method, size, batch, iters, threads):
    cmd = [str(exe), "bench", "--arch", arch, "--method", method, "--size", str(size),
           "--batch", str(batch), "--iters", str(iters), "--json"]
    if method == "grad_cam":
        for prefix, layer in GRAD_CAM_LAYER.items():
            if arch.startswith(prefix):
                cmd += ["--layer", layer]
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt(v, unit=""):
    return "-" if v is None else f"{v:.1f}{unit}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vgg16,resnet50", help="comma-separated torchvision names")
    p.add_argument("--method", default="guided_backprop", help="comma-separated methods")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="0: each library's default")
    p.add_argument("--python", default=sys.executable, help="interpreter with torch + torchray")
    p.add_argument("--sightline", help="sightline binary (default: target/release/sightline)")
    p.add_argument("--json", action="store_true", help="print one JSON object per job")
    p.add_argument("--table", action="store_true",
                   help="run the jobs of issue 7's table instead of --arch x --method")
    p.add_argument("--rounds", type=int, default=1,
                   help="--table: rounds per job, alternating which side runs first")
    a = p.parse_args()

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
            # One after the other, never at the same time.
            torch_r = (run_torch(a.python, arch, method, a.size, a.batch, a.iters, a.threads)
                       if have_torch else None)
            sl = run_sightline(exe, arch, method, a.size, a.batch, a.iters, a.threads)
            ratio = None
            if torch_r and "ms_median" in torch_r and "ms_median" in sl:
                ratio = torch_r["ms_median"] / sl["ms_median"]
            row = dict(arch=arch, method=method, size=a.size, batch=a.batch,
                       threads=a.threads, pytorch=torch_r, sightline=sl,
                       speedup=None if ratio is None else round(ratio, 2))
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)

    if a.json:
        return
    print(f"{'arch':10} {'method':18} {'PyTorch ms':>11} {'sightline ms':>13} "
          f"{'speedup':>8} {'PyTorch MiB':>12} {'sightline MiB':>14}")
    for r in rows:
        t, s = r["pytorch"] or {}, r["sightline"]
        if "error" in s:
            print(f"{r['arch']:10} {r['method']:18} sightline failed: {s['error']}")
            continue
        if "error" in t:
            print(f"{r['arch']:10} {r['method']:18} PyTorch failed: {t['error']}")
        print(f"{r['arch']:10} {r['method']:18} {fmt(t.get('ms_median')):>11} "
              f"{fmt(s.get('ms_median')):>13} "
              f"{('-' if r['speedup'] is None else str(r['speedup']) + 'x'):>8} "
              f"{fmt(t.get('peak_rss_mib')):>12} {fmt(s.get('peak_rss_mib')):>14}")


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def run_table(a, have_torch, exe):
    """Issue 7's jobs, with time and peak RSS ratios (sightline / PyTorch)
    against the targets. Each job runs `--rounds` rounds of one PyTorch and
    one sightline run, alternating which goes first; a ratio is taken per
    round (the two runs were seconds apart), and the table shows the median
    of the rounds' times and ratios, and the range of the ratios (this
    machine's speed drifts by tens of percent over minutes). The CPU ratio
    is that of the CPU time per call (user + system, all threads, idle
    spinning included), which time the host takes away from the process
    does not inflate."""
    rows = []
    for label, arch, methods, torch_method, batch, target in TABLE:
        rounds = []
        for k in range(a.rounds):
            def torch_side():
                return (run_torch(a.python, arch, torch_method, a.size, batch, a.iters, a.threads)
                        if have_torch else None) or {}

            def sightline_side():
                return run_sightline(exe, arch, methods, a.size, batch, a.iters, a.threads)

            if k % 2 == 0:
                torch_r, sl = torch_side(), sightline_side()
            else:
                sl, torch_r = sightline_side(), torch_side()
            one = None
            if batch > 1 and sl.get("ms_median"):
                one = run_sightline(exe, arch, methods, a.size, 1, a.iters, a.threads)
            rounds.append((torch_r, sl, one))
        t_ms = [t.get("ms_median") for t, _, _ in rounds]
        s_ms = [s.get("ms_median") for _, s, _ in rounds]
        t_mib = [t.get("peak_rss_mib") for t, _, _ in rounds]
        s_mib = [s.get("peak_rss_mib") for _, s, _ in rounds]
        t_cpu = [t.get("cpu_ms_median") for t, _, _ in rounds]
        s_cpu = [s.get("cpu_ms_median") for _, s, _ in rounds]
        ratios = [s / t for t, s in zip(t_ms, s_ms) if t and s]
        cpu_ratios = [s / t for t, s in zip(t_cpu, s_cpu) if t and s]
        rss = [s / t for t, s in zip(t_mib, s_mib) if t and s]
        errors = [s["error"] for _, s, _ in rounds if "error" in s]
        row = dict(job=label, arch=arch, methods=methods, batch=batch, rounds=a.rounds,
                   target=target, error=errors[0] if errors else None,
                   pytorch_ms=t_ms, sightline_ms=s_ms, pytorch_mib=t_mib, sightline_mib=s_mib,
                   time_ratio=None if not ratios else round(median(ratios), 2),
                   time_ratio_range=None if not ratios else [round(min(ratios), 2),
                                                             round(max(ratios), 2)],
                   pytorch_cpu_ms=t_cpu, sightline_cpu_ms=s_cpu,
                   cpu_ratio=None if not cpu_ratios else round(median(cpu_ratios), 2),
                   rss_ratio=None if not rss else round(median(rss), 2))
        if batch > 1:
            row["sightline_batch1_ms"] = [o.get("ms_median") for _, _, o in rounds if o]
            per_image = [s / batch for s in s_ms if s]
            row["per_image_ms"] = None if not per_image else round(median(per_image), 1)
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
            print(f"{r['job']:32} sightline failed: {r['error']}")
            continue
        target = "-" if r["target"] is None else f"<= {r['target']}"
        ratio = "-" if r["time_ratio"] is None else str(r["time_ratio"])
        spread = ("-" if r["time_ratio_range"] is None
                  else "{}-{}".format(*r["time_ratio_range"]))
        rss = "-" if r["rss_ratio"] is None else str(r["rss_ratio"])
        cpu = "-" if r["cpu_ratio"] is None else str(r["cpu_ratio"])
        print(f"{r['job']:32} {fmt(median(r['pytorch_ms'])):>10} "
              f"{fmt(median(r['sightline_ms'])):>12} {ratio:>6} {spread:>11} {target:>7} "
              f"{cpu:>9} "
              f"{fmt(median(r['pytorch_mib'])):>11} {fmt(median(r['sightline_mib'])):>13} "
              f"{rss:>9}")
        if "per_image_ms" in r:
            print(f"{'':32} per image {fmt(r['per_image_ms'])} ms vs batch 1 "
                  f"{fmt(median(r['sightline_batch1_ms']))} ms (target: no slower)")


if __name__ == "__main__":
    main()
