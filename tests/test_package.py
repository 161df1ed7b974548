"""The package's shape: no import cycle (even through imports inside functions), old module paths
still import (with a warning), one atomic writer, every settings class on the settings base."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import lnpstore

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"lnpstore": ROOT / "lnpstore", "lnpstore.models": ROOT / "models"}


def _modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its body (functions included)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # ``from pkg import sub`` depends on pkg.sub; ``from pkg import name`` on pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_import_cycle_even_lazy():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    # Tarjan's strongly connected components: any component of 2+ modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("old", sorted(lnpstore.MOVED_MODULES))
def test_old_module_paths_import_with_a_warning(old):
    sys.modules.pop(old, None)  # a test before may have imported it already
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(lnpstore.MOVED_MODULES[old])
    assert any(
        issubclass(w.category, DeprecationWarning) and lnpstore.MOVED_MODULES[old] in str(w.message)
        for w in caught
    )


def test_readme_imports_of_old_paths_still_work():
    from lnpstore.simulate import SimulationSettings

    sys.modules.pop("lnpstore.simulator", None)
    with pytest.warns(DeprecationWarning, match="lnpstore.simulate"):
        from lnpstore.simulator import SimulationSettings as Old  # noqa: F401
    assert Old is SimulationSettings


def test_files_are_written_only_through_the_atomic_writer():
    """os.replace / mkstemp / rename-into-place live in lnpstore/store/atomic.py only."""
    offenders = []
    for name, path in _modules().items():
        if name == "lnpstore.store.atomic":
            continue
        text = path.read_text()
        for needle in ("os.replace(", "tempfile.mkstemp(", ".replace(tmp", "tmp.rename("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders


def test_every_settings_class_is_on_the_settings_base():
    from lnpstore.runtime.settings import Settings

    found = []
    for name in _modules():
        if not name.rpartition(".")[2].startswith("_"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for attr, obj in vars(module).items():
                if (
                    isinstance(obj, type)
                    and obj.__module__ == name
                    and (attr.endswith("Settings") or attr.endswith("Config"))
                    and dataclasses.is_dataclass(obj)
                ):
                    found.append(obj)
    assert len(found) >= 5
    not_based = [f"{c.__module__}.{c.__name__}" for c in found if not issubclass(c, Settings)]
    assert not not_based, f"settings classes not on lnpstore.runtime.settings.Settings: {not_based}"


def test_every_subpackage_is_in_the_wheel_and_every_import_declared():
    """A folder with an ``__init__.py`` missing from pyproject's ``packages`` imports in an editable
    install but is absent from a wheel; a third-party import not declared is absent on a user's machine."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    mods = _modules()
    packages = {n for n, p in mods.items() if p.name == "__init__.py"}
    assert packages - listed == set()
    declared = " ".join(project["project"]["dependencies"]).lower().replace("-", "_")
    # import name -> distribution name, where they differ; optional imports guarded by try/except
    dist = {"skimage": "scikit_image", "sklearn": "scikit_learn", "pywt": "pywavelets", "yaml": "pyyaml"}
    optional = {"torch", "anndata"}  # torch: read its weights cache if installed; anndata: the profiles extra
    third = set()
    for path in mods.values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            third |= {n.split(".")[0] for n in names}
    third -= set(sys.stdlib_module_names) | {"lnpstore"} | optional
    missing = {m for m in third if dist.get(m, m).lower() not in declared}
    assert missing == set()
