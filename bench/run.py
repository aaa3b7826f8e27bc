#!/usr/bin/python3
"""nnd against its reference peers, in one run.

For each model, batch and thread count, runs nnd, PyTorch eager
(../shared/bench/torch_train.py, Debian's python3-torch) and, for the one-hidden-
layer MLPs, the hand-written fused C trainer (../shared/bench/mlp_c.c), alternately
over several rounds, and prints samples/s medians and the median ratios.  The
machine is shared and noisy: only ratios measured side by side mean anything.
Also prints nnd's compile time (cold: an empty object-code cache; warm: cached) and
the Adam update's nanoseconds per parameter.

The GEMM floor (bench/floor.c, built here): for each MLP, the samples/s its matrix
products alone reach in OpenBLAS f32 on this machine, measured in the same rounds.
The t-thread floor is the faster of OpenBLAS on t threads and t times its one-thread
rate (a trainer that splits the batch across cores could reach the latter).

usage: bench/run.py [--rounds N] [--models mlp128,mlp32,mlp1024,cnn,gpt] [--threads 1,2]
                    [--nnd build/nnd] [--peers ../shared/bench] [--logging-only]

Last, the overhead of logging training statistics (a `log` statement) on the
784-128-10 MLP (the smallest step) and the 784-1024-1024-10 one (the median of at
least 7 runs).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# layer widths of the MLPs, for the GEMM floor
LAYERS = {"mlp128": [784, 128, 10], "mlp32": [784, 32, 10], "mlp1024": [784, 1024, 1024, 10]}

# model: (batch, hidden size for the C trainer or None, torch's best 2-thread setting)
MODELS = {
    "mlp128": (64, 128, ["2", "--blas-threads", "1"]),
    "mlp32": (32, 32, ["1", "--blas-threads", "2"]),
    "mlp1024": (256, None, ["1", "--blas-threads", "2"]),
    "cnn": (64, None, ["2", "--blas-threads", "1"]),
    "gpt": (32, None, None),  # examples/gpt.nnd against ../shared/bench/torch_gpt.py
}
NAMES = {"mlp128": "784-128-10", "mlp32": "784-32-10", "mlp1024": "784-1024-1024-10",
         "cnn": "CNN (conv5-conv5-fc)", "gpt": "GPT L4 H4 C128 T64 (seq/s)"}
GPT_T = 64  # tokens per sequence: tokens/s = 64 x the figures of the gpt row
# a model name ending so: the same program with --precision bf16, with its f32
# products on OpenBLAS's sgemm (NND_OWN_SGEMM=0) instead of nnd's kernels, or
# with its 5x5 convolutions by im2col products (NND_WINOGRAD=0) instead of Winograd's
VARIANTS = {"-bf16": (["--precision", "bf16"], {}), "-openblas": ([], {"NND_OWN_SGEMM": "0"}),
            "-im2col": ([], {"NND_WINOGRAD": "0"})}
# what a variant's extra line compares, and whether the variant is the faster one
VARIANT_LINES = {"-bf16": ("bf16 against f32 (the floor is f32's)", True),
                 "-openblas": ("f32 on nnd's kernels against OpenBLAS's", False),
                 "-im2col": ("5x5 convolutions by Winograd against im2col", False)}


def base(model):
    for suffix in VARIANTS:
        if model.endswith(suffix):
            return model[: -len(suffix)]
    return model


def variant(model):
    """The suffix of a variant model ("-bf16", "-openblas"), or ""."""
    return model[len(base(model)):]


def run(cmd, env=None, timeout=900):
    e = dict(os.environ)
    if env:
        e.update(env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    if r.returncode != 0:
        sys.stderr.write(f"bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n")
        return None
    return r.stdout + r.stderr


def nnd_rate(nnd, model, threads, batch):
    extra, env = VARIANTS.get(variant(model), ([], {}))
    model = base(model)
    path = os.path.join(HERE, "models", model + ".nnd")
    if model == "gpt":  # 30 steps of the example, without its eval (every 500 steps)
        path, extra = os.path.join(ROOT, "examples", "gpt.nnd"), extra + ["--set", "steps=30"]
    out = run([nnd, "run", path, "--threads", str(threads), "--set", f"batch={batch}", "--time",
               *extra], env=env)
    if not out:
        return None, None
    m = re.search(r"time: [0-9.]+ ms per step, ([0-9]+) samples/s", out)
    c = re.search(r"compile: ([0-9.]+) ms", out)
    return (float(m.group(1)) if m else None), (float(c.group(1)) if c else None)


def torch_rate(peers, model, threads, batch):
    if model == "gpt":
        out = run(["/usr/bin/python3", os.path.join(peers, "torch_gpt.py"), "--threads", str(threads),
                   "--batch", str(batch), "--steps", "20"])
        m = re.search(r"tokens/s ([0-9]+)", out or "")
        return float(m.group(1)) / GPT_T if m else None
    t = ["1"] if threads == 1 else MODELS[model][2]
    out = run(["/usr/bin/python3", os.path.join(peers, "torch_train.py"), model, str(batch), "adam", *t,
               "--reps", "3", "--target", "0.5"])
    m = re.search(r": ([0-9]+) samples/s", out or "")
    return float(m.group(1)) if m else None


def c_rate(binary, threads, hidden, batch):
    out = run([binary, str(threads), "1", str(hidden), str(batch)], env={"FTZ": "1"})
    m = re.search(r": ([0-9]+) samples/s \(median", out or "")
    return float(m.group(1)) if m else None


def build_c(peers, workdir):
    src = os.path.join(peers, "mlp_c.c")
    out = os.path.join(workdir, "mlp_c")
    inc = "/usr/include/x86_64-linux-gnu/openblas-pthread"
    r = subprocess.run(["gcc", "-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-DUSE_BLAS",
                        "-I" + inc, src, "-o", out, "-lopenblas", "-lz", "-lm"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write("bench: cannot build the C trainer:\n" + r.stderr)
        return None
    return out


def build_floor(workdir):
    out = os.path.join(workdir, "floor")
    inc = "/usr/include/x86_64-linux-gnu/openblas-pthread"
    r = subprocess.run(["gcc", "-O2", "-I" + inc, os.path.join(HERE, "floor.c"), "-o", out, "-lopenblas"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write("bench: cannot build the GEMM floor:\n" + r.stderr)
        return None
    return out


def floor_rate(binary, threads, model):
    out = run([binary, str(threads), str(MODELS[model][0]), *map(str, LAYERS[model])])
    m = re.search(r"floor: ([0-9]+) samples/s", out or "")
    return float(m.group(1)) if m else None


def cpu_line():
    """The CPU's name, family and model (a virtual machine's name is often just "AMD
    EPYC": the family and model tell a Zen 3 from a Zen 4 or 5), its SIMD flags, and
    the OpenBLAS kernels forced, if any."""
    name, flags, fam = "unknown CPU", [], {}
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "model name":
                name = v.strip()
            elif k in ("cpu family", "model"):
                fam[k] = v.strip()
            elif k == "flags":
                flags = v.split()
                break
    except OSError:
        pass
    if fam:
        name += f" (family {fam.get('cpu family', '?')} model {fam.get('model', '?')})"
    simd = [f for f in flags if f.startswith(("avx", "amx", "fma")) or f == "f16c"]
    core = os.environ.get("OPENBLAS_CORETYPE")
    return (f"{name}, {os.cpu_count()} cores; {' '.join(simd)}; "
            f"OPENBLAS_CORETYPE {core if core else 'unset (OpenBLAS picks its kernels)'}")


def compile_times(nnd, work):
    """nnd's compile time for the 784-128-10 program with an empty object-code cache
    (cold) and again with the entry it left (warm)."""
    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    path = os.path.join(HERE, "models", "mlp128.nnd")
    got = []
    for _ in range(2):
        out = run([nnd, "run", path, "--set", "steps=1", "--time"], env={"NND_CACHE_DIR": cache})
        c = re.search(r"compile: ([0-9.]+) ms", out or "")
        got.append(float(c.group(1)) if c else None)
    return got


def median(xs):
    xs = [x for x in xs if x]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    rs = [x / y for x, y in zip(a, b) if x and y]
    return statistics.median(rs) if rs else None


def fmt(x, unit=""):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M{unit}"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k{unit}"
    return f"{x:.2f}{unit}"


def adam_ns_per_param(nnd, threads):
    out = run([nnd, "run", os.path.join(HERE, "models", "mlp128.nnd"), "--threads", str(threads), "--profile"])
    m = re.search(r"update rule: [0-9]+ parameter values, ([0-9.]+) ns per value", out or "")
    return float(m.group(1)) if m else None


LOG_VARIANTS = [
    ("loss, lr, grad_norm, update_ratio", "loss, lr, grad_norm, update_ratio"),
    ("loss, lr, all five statistic families", "loss, lr, grad_norm, weight_norm, update_ratio, max_grad, nonfinite"),
    ("loss, lr, + weight histograms", "loss, lr, histograms"),
]


def logging_overhead(nnd, work, rounds, threads, model):
    """What a logged step costs more than a plain one, measured inside one process:
    with `log every 2 steps`, `nnd run --time` times the logged steps (the step with
    the statistics, formatting and writing the records) and the others apart, so
    machine noise between processes does not enter the ratio."""
    src = open(os.path.join(HERE, "models", model + ".nnd")).read()
    over = {name: [] for name, _ in LOG_VARIANTS}
    for rnd in range(rounds):
        for k, (name, items) in enumerate(LOG_VARIANTS):
            path = os.path.join(work, f"log{k}.nnd")
            logdir = os.path.join(work, f"logs{k}")
            shutil.rmtree(logdir, ignore_errors=True)
            stmt = f'log every 2 steps to "{logdir}": {items}'
            with open(path, "w") as f:
                f.write(src.replace("    epochs = 1\n", "    epochs = 1\n    " + stmt + "\n"))
            out = run([nnd, "run", path, "--threads", str(threads), "--time"])
            m = re.search(r"time: logged steps ([0-9.]+) ms .* the others ([0-9.]+) ms", out or "")
            over[name].append(float(m.group(1)) / float(m.group(2)) - 1 if m else None)
    return over


def print_logging(a, work):
    t = max(int(x) for x in a.threads.split(","))
    # the smallest step (0.35 ms: the worst case) and a larger one (25 ms)
    # at least 7 runs: one stalled step (the host's, 2 ms among 0.16 ms steps) moves a
    # single run's figure by a percent or more
    runs = max(a.rounds, 7)
    for model in ["mlp128", "mlp1024"]:
        over = logging_overhead(a.nnd, work, runs, t, model)
        print(f"logging overhead, {NAMES[model]} b{MODELS[model][0]} Adam, {t} threads: a logged step against "
              f"a plain one in the same run ({runs} runs, median; writing included)")
        for name, _ in LOG_VARIANTS:
            xs = [x for x in over[name] if x is not None]
            if xs:
                print(f"  {name:<42} {statistics.median(xs) * 100:+6.1f}%  (runs: "
                      f"{', '.join(f'{x * 100:+.1f}%' for x in xs)})")
            else:
                print(f"  {name:<42} -")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="mlp128,mlp128-openblas,mlp128-bf16,mlp32,mlp1024,"
                    "mlp1024-openblas,mlp1024-bf16,cnn,cnn-im2col,cnn-bf16",
                    help="NAME-bf16: NAME with --precision bf16; NAME-openblas: with NND_OWN_SGEMM=0; "
                    "NAME-im2col: with NND_WINOGRAD=0")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--nnd", default=os.path.join(ROOT, "build", "nnd"))
    ap.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "bench"))
    ap.add_argument("--logging-only", action="store_true", help="only the logging overhead")
    a = ap.parse_args()
    if not os.path.exists(a.nnd):
        sys.exit(f"bench: {a.nnd} not found; build first (bash scripts/setup.sh)")
    have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    if not have_torch:
        print("bench: PyTorch is not installed (Debian: python3-torch); its columns stay empty")
    work = tempfile.mkdtemp(prefix="nnd-bench-")
    if a.logging_only:
        print_logging(a, work)
        shutil.rmtree(work, ignore_errors=True)
        return
    cbin = build_c(a.peers, work)
    fbin = build_floor(work)
    print("CPU:", cpu_line())
    if os.environ.get("OPENBLAS_CORETYPE"):
        print("OPENBLAS_CORETYPE =", os.environ["OPENBLAS_CORETYPE"])
    models = a.models.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    res = {}  # (model, threads) -> {"nnd": [...], "torch": [...], "c": [...]}
    floors = {}  # (round, base model, threads) -> the GEMM floor
    compile_ms = {"cold": [], "warm": []}
    for rnd in range(a.rounds):
        print(f"round {rnd + 1}/{a.rounds}", flush=True)
        # four of each a round: one compile is a noisy sample on these machines
        for _ in range(4):
            cold, warm = compile_times(a.nnd, work)
            compile_ms["cold"].append(cold)
            compile_ms["warm"].append(warm)
        for model in models:
            batch, hidden, _ = MODELS[base(model)]
            f32 = model == base(model)  # the peers run f32 only: measured on the f32 rows
            for t in threads:
                r = res.setdefault((model, t), {"nnd": [], "torch": [], "c": [], "floor": []})
                rate, _ = nnd_rate(a.nnd, model, t, batch)
                r["nnd"].append(rate)
                if fbin and base(model) in LAYERS:
                    # one floor per model and thread count a round, shared by its variants
                    key = (rnd, base(model), t)
                    if key not in floors:
                        f = floor_rate(fbin, t, base(model))
                        one = floors.get((rnd, base(model), 1)) if t > 1 else None
                        floors[key] = max(f or 0, t * one if one else 0) or None
                    r["floor"].append(floors[key])
                r["torch"].append(torch_rate(a.peers, model, t, batch) if have_torch and f32 else None)
                r["c"].append(c_rate(cbin, t, hidden, batch) if cbin and hidden and f32 else None)
    print()
    print(f"{'model':<34} {'threads':>7} {'nnd':>9} {'PyTorch':>9} {'fused C':>9} {'nnd/PyTorch':>12} {'nnd/C':>7}"
          f" {'floor':>9} {'nnd/floor':>10}")
    for model in models:
        batch = MODELS[base(model)][0]
        for t in threads:
            r = res[(model, t)]
            name = NAMES[base(model)] + (" " + variant(model)[1:] if variant(model) else "")
            rt, rc, rf = ratio(r["nnd"], r["torch"]), ratio(r["nnd"], r["c"]), ratio(r["nnd"], r["floor"])
            print(f"{name + ' b' + str(batch) + ' Adam':<34} {t:>7} {fmt(median(r['nnd'])):>9} "
                  f"{fmt(median(r['torch'])):>9} {fmt(median(r['c'])):>9} "
                  f"{fmt(rt, 'x') if rt else '-':>12} {fmt(rc, 'x') if rc else '-':>7} "
                  f"{fmt(median(r['floor'])):>9} {f'{rf * 100:.0f}%' if rf else '-':>10}")
        if 1 in threads and len(threads) > 1:
            for t in threads[1:]:
                sp = ratio(res[(model, t)]["nnd"], res[(model, 1)]["nnd"])
                if sp:
                    print(f"{'':<34} {t:>7} threads against 1: {sp:.2f}x")
        if variant(model) and base(model) in models:
            what, faster = VARIANT_LINES[variant(model)]
            for t in threads:
                mine, other = res[(model, t)]["nnd"], res[(base(model), t)]["nnd"]
                sp = ratio(mine, other) if faster else ratio(other, mine)
                if sp:
                    print(f"{'':<34} {t:>7} {what}: {sp:.2f}x")
        # against PyTorch at its best thread setting
        best_torch = [max(filter(None, x), default=None) for x in zip(*(res[(model, t)]["torch"] for t in threads))]
        best_nnd = [max(filter(None, x), default=None) for x in zip(*(res[(model, t)]["nnd"] for t in threads))]
        rb = ratio(best_nnd, best_torch)
        if rb:
            print(f"{'':<34} {'best':>7} {fmt(median(best_nnd)):>9} {fmt(median(best_torch)):>9} {'':>9} {rb:>11.2f}x")
    print()
    for kind in ["cold", "warm"]:
        xs = [x for x in compile_ms[kind] if x is not None]
        if xs:
            print(f"compile time, {kind} (784-128-10 program; {'empty' if kind == 'cold' else 'warm'} object-code "
                  f"cache): median {statistics.median(xs):.1f} ms of {len(xs)} (min {min(xs):.1f}, max {max(xs):.1f})")
    for t in threads:
        ns = adam_ns_per_param(a.nnd, t)
        if ns:
            print(f"Adam update, {t} thread{'s' if t > 1 else ''}: {ns:.3f} ns per parameter per step (784-128-10, --profile)")
    print()
    print_logging(a, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
