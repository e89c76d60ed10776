-- 月度工作进展报告 一、总体情况 (domain.md DAG 7): per branch bureau, the institution-file
-- figures of M as vbp_monthly_monitoring wrote them (一院一档) and the PROGRESS_BEHIND
-- alerts it raised for M. Nothing is judged again here: "behind" and "high" are the
-- alerts' own severities; an agreement with an agreed quantity and no such alert is on track.
-- Completion and time progress of a branch are weighted by agreed quantity:
-- Σ cumulative selected ÷ Σ agreed, Σ (time progress × agreed) ÷ Σ agreed.
-- Params: :period ('YYYY-MM'), :branch_code (NULL = every branch).
WITH files AS (
    SELECT f.branch_code,
           COUNT(DISTINCT f.institution_code) AS institutions,
           COUNT(*) AS agreements,
           SUM(CASE WHEN f.agreed_quantity > 0 THEN 1 ELSE 0 END) AS agreements_with_quantity,
           SUM(CASE WHEN f.agreed_quantity > 0 THEN f.agreed_quantity ELSE 0 END) AS agreed_quantity,
           SUM(CASE WHEN f.agreed_quantity > 0 THEN f.cumulative_selected_quantity ELSE 0 END)
               AS cumulative_selected_quantity,
           SUM(CASE WHEN f.agreed_quantity > 0 THEN f.time_progress * f.agreed_quantity ELSE 0 END)
               AS progress_weighted_quantity,
           SUM(f.selected_quantity) AS selected_quantity,
           SUM(f.same_generic_quantity) AS same_generic_quantity
    FROM institution_file_metrics f
    WHERE f.period = :period
      AND (:branch_code IS NULL OR f.branch_code = :branch_code)
    GROUP BY f.branch_code
),
behind AS (
    SELECT a.branch_code,
           SUM(CASE WHEN a.severity = 'warning' THEN 1 ELSE 0 END) AS agreements_behind,
           SUM(CASE WHEN a.severity = 'high' THEN 1 ELSE 0 END) AS agreements_behind_high
    FROM alerts a
    WHERE a.rule_code = 'PROGRESS_BEHIND'
      AND a.dag_id = 'vbp_monthly_monitoring'
      AND a.period = :period
      AND a.status = 'open'
      AND (:branch_code IS NULL OR a.branch_code = :branch_code)
    GROUP BY a.branch_code
)
SELECT b.branch_code, b.branch_name,
       COALESCE(f.institutions, 0) AS institutions,
       COALESCE(f.agreements, 0) AS agreements,
       COALESCE(f.agreements_with_quantity, 0) AS agreements_with_quantity,
       COALESCE(f.agreed_quantity, 0) AS agreed_quantity,
       COALESCE(f.cumulative_selected_quantity, 0) AS cumulative_selected_quantity,
       COALESCE(f.progress_weighted_quantity, 0) AS progress_weighted_quantity,
       COALESCE(f.selected_quantity, 0) AS selected_quantity,
       COALESCE(f.same_generic_quantity, 0) AS same_generic_quantity,
       COALESCE(h.agreements_behind, 0) AS agreements_behind,
       COALESCE(h.agreements_behind_high, 0) AS agreements_behind_high
FROM branches b
LEFT JOIN files f ON f.branch_code = b.branch_code
LEFT JOIN behind h ON h.branch_code = b.branch_code
WHERE b.level = 'branch'
  AND (:branch_code IS NULL OR b.branch_code = :branch_code)
ORDER BY b.branch_code
