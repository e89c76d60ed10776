-- 年度报告草稿 · 一、总体进展: online purchase rate (网采率, by amount) of each branch's
-- public institutions over the report year, per category with a threshold (seed 002
-- 附件1): purchases = order lines not cancelled, dated in [:year_start, :year_end].
SELECT i.branch_code, p.category,
       SUM(CASE WHEN o.channel = 'platform' THEN o.amount ELSE 0 END) AS platform_amount,
       SUM(o.amount) AS total_amount
FROM orders o
JOIN institutions i ON i.institution_code = o.institution_code
JOIN products p ON p.product_code = o.product_code
WHERE i.branch_code IN :branch_codes
  AND i.ownership = 'public'
  AND o.cancelled = FALSE
  AND o.order_date >= :year_start
  AND o.order_date <= :year_end
  AND p.category IN :categories
GROUP BY i.branch_code, p.category
