#!/usr/bin/python3
"""A tiny GPT trained by nnd and by PyTorch from the same weights on the same batches.

usage: gpt_parity.py NND

The model is stdlib's transformer as examples/gpt.nnd uses it (token and position
embeddings, pre-LayerNorm blocks of causal multi-head attention and a 4x GELU MLP,
a final LayerNorm, the output layer tied to the token embedding), at L2 H2 C32 T16
over bytes, written here a second time in PyTorch.  PyTorch's initial weights are
exported as safetensors under nnd's names (`net = Gpt() from "init.safetensors"`)
and 20 batches of 4 windows as NPY; both sides run 20 AdamW steps (beta2 0.95,
weight decay 0.1 on matrices only, clip_norm 1.0, as examples/gpt.nnd) with no
shuffling.  In f32 every weight must agree to 1e-4 relative (norm of the
difference over the norm of the tensor), and so must the change each weight took
over the 20 steps (a stricter measure: it misses the initial weights' share); in
f64 to 1e-9.  The losses of both sides are compared too.

It fails without PyTorch and NumPy (Debian: python3-torch, python3-numpy;
scripts/test.sh installs both).
"""
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"FAIL: {e.name} is not installed (Debian: python3-torch, python3-numpy)")
    sys.exit(1)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

V, C, H, L, T, B, STEPS = 256, 32, 2, 2, 16, 4, 20
LR, BETA2, WD, CLIP = 3e-3, 0.95, 0.1, 1.0

NND_PROGRAM = f"""
use nn
use optim
model Gpt(V = {V}, C = {C}, H = {H}) {{
    tok = Embedding(V, C, init = normal(0, 0.02))
    pos = Embedding({T}, C, init = normal(0, 0.02))
    blocks = Sequential([TransformerBlock(C, H), TransformerBlock(C, H)])
    lnf = LayerNorm(C)
    fn forward(x: [B, {T}] i32) -> [B, {T}, V] {{
        h = tok(x) + pos(i32(arange({T})))
        matmul(lnf(blocks(h)), transpose(tok.W))
    }}
}}
train {{
    data train = npy("x.npy", "y.npy")
    net = Gpt() from "init.safetensors"
    loss = cross_entropy(net(i32(x)), y)             # NPY integers load as floats
    opt = AdamW(lr = {LR}, beta2 = {BETA2}, wd = {WD}, decay_vectors = false)
    clip_norm = {CLIP}
    batch = {B}
    steps = {STEPS}
    shuffle = false
    log every 1 steps to "log": loss
    save "final.safetensors"
}}
"""


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(C)
        self.qkv = torch.nn.Linear(C, 3 * C)
        self.proj = torch.nn.Linear(C, C)
        self.ln2 = torch.nn.LayerNorm(C)
        self.fc = torch.nn.Linear(C, 4 * C)
        self.out = torch.nn.Linear(4 * C, C)

    def forward(self, x):
        b, t, _ = x.shape
        d = C // H
        a = self.qkv(self.ln1(x)).view(b, t, 3, H, d)
        q, k, v = (a[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, T, d]
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        s = torch.where(mask, s, torch.tensor(-1e9, dtype=s.dtype))
        o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, C)
        h = x + self.proj(o)
        return h + self.out(torch.nn.functional.gelu(self.fc(self.ln2(h)), approximate="tanh"))


class Gpt(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(V, C)
        self.pos = torch.nn.Embedding(T, C)
        self.blocks = torch.nn.ModuleList([Block() for _ in range(L)])
        self.lnf = torch.nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                torch.nn.init.normal_(p, 0, 0.02)
            elif name.endswith("bias") and "ln" not in name:
                torch.nn.init.normal_(p, 0, 0.02)  # not zero: the test covers the biases' paths

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        for blk in self.blocks:
            h = blk(h)
        return self.lnf(h) @ self.tok.weight.T


def nnd_name(name):
    """nnd's name of a torch parameter: blocks.0.qkv.weight -> blocks.0.attn.qkv.W."""
    path, kind = name.rsplit(".", 1)
    last = path.rsplit(".", 1)[-1]
    if last in ("tok", "pos"):
        return path + ".W"
    if last.startswith("ln"):
        return path + (".gamma" if kind == "weight" else ".beta")
    if last in ("qkv", "proj"):
        path = path[:-len(last)] + "attn." + last
    return path + (".W" if kind == "weight" else ".b")


def nnd_layout(name, a):
    """A torch tensor in nnd's layout: Linear's [out, in] is Dense's [in, out]."""
    return np.ascontiguousarray(a.T if a.ndim == 2 and name.rsplit(".", 1)[0] not in
                                ("tok", "pos") else a)


def nnd_names(model):
    """nnd's name -> (torch parameter, its initial value in nnd's layout)."""
    return {nnd_name(n): (p, nnd_layout(n, p.detach().numpy().copy()))
            for n, p in model.named_parameters()}


def nnd_losses(path):
    rows = [r.split(",") for r in open(path).read().splitlines()[1:]]
    return [float(r[3]) for r in rows if r[2] == "loss"]


def run(nnd, dtype, tol):
    torch.manual_seed(1)
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    model = Gpt()
    names = nnd_names(model)
    # text-like batches: random bytes, y the window shifted by one
    rng = np.random.default_rng(5)
    seq = rng.integers(32, 127, size=STEPS * B * T + 1).astype(np.int32)
    x = np.stack([seq[i * T:(i + 1) * T] for i in range(STEPS * B)])
    y = np.stack([seq[i * T + 1:(i + 1) * T + 1] for i in range(STEPS * B)])
    with tempfile.TemporaryDirectory() as work:
        write_safetensors(os.path.join(work, "init.safetensors"),
                          {n: a for n, (_, a) in names.items()}, dtype)
        np.save(os.path.join(work, "x.npy"), x)
        np.save(os.path.join(work, "y.npy"), y)
        with open(os.path.join(work, "gpt.nnd"), "w") as f:
            f.write(NND_PROGRAM)
        tname = "f64" if dtype == np.float64 else "f32"
        r = subprocess.run([nnd, "run", "gpt.nnd", "--dtype", tname, "--threads", "1", "--name", "p"], cwd=work,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            print(f"FAIL: nnd run ({tname})")
            return False
        got = read_safetensors(os.path.join(work, "final.safetensors"))
        got_losses = nnd_losses(os.path.join(work, "log", "p", "metrics.csv"))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, BETA2), eps=1e-8)
    init = {n: a.copy() for n, (_, a) in names.items()}
    losses = []
    for s in range(STEPS):
        xb = torch.from_numpy(x[s * B:(s + 1) * B]).long()
        yb = torch.from_numpy(y[s * B:(s + 1) * B]).long()
        loss = torch.nn.functional.cross_entropy(model(xb).reshape(-1, V), yb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        losses.append(loss.item())

    ok = True
    worst_w = worst_d = noise = 0.0
    want = {nnd_name(n): nnd_layout(n, p.detach().numpy()) for n, p in model.named_parameters()}
    if sorted(got) != sorted(want):
        print(f"FAIL ({tname}): nnd saved {sorted(got)}, torch has {sorted(want)}")
        return False
    for n in sorted(want):
        g, w, i0 = got[n].astype(np.float64), want[n].astype(np.float64), init[n]
        if n.endswith("attn.qkv.b"):
            # the keys' bias adds q . b_k to every score of a row, which softmax
            # ignores: its gradient is 0 in exact arithmetic and rounding noise on
            # each side, which Adam scales to steps of lr: compared apart (below)
            kb = slice(C, 2 * C)
            noise = max(noise, np.abs(g[kb] - w[kb]).max())
            g, w, i0 = np.delete(g, np.s_[kb]), np.delete(w, np.s_[kb]), np.delete(i0, np.s_[kb])
        ew = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)
        dw = w - i0
        ed = np.linalg.norm((g - i0) - dw) / max(np.linalg.norm(dw), 1e-30)
        worst_w, worst_d = max(worst_w, ew), max(worst_d, ed)
        if ew > tol or ed > 10 * tol:
            print(f"FAIL ({tname}): {n}: weights differ by {ew:.3g} relative, "
                  f"their change by {ed:.3g}")
            ok = False
    if noise > STEPS * LR * 1.01:
        print(f"FAIL ({tname}): the keys' biases moved apart by {noise:.3g}, more than "
              f"{STEPS} steps of lr")
        ok = False
    el = max(abs(a - b) / abs(b) for a, b in zip(got_losses, losses))
    if len(got_losses) != STEPS or el > tol:
        print(f"FAIL ({tname}): losses nnd {got_losses[:3]}... torch {losses[:3]}... "
              f"(worst {el:.3g} relative)")
        ok = False
    print(f"{'ok' if ok else 'FAIL'} ({tname}): {len(want)} tensors after {STEPS} AdamW steps: "
          f"weights within {worst_w:.2g} relative (bound {tol:g}), their change within "
          f"{worst_d:.2g}; losses {losses[0]:.6f} -> {losses[-1]:.6f} (torch), "
          f"{got_losses[0]:.6f} -> {got_losses[-1]:.6f} (nnd), within {el:.2g}")
    return ok


def main(argv):
    if len(argv) != 1:
        print(__doc__.strip().split("\n")[2], file=sys.stderr)
        return 2
    ok = run(argv[0], np.float64, 1e-9)
    ok = run(argv[0], np.float32, 1e-4) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
