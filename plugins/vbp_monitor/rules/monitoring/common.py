"""What the monthly-monitoring rule families share: the profile's ``[monitoring]`` section,
the message frame (title, subject, citation) and the candidate alert."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.formatting import decimal_of
from vbp_monitor.core.profiles import cite

DAG_ID = "vbp_monthly_monitoring"
# Relative tolerance of the SQL comparisons: SQLite computes in binary floats, so a value
# exactly at a threshold must not alert because of a float's last bit.
EPS = 1e-9
# metric_value / threshold_value of the ratio rules are kept to 4 places (examples.md 2:
# 0.8 × 144/365 → 0.3156); a measured ratio below its line is rounded down.
RATIO_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class MonitoringSettings:
    """The profile's ``[monitoring]`` section, typed (thresholds stay Decimal)."""

    warning_ratio: Decimal
    high_ratio: Decimal
    min_time_progress: Decimal
    online_rate_thresholds: dict[str, Decimal]
    filing_working_days: int
    min_evaluated_manufacturers: int
    private_payment_days: int
    # a blank sanction_end: the sanction lasts this many years (seed 004 §二(二): two)
    sanction_years: int
    # RECTIFICATION_OVERDUE after this many consecutive months with an open alert
    rectification_months: int
    profile: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_profile(cls, profile: dict) -> MonitoringSettings:
        section = profile["monitoring"]
        rule = section.get("public_payment_rule", "end_of_next_month")
        if rule != "end_of_next_month":
            raise ValueError(f"profile [monitoring] public_payment_rule {rule!r} is not supported")
        # runs of months are counted back at most 12 months (domain.md RECTIFICATION_OVERDUE)
        if not 1 <= int(section.get("rectification_months", 3)) <= 12:
            raise ValueError("profile [monitoring] rectification_months must be between 1 and 12")
        if int(section.get("sanction_years", 2)) < 1:
            raise ValueError("profile [monitoring] sanction_years must be at least 1")
        return cls(
            warning_ratio=decimal_of(section["progress_warning_ratio"]),
            high_ratio=decimal_of(section["progress_high_ratio"]),
            min_time_progress=decimal_of(section["progress_min_time_progress"]),
            online_rate_thresholds={key: decimal_of(value)
                                    for key, value in section["online_rate_thresholds"].items()},
            filing_working_days=int(section["offline_filing_working_days"]),
            min_evaluated_manufacturers=int(section["min_evaluated_manufacturers"]),
            private_payment_days=int(section["private_payment_days"]),
            sanction_years=int(section.get("sanction_years", 2)),
            rectification_months=int(section.get("rectification_months", 3)),
            profile=profile,
        )

    def message(self, code: str, subject: str, body: str, variant: str | None = None) -> str:
        """``【按月监测·title】subject：body依据：clause。`` — the clause as applied to the case."""
        return f"【按月监测·{RULES[code].title}】{subject}：{body}依据：{cite(self.profile, code, variant)}。"


def institution_label(row: dict) -> str:
    return f"{row['institution_name']}（{row['institution_code']}）"


def product_label(row: dict) -> str:
    return f"{row['generic_name'] or row['product_code']}（{row['product_code']}）"


def candidate(code: str, row: dict, message: str, metric, threshold, severity: str | None = None,
              **subject) -> dict:
    """A candidate alert of ``code`` about ``row``'s institution (unless ``subject`` says
    otherwise); the severity is the catalog's."""
    return {
        "rule_code": code, "severity": severity or RULES[code].severity,
        "branch_code": row["branch_code"], "institution_code": row.get("institution_code"),
        "metric_value": metric, "threshold_value": threshold, "message": message, **subject,
    }
