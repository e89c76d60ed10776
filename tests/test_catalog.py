"""The one registry (core.catalog) agrees with the profiles, the DAG files and the README."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from vbp_monitor.core import config
from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.labels import OWNERSHIP_ZH, SEVERITY_ORDER
from vbp_monitor.core.profiles import cite, load_profile

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(path.stem for path in config.PROFILES_DIR.glob("*.toml"))


def _readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_profiles_to_check():
    assert {"default", "ningxia_2019"} <= set(PROFILES)


@pytest.mark.parametrize("profile_name", PROFILES)
def test_every_rule_cites_a_clause_in_every_profile(profile_name):
    profile = load_profile(profile_name)
    for code in RULES:
        # the payment deadline, and so its clause, depends on the institution's ownership
        variants = list(OWNERSHIP_ZH) if code == "PAYMENT_OVERDUE" else [None]
        for variant in variants:
            clause = cite(profile, code, variant)
            assert clause.strip(), (profile_name, code, variant)


def test_payment_overdue_cites_the_clause_of_the_institutions_ownership():
    profile = load_profile("default")
    public, military, private = (cite(profile, "PAYMENT_OVERDUE", o) for o in ("public", "military", "private"))
    assert public != military and military == private
    with pytest.raises(KeyError):
        cite(profile, "PAYMENT_OVERDUE")


def test_every_rule_has_known_severities_and_a_known_dag():
    for code, rule in RULES.items():
        assert rule.code == code
        assert rule.dag_id == "*" or rule.dag_id in DAGS, code
        assert rule.severities and set(rule.severities.values()) <= set(SEVERITY_ORDER), code
        assert rule.citation.endswith(f".citations.{code}"), code


def test_every_rule_declares_the_unit_of_its_figures_and_who_acts():
    """The emails show metric and threshold with the rule's unit and close with the actor's instruction."""
    from vbp_monitor.core.catalog import ACTORS
    from vbp_monitor.core.formatting import FLAG_UNIT, UNITS

    for code, rule in RULES.items():
        assert rule.unit in UNITS and (rule.threshold_unit or rule.unit) in UNITS, code
        assert (rule.unit == FLAG_UNIT) == bool(rule.flag), code
        assert rule.actor in ACTORS, code
    assert RULES["DATA_QUALITY"].actor == "data_team"
    assert {RULES[code].actor for code in ("ORDER_RESPONSE_OVERDUE", "ORDER_RESPONSE_ESCALATED")} == {"distributor"}
    assert RULES["PREPAY_UNDER_DISBURSED"].actor == "fund"
    assert RULES["ANNUAL_REPORT_MISSING"].actor == "branch"


def _dag_ids_in(path: Path) -> list[str]:
    """The ``dag_id=`` of each ``@dag(…)`` / ``DAG(…)`` in a DAG file (a constant such as DAG_ID is resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets
                 if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)}
    found = []
    for call in ast.walk(tree):
        function = getattr(call, "func", None)
        name = getattr(function, "id", getattr(function, "attr", None))
        if not isinstance(call, ast.Call):
            continue
        if name in ("dag", "DAG"):  # @dag(dag_id=…)
            values = [keyword.value for keyword in call.keywords if keyword.arg == "dag_id"]
        elif name == "dag_arguments":  # @dag(**dag_arguments(DAG_ID))
            values = call.args[:1]
        else:
            continue
        for value in values:
            found.append(value.value if isinstance(value, ast.Constant) else constants.get(getattr(value, "id", "")))
    return found


def test_every_dag_file_declares_a_catalog_dag_and_every_catalog_dag_has_a_file():
    declared = []
    for path in sorted((REPO / "dags").glob("*.py")):
        dag_ids = _dag_ids_in(path)
        assert len(dag_ids) == 1, (path.name, dag_ids)
        assert dag_ids[0] in DAGS, (path.name, dag_ids[0])
        assert path.stem == dag_ids[0], path.name  # one file per DAG, named after it
        declared.extend(dag_ids)
    assert sorted(declared) == sorted(DAGS)


def test_readme_rule_table_is_the_catalogs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = _readme_tables().rule_table()
    assert table in readme, "README.md's rule table differs from `python scripts/readme_tables.py rules`"
    header = table.splitlines()[0]
    start = readme.index(header)
    rows = readme[start:].split("\n\n", 1)[0].splitlines()[2:]
    assert [re.match(r"\| `(\w+)` \|", row).group(1) for row in rows] == list(RULES)


def test_readme_tables_lists_every_dag_and_code():
    module = _readme_tables()
    dag_rows = module.dag_table().splitlines()[2:]
    assert [re.match(r"\| `(\w+)` \|", row).group(1) for row in dag_rows] == list(DAGS)
    listed = set(re.findall(r"`([A-Z0-9_]+)`", module.dag_table()))
    assert listed == set(RULES)
