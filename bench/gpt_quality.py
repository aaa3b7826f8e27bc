#!/usr/bin/python3
"""The GPT's quality: nnd's validation loss against PyTorch's after the same steps.

usage: bench/gpt_quality.py [--steps 300] [--seeds 1,2,3] [--threads 2]
                            [--nnd build/nnd] [--peers ../shared/bench]

For each seed, trains examples/gpt.nnd with nnd (`--set steps=N --set cosine=0`:
a constant lr 1e-3, as the peer) and ../shared/bench/torch_gpt.py's model with
PyTorch (its batches(), AdamW setup and clipping, the same seed), then measures both
models' validation loss the same way, with the same code: the PyTorch model, nnd's
weights loaded into it, on every 256th 64-byte window of the last 10% of the corpus
(about 1000 windows, the windows of the example's `data val`).  The initial
weights and the batches differ between the two (each draws its own), so the
seeds' spread is part of the comparison: it prints each pair, the means and their
difference, and the standard deviation over seeds.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for name, e in header.items():
        if name != "__metadata__":
            s, t = e["data_offsets"]
            dt = {"F32": "<f4", "F64": "<f8"}[e["dtype"]]
            out[name] = np.frombuffer(b[8 + n + s:8 + n + t], dtype=dt).reshape(e["shape"])
    return out


def torch_name(nnd):
    """torch_gpt.py's name of an nnd parameter: blocks.0.attn.qkv.W -> blocks.0.qkv.weight."""
    n = nnd.replace("tok.W", "wte.weight").replace("pos.W", "wpe.weight").replace(".attn.", ".")
    n = n.replace(".gamma", ".weight").replace(".beta", ".bias")
    return n[:-2] + ".weight" if n.endswith(".W") else n[:-2] + ".bias" if n.endswith(".b") else n


def load_nnd(model, path):
    w = read_safetensors(path)
    state = model.state_dict()
    for n, a in w.items():
        t = torch_name(n)
        a = a.T if a.ndim == 2 and not t.startswith(("wte", "wpe")) else a
        if t not in state or tuple(state[t].shape) != a.shape:
            raise SystemExit(f"{path}: {n} ({t}) does not fit the PyTorch model")
        state[t] = torch.from_numpy(np.array(a, dtype=np.float32))  # a writable copy
    model.load_state_dict(state)


def val_loss(tg, model, val, T=64, stride=256):
    starts = range(0, len(val) - T - 1, stride)
    x = np.stack([val[i:i + T] for i in starts]).astype(np.int64)
    y = np.stack([val[i + 1:i + T + 1] for i in starts]).astype(np.int64)
    total = 0.0
    with torch.no_grad():
        for k in range(0, len(x), 64):
            xb, yb = torch.from_numpy(x[k:k + 64]), torch.from_numpy(y[k:k + 64])
            total += model(xb, yb).item() * len(xb)
    return total / len(x)


def train_torch(tg, steps, seed, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, _ = tg.corpus()
    m = tg.GPT(4, 4, 128, 64)
    decay = [p for p in m.parameters() if p.dim() == 2]
    rest = [p for p in m.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    for _ in range(steps):
        x, y = tg.batches(train, 32, 64, rng)
        loss = m(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nnd", default=os.path.join(ROOT, "build", "nnd"))
    ap.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "bench"))
    a = ap.parse_args()
    sys.path.insert(0, a.peers)
    import torch_gpt as tg  # the peer's corpus, model and batches
    torch.set_flush_denormal(True)
    _, val = tg.corpus()
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as work:
            r = subprocess.run([a.nnd, "run", os.path.join(ROOT, "examples", "gpt.nnd"),
                                "--set", f"steps={a.steps}", "--set", "cosine=0", "--seed",
                                str(seed), "--threads", str(a.threads)],
                               cwd=work, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(r.stdout + r.stderr)
            m = tg.GPT(4, 4, 128, 64)
            load_nnd(m, os.path.join(work, "gpt.safetensors"))
            ln = val_loss(tg, m.eval(), val)
        lt = val_loss(tg, train_torch(tg, a.steps, seed, a.threads).eval(), val)
        rows.append((seed, ln, lt))
        print(f"seed {seed}: val loss after {a.steps} steps  nnd {ln:.4f}  torch {lt:.4f}  "
              f"(nnd - torch {ln - lt:+.4f})", flush=True)
    n = [r[1] for r in rows]
    t = [r[2] for r in rows]
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else float("nan"))
    print(f"mean over {len(rows)} seeds: nnd {statistics.mean(n):.4f} (sd {sd(n):.4f})  "
          f"torch {statistics.mean(t):.4f} (sd {sd(t):.4f})  "
          f"difference {statistics.mean(n) - statistics.mean(t):+.4f} nats")


if __name__ == "__main__":
    main()
