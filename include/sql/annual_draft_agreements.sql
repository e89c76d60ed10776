-- 年度报告草稿 · 一、总体进展: agreements of each branch's institutions whose agreement
-- year overlaps the report year [:year_start, :year_end].
SELECT i.branch_code,
       COUNT(*) AS agreements,
       COUNT(DISTINCT a.batch_code) AS batches,
       COUNT(DISTINCT a.generic_name) AS generic_names,
       SUM(a.agreed_amount) AS agreed_amount
FROM agreements a
JOIN institutions i ON i.institution_code = a.institution_code
WHERE i.branch_code IN :branch_codes
  AND a.period_start <= :year_end
  AND a.period_end >= :year_start
GROUP BY i.branch_code
