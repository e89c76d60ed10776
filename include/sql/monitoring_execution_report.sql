-- 带量执行报表 (seed 002 §二(三)): per institution × batch × agreement year, from the
-- institution file (一院一档) of :period and the purchase facts of M.
--   agreements        number of agreed generic names (agreements)
--   zero_purchase     no selected purchase since period_start
--   below_progress    some selected purchase, completion rate < time progress
--   on_track          completion rate >= time progress, not above the agreed quantity
--   over_agreed       cumulative selected quantity above the agreed quantity
--   non_selected_products  distinct products of the agreed generic names bought in M
--                     (any channel, within the agreement year) that are not selected in
--                     the batch
-- Completion vs progress is cumulative × total_days vs elapsed_days × agreed (see
-- monitoring_agreement_alerts.sql). The facts stay the outer loop in SQLite
-- ("purchase_facts f CROSS JOIN …"). Params: :period, :month_start, :eps, :branch_code.
WITH file_rows AS (
    SELECT f.*,
           CASE WHEN f.period_start > :month_start THEN f.period_start ELSE :month_start END AS from_day
    FROM institution_file f  -- the view: metrics with agreement period/ratio and names
    WHERE f.period = :period
      AND (:branch_code IS NULL OR f.branch_code = :branch_code)
),
classified AS (
    SELECT fr.*,
           CASE
               WHEN fr.cumulative_selected_quantity <= :eps THEN 'zero'
               WHEN fr.cumulative_selected_quantity > fr.agreed_quantity * (1 + :eps) THEN 'over'
               WHEN fr.cumulative_selected_quantity * fr.total_days
                    < (1 - :eps) * fr.elapsed_days * fr.agreed_quantity THEN 'below'
               ELSE 'on_track'
           END AS progress_class
    FROM file_rows fr
),
non_selected AS (
    SELECT fr.institution_code, fr.batch_code, fr.period_start,
           COUNT(DISTINCT f.product_code) AS non_selected_products
    FROM purchase_facts f
    CROSS JOIN products p
    CROSS JOIN file_rows fr
    WHERE f.month_start = :month_start
      AND p.product_code = f.product_code
      AND fr.institution_code = f.institution_code
      AND fr.generic_name = p.generic_name
      AND f.segment_start >= fr.from_day
      AND f.segment_start <= fr.as_of_date
      AND NOT (p.is_selected = TRUE AND p.batch_code = fr.batch_code)
    GROUP BY fr.institution_code, fr.batch_code, fr.period_start
),
summary AS (
    SELECT c.branch_code, c.institution_code, c.batch_code, c.period_start, c.period_end,
           c.as_of_date,
           MAX(c.time_progress) AS time_progress,
           COUNT(*) AS agreements,
           SUM(CASE WHEN c.progress_class = 'zero' THEN 1 ELSE 0 END) AS zero_purchase,
           SUM(CASE WHEN c.progress_class = 'below' THEN 1 ELSE 0 END) AS below_progress,
           SUM(CASE WHEN c.progress_class = 'on_track' THEN 1 ELSE 0 END) AS on_track,
           SUM(CASE WHEN c.progress_class = 'over' THEN 1 ELSE 0 END) AS over_agreed,
           SUM(c.selected_amount) AS selected_amount,
           SUM(c.non_selected_amount) AS non_selected_amount
    FROM classified c
    GROUP BY c.branch_code, c.institution_code, c.batch_code, c.period_start, c.period_end,
             c.as_of_date
)
SELECT s.branch_code, br.branch_name, s.institution_code, i.institution_name, i.ownership,
       s.batch_code, b.batch_name, s.period_start, s.period_end, s.as_of_date, s.time_progress,
       s.agreements, s.zero_purchase, s.below_progress, s.on_track, s.over_agreed,
       COALESCE(ns.non_selected_products, 0) AS non_selected_products,
       s.selected_amount, s.non_selected_amount
FROM summary s
JOIN institutions i ON i.institution_code = s.institution_code
JOIN batches b ON b.batch_code = s.batch_code
LEFT JOIN branches br ON br.branch_code = s.branch_code
LEFT JOIN non_selected ns
  ON ns.institution_code = s.institution_code
 AND ns.batch_code = s.batch_code
 AND ns.period_start = s.period_start
ORDER BY s.branch_code, s.institution_code, s.batch_code, s.period_start
