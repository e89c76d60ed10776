"""Print what the demo produced: alerts per rule and branch, emails and spreadsheets."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from vbp_monitor.core import config
from vbp_monitor.core.catalog import RULES, rule_title
from vbp_monitor.core.db import get_engine
from vbp_monitor.model.schema import alert_deliveries, alerts, branches, quarantine


def main(outbox: str) -> int:
    engine = get_engine()
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.rule_code, alerts.c.branch_code, func.count())
            .where(alerts.c.status == "open")
            .group_by(alerts.c.rule_code, alerts.c.branch_code)
        ).all()
        names = dict(conn.execute(select(branches.c.branch_code, branches.c.branch_name)).all())
        unsent = conn.execute(select(func.count()).select_from(alerts).where(
            alerts.c.status == "open", alerts.c.notified_at.is_(None))).scalar()
        deliveries = conn.execute(select(func.count()).select_from(alert_deliveries)).scalar()
        quarantined = conn.execute(select(func.count()).select_from(quarantine)).scalar()
    per_rule, per_branch = Counter(), Counter()
    for rule_code, branch_code, count in rows:
        per_rule[rule_code] += count
        per_branch[branch_code] += count
    print("\n=== 预警汇总 alerts per rule (open) ===")
    for code in RULES:
        print(f"  {code:<32} {per_rule.get(code, 0):>5}  {rule_title(code)}")
    missing = [code for code in RULES if not per_rule.get(code)]
    print("\n=== 各分局 alerts per branch ===")
    for branch_code, count in sorted(per_branch.items()):
        print(f"  {branch_code:<10} {names.get(branch_code, ''):<16} {count:>5}")
    emails = sorted(Path(outbox).glob("*.eml"))
    outputs = sorted(p for p in config.output_dir().rglob("*") if p.is_file())
    print(f"\nalerts open: {sum(per_rule.values())}, not yet notified: {unsent}, deliveries: {deliveries}, "
          f"quarantined rows: {quarantined}")
    print(f"emails: {len(emails)} .eml files in {outbox}")
    print(f"spreadsheets and drafts: {len(outputs)} files in {config.output_dir()}")
    for path in outputs[:8]:
        print(f"  {path.relative_to(config.output_dir())}")
    if len(outputs) > 8:
        print(f"  … and {len(outputs) - 8} more")
    print(f"warehouse: {config.warehouse_url()}")
    if missing:
        print(f"\nrule codes without an alert: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "data/outbox"))
