#!/usr/bin/env python3
"""Checks that imports point down in every crate of the workspace:

1. inside a crate, no name is taken through the crate root's re-exports (`crate::Engine`): it is
   imported from the module that defines it (`crate::engine::Engine`), so the root only faces
   outward;
2. no two modules import each other, directly or around a loop (a module and the modules it
   declares inside it, such as `engine/mod.rs` and `engine/submit.rs`, are one unit here: a
   folder's `mod.rs` may re-export what its files define, and they may use its types).

Names are resolved to the file that defines them. Comments and doc comments are not read.
Usage: scripts/check-imports.py   (from anywhere; exit status 1 on a finding)
"""
import glob
import os
import re
import sys

CRATES = ["src", "cli/src", "benches/src", "bindings/c/src"]
ROOTS = ("lib.rs", "main.rs")


def code_of(path):
    text = open(path, encoding="utf-8").read()
    lines = [l for l in text.split("\n") if not l.lstrip().startswith("//")]
    code = "\n".join(l.split(" // ")[0] for l in lines)
    return re.sub(r'"(\\.|[^"\\])*"', '""', code)


def modpath(root, f):
    p = os.path.relpath(f, root)[:-3].split(os.sep)
    if p[-1] in ("mod", "lib", "main"):
        p = p[:-1]
    return tuple(p)


def check(root):
    problems = []
    files = sorted(glob.glob(os.path.join(root, "**", "*.rs"), recursive=True))
    mods = {modpath(root, f): f for f in files}
    defs = {}
    item = re.compile(
        r"^\s*(?:pub(?:\([a-z]+\))? )?(?:unsafe )?(?:extern \"C\" )?(?:struct|enum|fn|trait|type|const|static|mod|union) ([A-Za-z_]\w*)",
        re.M,
    )
    for f in files:
        for n in item.findall(code_of(f)):
            defs.setdefault(n, set()).add(modpath(root, f))
    edges = {}

    def target(parts, name):
        base = tuple(parts)
        under = [m for m in defs.get(name, ()) if m[: len(base)] == base]
        if len(under) == 1:
            return under[0]
        return base if base in mods else None

    for f in files:
        me = modpath(root, f)
        code = code_of(f)
        if os.path.basename(f) not in ROOTS or os.path.dirname(f) != root:
            for m in re.finditer(r"\bcrate::(\{[^}]*\b[A-Z]\w*|[A-Z]\w*)", code):
                line = code[: m.start()].count("\n") + 1
                problems.append(f"{f}: `crate::{m.group(1)[:40]}` takes a name through the crate root; import it from its module")
        for m in re.finditer(r"\b(crate|(?:super::)+super|super)::((?:[a-z_]\w*::)*)(\{[^}]*\}|[A-Za-z_]\w*)", code):
            head = m.group(1)
            if head == "crate":
                base = []
            else:
                base = list(me[: len(me) - head.count("super")])
            parts = base + [x for x in m.group(2).split("::") if x]
            for n in [x.strip().split(" ")[0] for x in m.group(3).strip("{}").split(",") if x.strip()]:
                if n == "self" or n == "*":
                    t = tuple(parts) if tuple(parts) in mods else None
                elif n[0].islower() and tuple(parts + [n]) in mods:
                    t = tuple(parts + [n])
                else:
                    t = target(parts, n)
                if t is not None and t != me:
                    edges.setdefault(me, {}).setdefault(t, set()).add(n)
    # A module and those nested in it are one unit: drop the edges between them.
    nested = lambda a, b: a[: len(b)] == b or b[: len(a)] == a
    graph = {a: {b: w for b, w in bs.items() if not nested(a, b)} for a, bs in edges.items()}
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in list(graph):
        if v not in index:
            visit(v)
    for comp in sccs:
        # The shortest loop through the component's first module, file -> file (names taken).
        start, members = comp[0], set(comp)
        prev, queue, loop = {start: None}, [start], None
        while queue and loop is None:
            a = queue.pop(0)
            for b in graph.get(a, {}):
                if b == start:
                    loop = [a]
                    while prev[loop[-1]] is not None:
                        loop.append(prev[loop[-1]])
                    loop = list(reversed(loop)) + [start]
                    break
                if b in members and b not in prev:
                    prev[b] = a
                    queue.append(b)
        ties = [f"{mods[a]} -> {mods[b]} ({', '.join(sorted(graph[a][b]))})" for a, b in zip(loop, loop[1:])]
        problems.append("import cycle: " + "; ".join(ties))
    return problems, len(files)


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(top)
    problems, checked = [], 0
    for root in CRATES:
        p, n = check(root)
        problems += p
        checked += n
    for p in problems:
        print(p)
    if problems:
        print(f"check-imports: {len(problems)} finding(s) in {checked} files", file=sys.stderr)
        return 1
    print(f"check-imports: {checked} files in {len(CRATES)} crates, imports point down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
