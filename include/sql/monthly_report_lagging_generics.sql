-- 月度工作进展报告 四、飞检线索 (品种): the generic names with the lowest city-wide completion
-- against time progress in M, from the institution file (一院一档) of M, over agreements
-- with an agreed quantity: completion = Σ cumulative selected ÷ Σ agreed, time progress
-- weighted by agreed quantity = Σ (time progress × agreed) ÷ Σ agreed; ranked by
-- completion ÷ time progress = Σ cumulative selected ÷ Σ (time progress × agreed), lowest
-- first (ties: generic name). Only generic names whose agreement years have begun.
-- Params: :period, :generic_limit, :branch_code (NULL = every branch).
WITH by_generic AS (
    SELECT f.generic_name,
           COUNT(*) AS agreements,
           COUNT(DISTINCT f.institution_code) AS institutions,
           SUM(f.agreed_quantity) AS agreed_quantity,
           SUM(f.cumulative_selected_quantity) AS cumulative_selected_quantity,
           SUM(f.time_progress * f.agreed_quantity) AS progress_weighted_quantity
    FROM institution_file_metrics f
    WHERE f.period = :period
      AND f.agreed_quantity > 0
      AND (:branch_code IS NULL OR f.branch_code = :branch_code)
    GROUP BY f.generic_name
)
SELECT g.generic_name, g.agreements, g.institutions, g.agreed_quantity, g.cumulative_selected_quantity,
       g.progress_weighted_quantity
FROM by_generic g
WHERE g.progress_weighted_quantity > 0
ORDER BY g.cumulative_selected_quantity * 1.0 / g.progress_weighted_quantity, g.generic_name
LIMIT :generic_limit
