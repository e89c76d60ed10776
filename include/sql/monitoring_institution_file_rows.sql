-- The institution file (一院一档) of :period for the execution report's second sheet
-- (the view institution_file: the metrics with their agreement's period and ratio, names).
-- Params: :period, :branch_code (NULL = all).
SELECT f.branch_code, f.institution_code, f.institution_name, f.batch_code, f.batch_name,
       f.generic_name, f.agreement_id, f.period_start, f.period_end, f.as_of_date,
       f.agreed_quantity, f.agreed_ratio, f.selected_quantity, f.selected_amount,
       f.same_generic_quantity, f.same_generic_amount, f.selected_quantity_share,
       f.selected_amount_share, f.non_selected_quantity, f.non_selected_amount,
       f.cumulative_selected_quantity, f.completion_rate, f.time_progress
FROM institution_file f
WHERE f.period = :period
  AND (:branch_code IS NULL OR f.branch_code = :branch_code)
ORDER BY f.branch_code, f.institution_code, f.batch_code, f.generic_name, f.period_start
