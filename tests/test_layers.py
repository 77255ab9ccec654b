"""The architecture, as the imports show it: dependencies point down the
layers of DESIGN.md and the README's map, there are no import cycles, and the
drivers know no model, by import or by behaviour."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxem"

# Lowest first. A module may import its own layer and the layers below.
LAYERS = [
    # numerics, checks, statistics kinds, the optax M-step, k-means seeding,
    # free coordinates (a model's parameters as one unconstrained vector)
    {
        "jaxem._numerics",
        "jaxem._validation",
        "jaxem._stats",
        "jaxem.gem",
        "jaxem._kmeans",
        "jaxem._free",
    },
    # pure inference functions on arrays
    {"jaxem.inference"},
    # the model contract
    {"jaxem._model"},
    # components: one distribution family per module
    {"jaxem.models.components"},
    # latent structures built from components
    {"jaxem.models"},
    # the engine (knows the contract, no model), its SQUAREM iteration and
    # implicit-differentiation hook, criteria, data
    {
        "jaxem._engine",
        "jaxem._accelerate",
        "jaxem._implicit",
        "jaxem._criteria",
        "jaxem._datasets",
    },
    # drivers built on the engine
    {"jaxem._streaming", "jaxem._online"},
    {"jaxem._driver"},
    # the package, the estimators, the command line
    {"jaxem", "jaxem.estimators", "jaxem.__main__"},
]
DRIVERS = ("_engine.py", "_driver.py", "_streaming.py", "_online.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    """The layer of a module: that of its longest listed prefix."""
    best, rank = -1, None
    for index, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{name} is in no layer: add it to tests/test_layers.py"
    return rank


def imports(path: Path) -> set[str]:
    """The jaxem modules a file imports (``from jaxem import x`` counts as
    ``jaxem.x`` when ``x`` is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxem"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py")
                is_package = PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py"
                found.add(candidate if is_module.exists() or is_package.exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("jaxem")}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def test_dependencies_point_down():
    upward = [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH.get(name, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target] if target in trail else [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_drivers_know_no_model():
    """The engine and the drivers import no model module, and read no
    optional attribute of a model (the contract is completed once, at the
    boundary, by ``jaxem._model.as_model``)."""
    for file in DRIVERS:
        path = PACKAGE / file
        source = path.read_text()
        name = module_name(path)
        assert not [t for t in GRAPH[name] if t.startswith("jaxem.models")], name
        for pattern in (
            "getattr(model",
            "hasattr(model",
            "getattr(self.model",
            "getattr(type(model",
        ):
            assert pattern not in source, f"{file} reads a model attribute: {pattern}"
