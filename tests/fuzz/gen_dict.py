#!/usr/bin/env python3
"""gen_dict.py: writes nnd.dict, the libFuzzer dictionary of the language's tokens.

usage: gen_dict.py [--check]

The tokens come from where the language defines them, so the dictionary follows the
grammar: the keywords of grammar/nnd.l (its keywords[] table) and its operators, the
built-in functions (compiler/builtins.def, and ops.def's FN ops), the train block's
settings (compiler/builtins.c), and every name the standard library declares at top
level (stdlib/*.nnd), plus a few spellings of numbers and strings.  fuzz_frontend's
mutator reads the same file (-dict=) for its token insertions.  --check exits 1 when
nnd.dict is not what this script writes (the fuzz tests run it).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def read(rel):
    return open(os.path.join(ROOT, rel), encoding="utf-8").read()


def tokens():
    lex = read("grammar/nnd.l")
    kw = re.search(r"keywords\[\] = \{(.*?)\};", lex, re.S).group(1)
    out = {"keyword": re.findall(r'\{"(\w+)",', kw)}
    rules = lex.split("%%")[1]
    ops = re.findall(r'^"([^"\\\w]+)"\s', rules, re.M)  # "->", "==", ...
    ops += list(re.search(r"^\[-\+\*/\^@<>=,:\.\]", rules, re.M).group(0)[1:-1].replace("\\", ""))
    ops += ["(", ")", "[", "]", "{", "}", ";", "#", "\\\n"]
    out["operator"] = ops
    names = re.findall(r'^BI\(\w+,\s*"(\w+)"', read("compiler/builtins.def"), re.M)
    names += re.findall(r'^OP\(\w+,\s*"(\w+)",.*\bFN\)', read("compiler/ops.def"), re.M)
    settings = re.search(r"#define TRAIN_SETTINGS\(X\)(.*?)\n(?!\s+X\()", read("compiler/builtins.h"), re.S)
    names += re.findall(r"X\((\w+)\)", settings.group(1))
    names += ["pi", "e", "inf", "x", "y", "g", "w", "t", "step", "epoch", "steps", "forward", "net"]
    out["builtin"] = names
    lib = []
    for f in sorted(os.listdir(os.path.join(ROOT, "stdlib"))):
        if f.endswith(".nnd"):
            lib.append(f[:-4])
            lib += re.findall(r"^(?:model|fn|optimizer|layer)\s+(\w+)",
                              read("stdlib/" + f), re.M)
    out["stdlib"] = lib
    out["literal"] = ["0", "1", "-1", "0.5", "1e-3", "1e308", "1e-45", "2147483648",
                      "9223372036854775807", "[B, 784]", "[2, 3]", '""', '"a.safetensors"',
                      "axis = 1", "keepdims = true"]
    return out


def render():
    lines = ["# nnd.dict: libFuzzer dictionary of the nnd language (tests/fuzz/gen_dict.py",
             "# writes it from grammar/nnd.l, compiler/builtins.def, ops.def, builtins.c",
             "# and stdlib/*.nnd; do not edit by hand)."]
    seen = set()
    for kind, toks in tokens().items():
        lines.append(f"# {kind}")
        for i, t in enumerate(toks):
            if t in seen:
                continue
            seen.add(t)
            esc = t.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\x0a")
            lines.append(f'{kind}_{i}="{esc}"')
    return "\n".join(lines) + "\n"


def main(argv):
    path = os.path.join(HERE, "nnd.dict")
    text = render()
    if "--check" in argv:
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            print("gen_dict: tests/fuzz/nnd.dict is stale: run tests/fuzz/gen_dict.py")
            return 1
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
