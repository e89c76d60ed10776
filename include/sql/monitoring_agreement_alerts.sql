-- PROGRESS_BEHIND and SELECTED_SHARE_LOW (domain.md DAG 2, seed 002 §二(三)): agreement × M,
-- read from the institution file (一院一档) the same run just wrote for :period.
--   PROGRESS_BEHIND: agreed_quantity > 0, time progress >= :min_progress, and
--     completion < :warning_ratio × time progress: progress_line = 'warning_ratio', or
--     'high_ratio' when < :high_ratio × time progress (the more severe line wins; the
--     catalog maps each line to its severity); NULL when neither line is broken.
--     completion = cumulative / agreed, progress = elapsed_days / total_days: compared by
--     cross-multiplication, cumulative × total_days < ratio × elapsed_days × agreed; the
--     tolerance :eps is taken off the ratio (relative), so a value exactly at a threshold
--     never alerts on either database, whatever the size of the figures. The ratios come
--     in as floats on both databases (SQLite's driver binds no Decimal).
--   SELECTED_SHARE_LOW: same-generic quantity in M > 0 and selected quantity in M <
--     agreed_ratio × same-generic quantity in M.
-- Params: :period, :min_progress, :warning_ratio, :high_ratio, :eps, :branch_code, :batch_code.
WITH judged AS (
    SELECT f.agreement_id, f.institution_code, f.institution_name, f.branch_code, f.batch_code,
           f.batch_name, f.generic_name, f.period_start, f.period_end, f.as_of_date,
           f.agreed_quantity, f.agreed_ratio, f.selected_quantity, f.same_generic_quantity,
           f.cumulative_selected_quantity, f.elapsed_days, f.total_days
    FROM institution_file f  -- the view: metrics with agreement period/ratio and names
    WHERE f.period = :period
      AND (:branch_code IS NULL OR f.branch_code = :branch_code)
      AND (:batch_code IS NULL OR f.batch_code = :batch_code)
),
flagged AS (
    SELECT j.*,
           -- the most severe progress line broken, judged once per row (NULL: none, or not judged)
           CASE
               WHEN j.agreed_quantity <= 0
                    OR j.elapsed_days < (:min_progress - :eps) * j.total_days THEN NULL
               WHEN j.cumulative_selected_quantity * j.total_days
                    < (:high_ratio - :eps) * j.elapsed_days * j.agreed_quantity THEN 'high_ratio'
               WHEN j.cumulative_selected_quantity * j.total_days
                    < (:warning_ratio - :eps) * j.elapsed_days * j.agreed_quantity THEN 'warning_ratio'
           END AS progress_line,
           CASE
               WHEN j.same_generic_quantity > 0
                    AND j.selected_quantity < (j.agreed_ratio - :eps) * j.same_generic_quantity
                   THEN 1 ELSE 0
           END AS share_low
    FROM judged j
)
-- only the agreements that break a line leave the database
SELECT *
FROM flagged
WHERE progress_line IS NOT NULL
   OR share_low = 1
ORDER BY branch_code, institution_code, batch_code, generic_name, period_start
