#!/usr/bin/env python3
"""lint.py: the properties of the tree that code review should not have to check.

  layers     only backend/ includes llvm-c; runtime/ includes nothing of the
             compiler; compiler/ nothing of backend/, exec/, lib/ or cli/;
             backend/ nothing of exec/, lib/ or cli/; exec/ nothing of lib/ or
             cli/; lib/ (libnnd, its header in include/) nothing of cli/
  length     no function in compiler/, backend/, exec/, lib/ or cli/ is longer than
             MAX_LINES lines (the listing with --lengths shows the longest)
  format     every C file is as clang-format (the repository's .clang-format)
             writes it; skipped, with a note, when clang-format is not installed

usage: lint.py [--lengths N] [--no-format]
Exits 1 and names every offending file and line when a property does not hold.
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 150
LAYERS = ["runtime", "compiler", "backend", "exec", "lib", "cli"]  # each may use those before it
CHECKED = ["compiler", "backend", "exec", "lib", "cli"]  # whose functions are held to MAX_LINES


def c_files(dirs, exts=(".c", ".h", ".y", ".l")):
    for d in dirs:
        for base, _, names in os.walk(os.path.join(ROOT, d)):
            for n in sorted(names):
                if n.endswith(exts):
                    yield os.path.join(base, n)


def headers_of(layer):
    out = set()
    for p in c_files([layer], (".h", ".def")):
        out.add(os.path.basename(p))
    return out


def check_layers():
    errors = []
    owners = {layer: headers_of(layer) for layer in LAYERS}
    owners["runtime"] |= headers_of("runtime/include")
    owners["lib"] |= headers_of("include")
    include = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
    for layer in LAYERS + ["grammar"]:
        allowed = set(LAYERS[: LAYERS.index(layer) + 1]) if layer in LAYERS else {"runtime", "compiler"}
        for path in c_files([layer]):
            text = open(path, encoding="utf-8", errors="replace").read()
            rel = os.path.relpath(path, ROOT)
            for m in include.finditer(text):
                name = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                if name.startswith("llvm-c/") and layer != "backend":
                    errors.append(f"{rel}:{line}: includes {name}: only backend/ may include llvm-c")
                base = os.path.basename(name)
                for other in LAYERS:
                    if other not in allowed and base in owners[other] and base not in owners[layer]:
                        errors.append(f"{rel}:{line}: includes {name} of {other}/: {layer}/ may use "
                                      f"only {', '.join(sorted(allowed))}")
    return errors


FUNC = re.compile(r"^(?:static\s+)?(?:inline\s+)?[A-Za-z_][\w\s\*]*?\b(\w+)\s*\(")


def functions(path):
    """(name, first line, number of lines) of every function defined in a C file."""
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        m = FUNC.match(lines[i])
        if m and not lines[i].startswith(("typedef", "#", "struct", "enum", "union")):
            j = i
            while j < len(lines) and "{" not in lines[j] and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and "{" in lines[j] and not lines[j].rstrip().endswith("};"):
                if lines[j].rstrip().endswith("}"):  # a one-line function
                    yield m.group(1), i + 1, 1
                    i = j + 1
                    continue
                k = j
                while k < len(lines) and not lines[k].startswith("}"):
                    k += 1
                yield m.group(1), i + 1, k - i + 1
                i = k + 1
                continue
        i += 1


def check_lengths(show):
    found = []
    for path in c_files(CHECKED, (".c",)):
        for name, line, n in functions(path):
            found.append((n, os.path.relpath(path, ROOT), line, name))
    found.sort(reverse=True)
    if show:
        for n, rel, line, name in found[:show]:
            print(f"{n:5d} {rel}:{line} {name}")
    return [f"{rel}:{line}: {name} is {n} lines long (at most {MAX_LINES}): split it"
            for n, rel, line, name in found if n > MAX_LINES]


def check_format():
    exe = shutil.which("clang-format")
    if not exe:
        print("lint: clang-format is not installed: format not checked (Debian: clang-format)")
        return []
    files = subprocess.run(["git", "ls-files", "*.c", "*.h"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    # one process for all the files; each difference is reported as file:line:col
    out = subprocess.run([exe, "--style=file", "--dry-run", "-Werror"] + files, cwd=ROOT,
                         capture_output=True, text=True).stderr
    errors, seen = [], set()
    for line in out.split("\n"):
        m = re.match(r"^(.*?):(\d+):\d+: error: code should be clang-formatted", line)
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            rel = os.path.relpath(os.path.join(ROOT, m.group(1)), ROOT)
            errors.append(f"{rel}:{m.group(2)}: not formatted as clang-format writes it "
                          f"(run: clang-format -i {rel})")
    return errors


def main(argv):
    show = 0
    if "--lengths" in argv:
        show = int(argv[argv.index("--lengths") + 1])
    errors = check_layers() + check_lengths(show)
    if "--no-format" not in argv:
        errors += check_format()
    for e in errors:
        print(e)
    if errors:
        print(f"lint: {len(errors)} problem(s)")
        return 1
    print("lint: layers, function lengths" + ("" if "--no-format" in argv else " and format") + " ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
