"""Print the README's tables of DAGs and rule codes, from the one registry (core.catalog).

    python scripts/readme_tables.py          # both tables
    python scripts/readme_tables.py rules    # the rule table of README.md › Layout

tests/test_catalog.py checks that README.md carries the rule table exactly as printed here:
after a change to the catalog, paste the new output into the README.
"""
from __future__ import annotations

import sys

from vbp_monitor.core.catalog import DAGS, RULES, Rule, routed_to_city
from vbp_monitor.core.labels import SEVERITY_ORDER, SEVERITY_ZH


def _codes(codes) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def _severities(rule: Rule) -> str:
    ordered = sorted(set(rule.severities.values()), key=SEVERITY_ORDER.__getitem__, reverse=True)
    return " / ".join(f"{severity} {SEVERITY_ZH[severity]}" for severity in ordered)


def _mailed_to(rule: Rule) -> str:
    if rule.data_team_only:
        return "data team"
    routed = [routed_to_city(rule.code, severity) for severity in rule.severities.values()]
    if all(routed):
        return "branch + city"
    return "branch (+ city when critical)" if any(routed) else "branch"


def _parameters(rule: Rule) -> str:
    section, _, _key = rule.citation.partition(".citations.")
    return f"`[{section}]`"


def dag_table() -> str:
    lines = ["| DAG | 名称 | schedule | alert codes | outputs |", "| --- | --- | --- | --- | --- |"]
    for dag in DAGS.values():
        codes = dag.rule_codes or tuple(code for code, rule in RULES.items() if rule.dag_id == "*")
        lines.append(f"| `{dag.dag_id}` | {dag.title} | {dag.schedule_zh} | {_codes(codes)} | "
                     f"{', '.join(dag.outputs)} |")
    return "\n".join(lines)


def rule_table() -> str:
    """Every rule code: where it is judged, its severity and audience, its profile section."""
    lines = ["| code | 名称 | DAG | severity | mailed to | parameters and citation |",
             "| --- | --- | --- | --- | --- | --- |"]
    for rule in RULES.values():
        dag = "every DAG (validation)" if rule.dag_id == "*" else f"`{rule.dag_id}`"
        lines.append(f"| `{rule.code}` | {rule.title} | {dag} | {_severities(rule)} | {_mailed_to(rule)} | "
                     f"{_parameters(rule)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    tables = {"dags": dag_table, "rules": rule_table}
    wanted = argv or list(tables)
    unknown = [name for name in wanted if name not in tables]
    if unknown:
        print(f"unknown table {', '.join(unknown)}; choose from {', '.join(tables)}", file=sys.stderr)
        return 2
    print("\n\n".join(tables[name]() for name in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
