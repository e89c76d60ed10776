-- 年度报告草稿 · 二、具体工作落实情况: prepayment status per branch from the
-- reconciliation ledger: for every subject (institution × batch × agreement year) its
-- latest milestone dated in the report year [:year_start, :year_end], summed.
SELECT l.branch_code,
       COUNT(*) AS subjects,
       MAX(l.milestone_day) AS last_milestone_day,
       SUM(l.agreed_amount_total) AS agreed_amount_total,
       SUM(l.required_disbursement) AS required_disbursement,
       SUM(l.disbursed) AS disbursed,
       SUM(l.required_recovery) AS required_recovery,
       SUM(l.recovered) AS recovered
FROM prepayment_ledger l
WHERE l.branch_code IN :branch_codes
  AND l.milestone_day >= :year_start
  AND l.milestone_day <= :year_end
  AND NOT EXISTS (
        SELECT 1 FROM prepayment_ledger later
        WHERE later.institution_code = l.institution_code
          AND later.batch_code = l.batch_code
          AND later.period_start = l.period_start
          AND later.milestone_day > l.milestone_day
          AND later.milestone_day <= :year_end)
GROUP BY l.branch_code
