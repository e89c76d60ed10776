-- 年度报告草稿 · 一、总体进展: agreed-volume completion from 一院一档
-- (institution_file_metrics) of each branch's latest month of the report year (December
-- when the monthly monitoring ran for it). Agreements are counted, never their quantities
-- summed: generic names are measured in different units (tablets, vials, pieces).
-- Over agreements with an agreed quantity: completed (completion rate ≥ 1), on track
-- (time progress ≤ rate < 1) and behind time progress (rate < time progress); :eps lets a
-- value exactly at the mark count as met.
SELECT m.branch_code, m.period,
       MAX(m.as_of_date) AS as_of_date,
       COUNT(*) AS agreements,
       SUM(CASE WHEN m.agreed_quantity > 0 THEN 1 ELSE 0 END) AS agreements_with_quantity,
       SUM(CASE WHEN m.agreed_quantity > 0 AND m.completion_rate IS NOT NULL
                     AND m.completion_rate >= 1 - :eps
                THEN 1 ELSE 0 END) AS agreements_completed,
       SUM(CASE WHEN m.agreed_quantity > 0 AND m.completion_rate IS NOT NULL
                     AND m.completion_rate < 1 - :eps AND m.completion_rate + :eps >= m.time_progress
                THEN 1 ELSE 0 END) AS agreements_on_track,
       SUM(CASE WHEN m.agreed_quantity > 0 AND m.completion_rate IS NOT NULL
                     AND m.completion_rate < 1 - :eps AND m.completion_rate + :eps < m.time_progress
                THEN 1 ELSE 0 END) AS agreements_behind_time
FROM institution_file_metrics m
WHERE m.branch_code IN :branch_codes
  AND m.period = (
        SELECT MAX(latest.period) FROM institution_file_metrics latest
        WHERE latest.branch_code = m.branch_code
          AND latest.period >= :first_month
          AND latest.period <= :last_month)
GROUP BY m.branch_code, m.period
