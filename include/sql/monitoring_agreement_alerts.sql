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
    SELECT m.agreement_id, m.institution_code, i.institution_name, m.branch_code, m.batch_code,
           b.batch_name, m.generic_name, a.period_start, a.period_end, m.as_of_date,
           m.agreed_quantity, a.agreed_ratio, m.selected_quantity, m.same_generic_quantity,
           m.cumulative_selected_quantity, m.elapsed_days, m.total_days
    FROM institution_file_metrics m
    JOIN agreements a ON a.agreement_id = m.agreement_id
    JOIN institutions i ON i.institution_code = m.institution_code
    JOIN batches b ON b.batch_code = m.batch_code
    WHERE m.period = :period
      AND (:branch_code IS NULL OR m.branch_code = :branch_code)
      AND (:batch_code IS NULL OR m.batch_code = :batch_code)
)
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
ORDER BY j.branch_code, j.institution_code, j.batch_code, j.generic_name, j.period_start
