"""The one registry: every DAG and every rule code of domain.md (``include/catalog.toml``).

Everything that lists DAGs or codes — the mailer's routing and names, the DAG files'
``doc_md`` rule tables, ``scripts/run_dags.py``, the demo plan, the README table and the
tests — is derived from here. A rule's **condition** lives in its SQL file
(``include/sql/``), its **parameters and citation** in the policy profile section named by
``Rule.citation`` (``include/profiles/``), and its **title, severity and routing** here.

Rule codes and DAG ids are a contract (other tools and acceptance tests read them): never
rename. Imported by DAG files at parse time: keep it free of heavy imports.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field

from vbp_monitor.core import config
from vbp_monitor.core.formatting import FLAG_UNIT, UNITS
from vbp_monitor.core.labels import SEVERITY_ORDER, SEVERITY_ZH  # noqa: F401  (re-exported)

# Who receives an alert besides its branch (operations.md › Notification).
BRANCH = "branch"
CITY = "city"
DATA_TEAM = "data_team"

# Who must act on an alert (``Rule.actor``): it picks the closing instruction of an email.
INSTITUTION = "institution"  # the branch urges its institutions to rectify
DISTRIBUTOR = "distributor"  # the branch sends the delay list to the distributors
FUND = "fund"  # the fund office (医保经办机构 / 基金管理中心): prepayment
ACTORS = (INSTITUTION, DISTRIBUTOR, BRANCH, FUND, DATA_TEAM)  # BRANCH: what the branch itself submits


@dataclass(frozen=True)
class Rule:
    code: str
    dag_id: str
    title: str  # 中文名称, the heading of every message of this rule
    subject: str  # what one alert is about, in Chinese (预警对象)
    # The severity of each level the rule can break; most rules have one ("" → severity).
    severities: Mapping[str, str]
    # Profile key of the clause the rule applies: "<section>.citations.<CODE>" (a table
    # keyed by a variant, e.g. ownership, where the clause depends on the case).
    citation: str
    # Routed to the city bureau in detail as well as to the branch (critical ones always are).
    to_city: bool = False
    # Only the data team hears of it (DATA_QUALITY).
    data_team_only: bool = False
    # The unit of metric_value and threshold_value as people read them (formatting.UNITS);
    # threshold_unit when the threshold's differs ("" = the same). "是/否": a 0/1 flag shown
    # with ``flag`` (the question it answers, e.g. 已备案) and no threshold.
    unit: str = ""
    threshold_unit: str = ""
    flag: str = ""
    # Who must act (ACTORS): picks the closing instruction of the emails that carry it.
    actor: str = INSTITUTION

    @property
    def severity(self) -> str:
        """The rule's severity when it has one level (the highest when it has several)."""
        return min(self.severities.values(), key=SEVERITY_ORDER.__getitem__)

    def severity_for(self, level: str = "") -> str:
        return self.severities[level]

    @property
    def units(self) -> tuple[str, str]:
        """(metric unit, threshold unit)."""
        return self.unit, self.threshold_unit or self.unit

    def check(self) -> None:
        for unit in self.units:
            if unit and unit not in UNITS:
                raise ValueError(f"catalog rule {self.code}: unit {unit!r} is not one of {UNITS}")
        if (self.unit == FLAG_UNIT) != bool(self.flag):
            raise ValueError(f"catalog rule {self.code}: a {FLAG_UNIT} unit and its flag go together")
        if self.actor not in ACTORS:
            raise ValueError(f"catalog rule {self.code}: actor {self.actor!r} is not one of {ACTORS}")


@dataclass(frozen=True)
class Dag:
    dag_id: str
    title: str  # 中文名称: subjects, greetings, file titles, the DAG's Chinese tag
    period_kind: str  # "month" (month before D), "day" (D − 1), "ingest" (D), "year" (D.year − 1)
    logic: str  # the module that holds validate/judge (documentation; DAG files import it)
    schedule_zh: str  # the schedule, as an operator reads it
    description: str  # the UI's one-line description (Chinese)
    # Cron expressions in Asia/Shanghai; none = the first PRC working day of each month, 06:00.
    crons: tuple[str, ...] = ()
    max_active_runs: int = 4
    batch_param: bool = True  # the operator may restrict a run to one batch
    outputs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tags(self) -> list[str]:
        cadence = {"month": "monthly", "day": "daily", "ingest": "daily", "year": "yearly"}[self.period_kind]
        return ["vbp", "集采监管", cadence, self.title]  # Chinese tags: the project's and the DAG's title

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in RULES.values() if rule.dag_id == self.dag_id)

    @property
    def rule_codes(self) -> tuple[str, ...]:
        return tuple(rule.code for rule in self.rules)


def _load() -> tuple[dict[str, Rule], dict[str, Dag]]:
    with (config.INCLUDE_DIR / "catalog.toml").open("rb") as fh:
        data = tomllib.load(fh)
    rules = {}
    for code, entry in data["rules"].items():
        severities = entry.pop("severities", None) or {"": entry.pop("severity")}
        rules[code] = Rule(code=code, severities=severities, **entry)
        rules[code].check()
    dags = {}
    for dag_id, entry in data["dags"].items():
        entry["crons"] = tuple(entry.get("crons", ()))
        entry["outputs"] = tuple(entry.get("outputs", ()))
        dags[dag_id] = Dag(dag_id=dag_id, **entry)
    return rules, dags


RULES, DAGS = _load()


def rule_title(code: str) -> str:
    rule = RULES.get(code)
    return rule.title if rule else code


def dag_title(dag_id: str) -> str:
    dag = DAGS.get(dag_id)
    return dag.title if dag else dag_id


def rule_units(code: str) -> tuple[str, str]:
    """(metric unit, threshold unit) of a rule's figures; ("", "") for an unknown code."""
    rule = RULES.get(code)
    return rule.units if rule else ("", "")


def rule_actor(code: str) -> str:
    rule = RULES.get(code)
    return rule.actor if rule else INSTITUTION


def routed_to_city(rule_code: str, severity: str) -> bool:
    """The city bureau receives every critical alert and the rules routed to it."""
    rule = RULES.get(rule_code)
    return severity == "critical" or bool(rule and rule.to_city)


def rule_table_md(dag_id: str) -> str:
    """The rule table of a DAG's ``doc_md``: code, title, subject, severity."""
    lines = ["| 规则代码 code | 名称 | 预警对象 | 严重程度 severity |", "| --- | --- | --- | --- |"]
    for rule in DAGS[dag_id].rules:
        severities = " / ".join(f"{SEVERITY_ZH[s]} {s}" for s in sorted(
            set(rule.severities.values()), key=SEVERITY_ORDER.__getitem__, reverse=True))
        lines.append(f"| `{rule.code}` | {rule.title} | {rule.subject} | {severities} |")
    return "\n".join(lines)
