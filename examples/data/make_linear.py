#!/usr/bin/env python3
"""Writes linear.csv: y = 3 x1 - 2 x2 + 0.5 x3 + 1 + noise (sd 0.01), 256 rows.
The data is committed; this script says how it was made (deterministic)."""
import random

random.seed(7)
with open("linear.csv", "w") as f:
    f.write("x1,x2,x3,y\n")
    for _ in range(256):
        x = [random.uniform(-2, 2) for _ in range(3)]
        y = 3 * x[0] - 2 * x[1] + 0.5 * x[2] + 1 + random.gauss(0, 0.01)
        f.write(",".join(f"{v:.6f}" for v in x + [y]) + "\n")
