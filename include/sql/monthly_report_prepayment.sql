-- 月度工作进展报告 三、回款与预付: the prepayment milestones of M per branch, from the ledger
-- vbp_prepayment_reconciliation wrote (one row per institution × batch × agreement year ×
-- milestone whose milestone day falls in M).
-- Params: :first_day, :last_day, :branch_code (NULL = every branch).
SELECT l.branch_code,
       COUNT(*) AS subjects,
       SUM(l.agreed_amount_total) AS agreed_amount_total,
       SUM(l.required_disbursement) AS required_disbursement,
       SUM(l.disbursed) AS disbursed,
       SUM(l.required_recovery) AS required_recovery,
       SUM(l.recovered) AS recovered
FROM prepayment_ledger l
WHERE l.milestone_day >= :first_day
  AND l.milestone_day <= :last_day
  AND (:branch_code IS NULL OR l.branch_code = :branch_code)
GROUP BY l.branch_code
ORDER BY l.branch_code
