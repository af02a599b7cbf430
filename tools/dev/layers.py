#!/usr/bin/env python3
"""The layering check of the test command: no module imports another that
imports it back, directly or round a longer loop, in any crate; and in the
engine, the runtime and storage import no service, and no service imports
the composition.

A module is a file (`mod.rs` and `lib.rs` name their folder). Module `a`
imports module `b` when `a` names an item by a path that goes through `b`:
a `use` (braces expanded), or an inline `crate::`, `super::` or `self::`
path, or a path through a child module `a` declares. Declaring a child
(`mod b;`) is ownership, not an import; a parent that only declares and
re-exports its children is a facade, and children name their siblings, not
the facade. `#[cfg(test)]` code is not looked at. Method calls are not
imports (an `impl` block in another file adds methods, it does not import).

cargo-modules (`cargo modules dependencies --acyclic`) checks a crate's
item graph instead; it needs rust-analyzer built from source, which would
cost CI more than the whole suite, so this reads the sources itself.

Usage: tools/dev/layers.py [REPO_ROOT]; exit 1 and a list of what is wrong.
"""

import os
import re
import sys

CRATES = ["engine/src", "server/src", "fusefront/src", "bench/src", "tools/src"]

# Engine layers, bottom up: a module may import its own layer or lower.
ENGINE_LAYERS = [
    # Runtime, storage and the stateless parts.
    {"clock", "config", "doorbell", "error", "key", "limits", "node_error",
     "remote", "repo", "secret", "shard", "stats", "store", "tree", "units"},
    # Services: each with its own state, interface and messages.
    {"objects", "mirrors", "snapshots", "packs", "indexes", "hydrate", "overlay"},
    # The node's composition of the services.
    {"services"},
]


def modules(src):
    """Module path -> file, for every .rs file under `src`."""
    found = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found["::".join(["crate"] + parts)] = path
    return found


def code_of(path):
    """The file's code: comments and `#[cfg(test)]` items dropped."""
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def expand(path):
    """`a::{b, c::{d, e}}` -> a::b, a::c::d, a::c::e."""
    m = re.match(r"^(.*?)\{(.*)\}$", path)
    if not m:
        return [path]
    prefix, inner = m.groups()
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return [full for p in parts if p for full in expand(prefix + p)]


def imports(mods):
    """(importer, imported) module pairs."""
    edges = set()
    for mod, path in mods.items():
        code = code_of(path)
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
        refs = []
        for used in re.findall(r"\buse\s+([^;]+);", code):
            refs += expand(re.sub(r"\s+", "", used))
        refs += re.findall(r"\b((?:crate|super|self)::[\w:]+)", code)
        for ref in refs:
            ref = re.sub(r"as\w+$", "", ref)
            if ref.startswith("crate::"):
                full = ref
            elif ref.startswith(("super::", "self::")):
                base = mod.split("::")
                while ref.startswith("super::"):
                    base, ref = base[:-1], ref[len("super::"):]
                if ref.startswith("self::"):
                    ref = ref[len("self::"):]
                full = "::".join(base + [ref])
            elif ref.split("::")[0] in children:
                full = mod + "::" + ref
            else:
                continue
            parts = full.split("::")
            target = None
            for i in range(1, len(parts) + 1):
                if "::".join(parts[:i]) in mods:
                    target = "::".join(parts[:i])
            if target and target != mod:
                edges.add((mod, target))
    return edges


def cycles(nodes, edges):
    """Strongly connected components of two or more modules (Tarjan)."""
    succ = {n: [] for n in nodes}
    for a, b in sorted(edges):
        succ[a].append(b)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out


def layer_of(mod):
    top = mod.split("::")[1] if "::" in mod else None
    for i, layer in enumerate(ENGINE_LAYERS):
        if top in layer:
            return i
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    wrong = []
    for crate in CRATES:
        mods = modules(os.path.join(root, crate))
        edges = imports(mods)
        for comp in cycles(mods, edges):
            inner = sorted(f"{a} -> {b}" for a, b in edges if a in comp and b in comp)
            wrong.append(f"{crate}: modules import each other in a circle: {', '.join(comp)}\n    " + "\n    ".join(inner))
        if crate == "engine/src":
            for top in {m.split("::")[1] for m in mods if "::" in m}:
                if layer_of("crate::" + top) is None:
                    wrong.append(f"engine/src: module {top} has no layer: add it to ENGINE_LAYERS in {__file__}")
            for a, b in sorted(edges):
                la, lb = layer_of(a), layer_of(b)
                if la is not None and lb is not None and lb > la:
                    wrong.append(f"engine/src: {a} (layer {la}) imports {b} (layer {lb}): a lower layer never imports a higher one")
        print(f"{crate}: {len(mods)} modules, {len(edges)} imports")
    if wrong:
        print("\n".join(wrong))
        sys.exit(1)
    print("layers: no import cycles; the engine's layers point one way")


if __name__ == "__main__":
    main()
