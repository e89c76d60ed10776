-- The institution file (一院一档) of :period for the execution report's second sheet
-- (the view institution_file: the metrics with their agreement's period and ratio, names).
-- The columns in the sheet's order. The ratios as NUMERIC(12, 6), what the table holds (no
-- work for PostgreSQL, nothing on SQLite): 6 places rounded half away from zero, the
-- report's formatting.stored, so the report writes PostgreSQL's figures as they come.
-- Params: :period, :branch_code (NULL = all).
SELECT f.branch_code, f.institution_code, f.institution_name, f.batch_code, f.batch_name,
       f.generic_name, f.agreement_id, f.period_start, f.period_end, f.as_of_date,
       f.agreed_quantity, CAST(f.agreed_ratio AS NUMERIC(12, 6)) AS agreed_ratio,
       f.selected_quantity, f.selected_amount, f.same_generic_quantity, f.same_generic_amount,
       CAST(f.selected_quantity_share AS NUMERIC(12, 6)) AS selected_quantity_share,
       CAST(f.selected_amount_share AS NUMERIC(12, 6)) AS selected_amount_share,
       f.non_selected_quantity, f.non_selected_amount, f.cumulative_selected_quantity,
       CAST(f.completion_rate AS NUMERIC(12, 6)) AS completion_rate,
       CAST(f.time_progress AS NUMERIC(12, 6)) AS time_progress
FROM institution_file f
WHERE f.period = :period
  AND (:branch_code IS NULL OR f.branch_code = :branch_code)
ORDER BY f.branch_code, f.institution_code, f.batch_code, f.generic_name, f.period_start
