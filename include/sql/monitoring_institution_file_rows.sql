-- The institution file (一院一档) of :period for the execution report's second sheet.
-- Params: :period, :branch_code (NULL = all).
SELECT m.branch_code, m.institution_code, i.institution_name, m.batch_code, b.batch_name,
       m.generic_name, m.agreement_id, a.period_start, a.period_end, m.as_of_date,
       m.agreed_quantity, a.agreed_ratio, m.selected_quantity, m.selected_amount,
       m.same_generic_quantity, m.same_generic_amount, m.selected_quantity_share,
       m.selected_amount_share, m.non_selected_quantity, m.non_selected_amount,
       m.cumulative_selected_quantity, m.completion_rate, m.time_progress
FROM institution_file_metrics m
JOIN agreements a ON a.agreement_id = m.agreement_id
JOIN institutions i ON i.institution_code = m.institution_code
JOIN batches b ON b.batch_code = m.batch_code
WHERE m.period = :period
  AND (:branch_code IS NULL OR m.branch_code = :branch_code)
ORDER BY m.branch_code, m.institution_code, m.batch_code, m.generic_name, a.period_start
