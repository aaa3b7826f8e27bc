#!/usr/bin/python3
"""`nnd summary` of the examples against PyTorch's count of the same models.

usage: summary_counts.py NND EXAMPLES_DIR

The Fashion-MNIST MLP and CNN and the GPT of examples/, built a second time in
PyTorch: nnd's parameter total must equal sum(p.numel() for p in parameters())
(the GPT's output layer is tied to its token embedding: counted once in both), and
the forward FLOPs per sample of the products must equal what forward hooks on
torch's Linear and Conv2d layers count (2 per multiply-add; the GPT's attention
products, which are not modules, are added by formula).
"""
import re
import subprocess
import sys

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("FAIL: PyTorch is not installed (Debian: python3-torch)")
    sys.exit(1)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 784)


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(),
                         nn.Linear(1024, 10)), (1, 1, 28, 28)


class Block(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.out = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).split(x.shape[-1], dim=2)
        h = x + self.proj(torch.softmax(q @ k.transpose(1, 2), -1) @ v)  # heads: same FLOPs
        return h + self.out(self.fc(self.ln2(h)))


class Gpt(nn.Module):
    def __init__(self, V=256, C=128, T=64, L=4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.Sequential(*[Block(C) for _ in range(L)])
        self.lnf = nn.LayerNorm(C)

    def forward(self, x):
        h = self.blocks(self.tok(x) + self.pos(torch.arange(x.shape[1])))
        return self.lnf(h) @ self.tok.weight.T


def torch_forward_flops(model, x):
    flops = []

    def hook(m, inp, out):
        if isinstance(m, nn.Linear):
            flops.append(2 * out.numel() * m.in_features)
        elif isinstance(m, nn.Conv2d):
            flops.append(2 * out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return sum(flops)


def value(text):
    """'203 k' -> 203e3"""
    num, _, unit = text.strip().partition(" ")
    return float(num) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[unit.strip()]


def main(argv):
    nnd, examples = argv
    V, C, T, L = 256, 128, 64, 4
    gpt = Gpt(V, C, T, L)
    cases = [("fashion_mnist_mlp.nnd",) + mlp(), ("fashion_mnist_cnn.nnd",) + cnn(),
             ("gpt.nnd", gpt, None)]
    ok = True
    for name, model, shape in cases:
        r = subprocess.run([nnd, "summary", f"{examples}/{name}"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: nnd summary {name}:\n{r.stdout}{r.stderr}")
            ok = False
            continue
        total = int(re.search(r"^total\s+(\d+)", r.stdout, re.M).group(1))
        fwd = value(re.search(r"forward ([0-9.]+ ?[kMG]?)", r.stdout).group(1))
        want = sum(p.numel() for p in model.parameters())
        if shape:
            want_f = torch_forward_flops(model, torch.zeros(shape))
        else:  # the GPT: its Linear layers, the tied output, q @ k^T and att @ v
            x = torch.zeros(1, T, dtype=torch.long)
            want_f = torch_forward_flops(model, x) + 2 * T * C * V + L * 2 * (2 * T * T * C)
        good = total == want and abs(fwd - want_f) <= 0.005 * want_f
        ok &= good
        print(f"{'ok' if good else 'FAIL'}: {name}: nnd {total} parameters, torch {want}; "
              f"forward FLOPs per sample nnd {fwd:.4g}, torch {want_f:.4g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
