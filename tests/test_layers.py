"""The package's layers, read from its imports with `ast`: imports go one way only
(cli and benchmarks -> toolkit -> studies -> experiment -> tracking -> analysis -> core), only tracking imports mlflow,
and analysis imports neither torch nor mlflow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deep_learning

PACKAGE = Path(deep_learning.__file__).parent
LAYERS = ["core", "analysis", "tracking", "experiment", "studies", "toolkit", "benchmarks"]  # lowest first
TOP_MODULES = {"cli": "benchmarks", "__main__": "benchmarks"}  # the command line sits with the benchmarks, on top


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE or path.stem in TOP_MODULES)


def layer_of(module: str) -> str | None:
    """The layer of `deep_learning.<layer>...`; None for the package itself."""
    parts = module.split(".")
    if parts[0] != "deep_learning" or len(parts) == 1:
        return None
    return TOP_MODULES.get(parts[1], parts[1])


def imported(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (at any depth, lazy imports included), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}:{node.lineno} imports relatively; the rule reads absolute imports"
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "deep_learning" else [node.module]
            found += [(node.lineno, name) for name in names]
    return found


def name(path: Path) -> str:
    return ".".join(("deep_learning", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


@pytest.mark.parametrize("path", modules(), ids=lambda path: name(path))
def test_imports_go_down_the_layers_only(path):
    own = LAYERS.index(layer_of(name(path)))
    upward = [
        f"line {line}: {module}"
        for line, module in imported(path)
        if module != "deep_learning.__version__" and layer_of(module) is not None and LAYERS.index(layer_of(module)) > own
    ]
    if any(layer_of(module) not in (*LAYERS, None, "__version__") for _, module in imported(path)):
        upward.append("a name from the package's front door (import it from its layer instead)")
    assert not upward, f"{name(path)} ({LAYERS[own]}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda path: name(path))
def test_only_tracking_imports_mlflow_and_analysis_imports_no_torch(path):
    roots = {module.split(".")[0] for _, module in imported(path)}
    layer = layer_of(name(path))
    if layer != "tracking":
        assert "mlflow" not in roots, f"{name(path)} imports mlflow: only deep_learning.tracking may"
    if layer == "analysis":
        assert not roots & {"torch", "torchvision", "torchmetrics"}, f"{name(path)} imports torch: analysis reads plain data"


def test_the_rule_reads_every_module_and_catches_an_upward_import(tmp_path):
    assert {layer_of(name(path)) for path in modules()} == set(LAYERS)
    upward = tmp_path / "upward.py"
    upward.write_text("def f():\n    from deep_learning.studies.sweep import run_study\n")
    assert (2, "deep_learning.studies.sweep") in imported(upward)
