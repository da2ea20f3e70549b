"""Architecture test: moeaudio's layers import only downwards, and only cli.py imports lazily.

Every ``moeaudio/**/*.py`` is parsed with :mod:`ast` (nothing is imported, so a module that is broken
mid-refactor is still checked) and each ``import moeaudio.x``, ``from moeaudio.x import y`` and relative
import, at module level, inside a function or under ``if TYPE_CHECKING:``, is resolved to an absolute
module name. A module may import modules of its own rank or lower (``LAYERS``); ``INDEPENDENT`` pairs
of the same rank may not import each other.

Why not import-linter: the rules fit in a table and a page of ast, which needs no dependency, runs
in well under a second, sees imports inside functions (which a runtime import graph misses when
the function is never called) and prints each offence as ``path:line -> module`` to fix.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "moeaudio"

# moeaudio's top-level modules and subpackages by rank: a module may import its own rank or lower.
LAYERS: dict[int, tuple[str, ...]] = {
    # base utilities (moeaudio.recipes is the shipped YAML, read as data by config.py)
    # (logs: library noise)
    0: ("config", "errors", "io_utils", "logs", "options", "progress", "recipes"),
    1: ("data", "model"),
    2: ("runtime", "inspection"),  # inspection: `moeaudio inspect`
    3: ("eval", "analyze"),
    4: ("train", "bench", "serve"),  # serve: a model behind HTTP, over runtime, eval and analyze
    5: ("reproduce",),  # trains, evaluates and analyses whole studies
    6: ("api", "cli", "__main__"),
}
TOP = max(LAYERS)  # moeaudio/__init__.py (the package's public API, re-exported from api.py) is the top
RANK = {f"moeaudio.{name}": rank for rank, names in LAYERS.items() for name in names} | {"moeaudio": TOP}

# Pairs of the same rank that may not import each other (in either direction).
INDEPENDENT = [
    ("moeaudio.data", "moeaudio.model"),
    ("moeaudio.eval", "moeaudio.analyze"),
    ("moeaudio.serve", "moeaudio.train"),  # serving answers; it never trains (nor loads DeepSpeed)
]

# Only the CLI imports moeaudio's own modules inside functions, so `moeaudio --help` loads no torch.
LAZY_CLI = "moeaudio/cli.py"
# Any other lazy import of a moeaudio module, each with its reason: {"moeaudio/x.py -> moeaudio.y": "why"}.
# Meant to stay empty (lazy imports of third-party libraries such as deepspeed are not counted).
LAZY_ALLOWED: dict[str, str] = {
    "moeaudio/__init__.py -> moeaudio.api": "`import moeaudio` (and so `moeaudio --help`) must not load torch: "
    "the API loads on first use through the package's __getattr__",
}


@dataclass(frozen=True)
class Import:
    path: str  # importing file, relative to the repository root
    line: int
    importer: str  # its module name (moeaudio.data.loader)
    target: str  # the module imported (moeaudio.model.moe)
    in_function: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line} -> {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """``moeaudio.data.sources.hf`` -> ``moeaudio.data``; ``moeaudio`` -> ``moeaudio``."""
    return ".".join(module.split(".")[:2])


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _walk(node: ast.AST, in_function: bool = False):
    """Every node with whether it lies inside a function (def, async def or lambda)."""
    yield node, in_function
    inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, inner)


def _imports() -> list[Import]:
    sources = _sources()
    known = {module_name(p) for p in sources}
    found: list[Import] = []
    for path in sources:
        importer = module_name(path)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative: resolve against the importing module's package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, module] if module else base)
                # `from moeaudio.x import y` imports the module moeaudio.x.y when there is one
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target == "moeaudio" or target.startswith("moeaudio."):
                    found.append(Import(rel, node.lineno, importer, target, in_function))
    return found


def _report(title: str, offences: list[str]) -> str:
    return f"{title} ({len(offences)}):\n" + "\n".join(f"  {o}" for o in offences)


def test_every_module_has_a_layer() -> None:
    unknown = sorted({layer(module_name(p)) for p in _sources()} - RANK.keys())
    unknown_imports = [f"{i}" for i in _imports() if layer(i.target) not in RANK]
    assert not unknown and not unknown_imports, (
        f"modules with no layer: {unknown}; add each to LAYERS in tests/test_layers.py at the rank "
        "of what it may import\n" + _report("imports of modules with no layer", unknown_imports)
    )


def test_imports_name_existing_modules() -> None:
    """A moved or deleted module must not stay imported somewhere (inside a function, that import
    only fails when the function runs)."""
    known = {module_name(p) for p in _sources()} | {"moeaudio.recipes"}
    offences = [f"{i}" for i in _imports() if i.target not in known]
    assert not offences, _report("imports of moeaudio modules that do not exist", offences)


def test_no_upward_imports() -> None:
    offences = []
    for i in _imports():
        src, dst = layer(i.importer), layer(i.target)
        if src in RANK and dst in RANK and RANK[dst] > RANK[src]:
            where = " (inside a function)" if i.in_function else ""
            offences.append(f"{i}  [rank {RANK[src]} {src} imports rank {RANK[dst]} {dst}]{where}")
    assert not offences, _report("upward imports (a module may import only its own rank or lower)", offences)


def test_independent_layers_do_not_import_each_other() -> None:
    pairs = {frozenset(p) for p in INDEPENDENT}
    offences = [
        f"{i}  [{layer(i.importer)} imports {layer(i.target)}]"
        for i in _imports()
        if frozenset((layer(i.importer), layer(i.target))) in pairs
    ]
    assert not offences, _report(f"imports between independent layers {INDEPENDENT}", offences)


def test_no_function_level_imports_of_own_modules() -> None:
    offences = [
        f"{i}"
        for i in _imports()
        if i.in_function and i.path != LAZY_CLI and f"{i.path} -> {i.target}" not in LAZY_ALLOWED
    ]
    assert not offences, _report(
        f"imports of moeaudio modules inside functions (import them at module level; only {LAZY_CLI} is lazy)",
        offences,
    )


# Run in a fresh interpreter from the repository root (so the checkout's moeaudio is the one
# imported); a meta-path hook records which moeaudio lines were on the stack when torch was first
# asked for.
_PROBE = r"""
import json, sys, traceback

class Spy:
    chain = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and Spy.chain is None:
            Spy.chain = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                         if "moeaudio" in f.filename and "importlib" not in f.filename]
        return None

sys.meta_path.insert(0, Spy())
import moeaudio.cli
import moeaudio
assert moeaudio.__version__ and "load" in dir(moeaudio)  # the API's names are there, unloaded
heavy = ["torch", "transformers", "deepspeed", "datasets", "matplotlib", "peft"]
print(json.dumps({"loaded": [m for m in heavy if m in sys.modules], "chain": Spy.chain,
                  "moeaudio": sorted(m for m in sys.modules if m.startswith("moeaudio"))}))
"""


def test_cli_import_loads_no_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    root = f"{REPO}/"
    chain = [c.removeprefix(root) for c in result["chain"] or []]
    assert "torch" not in result["loaded"], (
        "`import moeaudio.cli` imports torch, so `moeaudio --help` is slow.\n"
        f"first asked for torch from (outermost first): {chain}\n"
        f"heavy modules loaded: {result['loaded']}\nmoeaudio modules loaded: {result['moeaudio']}"
    )
