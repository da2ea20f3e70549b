"""Follow a command's options as data from its CLI function down through moeaudio, statically (ast).

    python scripts/opts_walk.py [--root REPO] [--json] [--list] train eval

How it counts (a static approximation; nothing is imported or run):

* Start: the command's function, its parameter ``opts`` tainted: ``<name>_cmd`` in ``moeaudio/cli.py``
  where the CLI defines one, else the ``module:function`` its ``COMMANDS`` table names (then the CLI's
  call of it is the first stop, as ``<name>_cmd``'s call of the work function was).
* Inside a function, a local name is tainted when it is assigned (``=``, ``+=``, ``for``, ``with``,
  ``:=``) from an expression that mentions a tainted name; repeated to a fixpoint (flow-insensitive).
* A **stop** is a call, from a function the data has reached, to a function defined in the package
  with at least one argument mentioning a tainted name; the callee's matching parameters are tainted
  (positional, keyword, ``*args``/``**kwargs``). Calls resolved: module-level names, names imported
  from moeaudio modules (through package re-exports), ``module.func`` of imported modules and
  ``self.method``. Each (function, tainted parameters) is expanded once; a later call to it still
  counts as a stop.
* **Places**: distinct functions reached. **Files**: distinct modules.
* The stops in depth-first order form the walk. A **climb back up** is a step of the walk from a
  function in a lower layer to one in a higher layer (ranks of ``tests/test_layers.py``: the data
  went down, came back up the call stack, and is used up there again). An **entry** into a file is
  a step of the walk that arrives in it from another file; **re-entries** = entries beyond the first.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Func:
    qual: str  # moeaudio.train.trainer.setup or moeaudio.eval.evaluate.EvalPlan.method
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None = None

    @property
    def params(self) -> list[str]:
        a = self.node.args
        names = [p.arg for p in [*a.posonlyargs, *a.args]]
        return names[1:] if self.cls and names and names[0] in ("self", "cls") else names


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    funcs: dict[str, Func] = field(default_factory=dict)  # local name -> Func (module level)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified target


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((root / "moeaudio").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = module_name(root, path)
        mod = Module(name, path, ast.parse(path.read_text(encoding="utf-8")))
        for node in mod.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mod.funcs[node.name] = Func(f"{name}.{node.name}", name, node)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        q = f"{name}.{node.name}.{item.name}"
                        mod.funcs[f"{node.name}.{item.name}"] = Func(q, name, item, node.name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(mod.tree):  # imports anywhere (cli.py imports inside functions)
            if isinstance(node, ast.Import):
                for a in node.names:
                    mod.imports[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for a in node.names:
                    mod.imports[a.asname or a.name] = f"{base}.{a.name}"
        modules[name] = mod
    return modules


def resolve(modules: dict[str, Module], qual: str, depth: int = 0) -> Func | None:
    """A qualified name (``moeaudio.x.y.f``) -> the function it names, following re-exports."""
    if depth > 5:
        return None
    mod, _, attr = qual.rpartition(".")
    if mod in modules:
        m = modules[mod]
        if attr in m.funcs:
            return m.funcs[attr]
        if attr in m.imports:
            return resolve(modules, m.imports[attr], depth + 1)
    return None


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def targets(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def taint_locals(fn: Func, tainted: set[str]) -> set[str]:
    body = fn.node
    tainted = set(tainted)
    changed = True
    while changed:
        changed = False
        for node in ast.walk(body):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            if isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
                pairs = [(node.target, node.value)]
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                pairs = [(node.target, node.iter)]
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                pairs = [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars is not None]
            elif isinstance(node, ast.NamedExpr):
                pairs = [(node.target, node.value)]
            for target, value in pairs:
                if names_in(value) & tainted:
                    new = targets(target) - tainted
                    if new:
                        tainted |= new
                        changed = True
    return tainted


def _named(modules: dict[str, Module], mod: Module, name: str) -> Func | None:
    if name in mod.funcs:
        return mod.funcs[name]
    if name in mod.imports:
        return resolve(modules, mod.imports[name])
    return None


def callees(modules: dict[str, Module], fn: Func, call: ast.Call) -> list[Func]:
    """The package functions a call may reach: a name, ``module.func``, ``self.method``, or a local
    name bound to one of several functions (``run = a if x else b; run(...)``)."""
    mod = modules[fn.module]
    f = call.func
    if isinstance(f, ast.Name):
        found = _named(modules, mod, f.id)
        if found is not None:
            return [found]
        bound = [
            g
            for node in ast.walk(fn.node)
            if isinstance(node, ast.Assign)
            and f.id in {t.id for t in node.targets if isinstance(t, ast.Name)}
            for name in sorted(names_in(node.value))
            if (g := _named(modules, mod, name)) is not None
        ]
        return bound
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        base = f.value.id
        if base == "self" and fn.cls:
            found = mod.funcs.get(f"{fn.cls}.{f.attr}")
        elif base in mod.imports:
            found = resolve(modules, f"{mod.imports[base]}.{f.attr}")
        else:
            found = None
        return [found] if found is not None else []
    return []


def bound_params(target: Func, call: ast.Call, tainted: set[str]) -> frozenset[str]:
    params = target.params
    a = target.node.args
    out: set[str] = set()
    for i, arg in enumerate(call.args):
        if not (names_in(arg) & tainted):
            continue
        if isinstance(arg, ast.Starred) or i >= len(params):
            if a.vararg:
                out.add(a.vararg.arg)
            continue
        out.add(params[i])
    kwonly = [p.arg for p in a.kwonlyargs]
    for kw in call.keywords:
        if not (names_in(kw.value) & tainted):
            continue
        if kw.arg in params or kw.arg in kwonly:
            out.add(kw.arg)
        elif a.kwarg:
            out.add(a.kwarg.arg)
    return frozenset(out)


def walk(modules: dict[str, Module], start: Func, param: str = "opts", via_table: bool = False) -> list[Func]:
    cli = Func("moeaudio.cli.<table>", "moeaudio.cli", start.node)
    order: list[Func] = [cli, start] if via_table else [start]
    expanded: set[tuple[str, frozenset[str]]] = set()

    def visit(fn: Func, tainted_params: frozenset[str]) -> None:
        key = (fn.qual, tainted_params)
        if key in expanded:
            return
        expanded.add(key)
        tainted = taint_locals(fn, set(tainted_params))
        calls = sorted(
            (n for n in ast.walk(fn.node) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset)
        )
        for call in calls:
            for target in callees(modules, fn, call):
                if target.node is fn.node:
                    continue
                bound = bound_params(target, call, tainted)
                if not bound:
                    continue
                order.append(target)
                visit(target, bound)

    visit(start, frozenset({param}))
    return order


def table_target(cli: Module, name: str) -> str:
    """``moeaudio.x.commands.f`` for the entry ``(group, name, options, "moeaudio.x.commands:f", help)``
    of the CLI's ``COMMANDS`` table (the group ``app``: top-level commands)."""
    for node in ast.walk(cli.tree):
        if isinstance(node, ast.Tuple) and len(node.elts) == 5:
            group, cmd, _, target, _ = node.elts
            if getattr(group, "id", "") == "app" and getattr(cmd, "value", None) == name:
                return target.value.replace(":", ".")
    return ""


def rank_of(module: str, layers: dict[int, tuple[str, ...]]) -> int:
    top = ".".join(module.split(".")[:2])
    for rank, names in layers.items():
        if top in {f"moeaudio.{n}" for n in names}:
            return rank
    return max(layers)


def layer_table(root: Path) -> dict[int, tuple[str, ...]]:
    tree = ast.parse((root / "tests" / "test_layers.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "LAYERS":
            return ast.literal_eval(node.value)
    raise SystemExit("no LAYERS in tests/test_layers.py")


def summarize(order: list[Func], layers: dict[int, tuple[str, ...]]) -> dict:
    files = [f.module for f in order]
    ranks = [rank_of(m, layers) for m in files]
    climbs = sum(1 for a, b in zip(ranks, ranks[1:], strict=False) if b > a)
    entries = Counter(b for a, b in zip([None, *files], files, strict=False) if a != b)
    return {
        "stops": len(order) - 1,  # the CLI function itself is the start, not a stop
        "places": len({f.qual for f in order[1:]}),
        "files": len(set(files[1:])),
        "climbs_back_up": climbs,
        "re_entries": sum(n - 1 for n in entries.values()),
        "entries_per_file": dict(entries.most_common(6)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commands", nargs="+", help="command names, e.g. train eval")
    ap.add_argument("--root", default=".", help="repository root (default: here)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the walk itself")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    modules, layers = load(root), layer_table(root)
    out = {}
    for name in args.commands:
        start, via_table = modules["moeaudio.cli"].funcs.get(f"{name}_cmd"), False
        if start is None:
            start, via_table = resolve(modules, table_target(modules["moeaudio.cli"], name)), True
        if start is None:
            sys.exit(f"no command {name} in {root}/moeaudio/cli.py")
        order = walk(modules, start, via_table=via_table)
        out[name] = summarize(order, layers)
        if args.list:
            print(name, " -> ".join(f.qual.removeprefix("moeaudio.") for f in order))
    print(json.dumps(out, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
