"""The house rules of the package, checked on its source (no Airflow, no database).

- the import graph of ``vbp_monitor`` has no cycle (lazy imports inside functions count;
  imports under ``if TYPE_CHECKING:`` are annotations, not dependencies);
- the layers point one way: ``core`` and ``model`` import no rules, outputs or mail;
- one way to show a figure, one set of labels, one time zone: no copies elsewhere.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "plugins" / "vbp_monitor"
MODULES = {
    ".".join(("vbp_monitor", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts)).removesuffix(".__init__"): path
    for path in PACKAGE_ROOT.rglob("*.py") if "migrations" not in path.parts
}
# Layers from upstream to downstream: a module may import its own layer and those before it.
LAYERS = ["core", "model", "alerts", "quality", "outputs", "rules", "notify", "orchestration"]


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (annotations only, not a dependency)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def _imports(module: str, path: Path) -> set[str]:
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotations_only = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vbp_monitor"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vbp_monitor"))
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                return stack[stack.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_is_read():
    assert "vbp_monitor.rules.entry_sweep" in GRAPH
    assert "vbp_monitor.core.formatting" in GRAPH["vbp_monitor.rules.entry_sweep"]


def test_the_package_has_no_import_cycle():
    assert _cycle() is None, " → ".join(_cycle() or [])


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _layer(m)))
def test_layers_point_downstream_only(module):
    layer = LAYERS.index(_layer(module))
    upstream_only = {imported for imported in GRAPH[module]
                     if _layer(imported) and LAYERS.index(_layer(imported)) > layer}
    assert not upstream_only, f"{module} imports a later layer: {sorted(upstream_only)}"


ONE_PLACE = {
    # what may be defined once, and where
    r"^(OWNERSHIP_ZH|CATEGORY_ZH|SEVERITY_ZH|SEVERITY_ORDER|ONLINE_CATEGORY_ZH)\s*=": "core/labels.py",
    r'ZoneInfo\("Asia/Shanghai"\)': "core/config.py",
    r"^def (fmt_\w+|_?percent|_money|_fraction|_decimal|dec|exact_decimal|_number|period_zh)\(": "core/formatting.py",
    r"on_conflict_do_(update|nothing)\(": "core/db.py",
}


@pytest.mark.parametrize("pattern", sorted(ONE_PLACE))
def test_one_way_to_do_it(pattern):
    places = sorted(
        str(path.relative_to(PACKAGE_ROOT)) for path in MODULES.values()
        if re.search(pattern, path.read_text(encoding="utf-8"), flags=re.M)
    )
    assert places in ([], [ONE_PLACE[pattern]]), places
