-- 月度工作进展报告 一、总体情况: online purchase rate per branch and category in M, on the
-- summed platform and total amounts of the branch's public institutions (the figures of
-- BRANCH_ONLINE_RATE_LOW, from the purchase facts vbp_monthly_monitoring built for M).
-- Params: :month_start, :categories, :branch_code (NULL = every branch).
WITH by_category AS (
    SELECT f.institution_code, p.category,
           SUM(CASE WHEN f.channel = 'platform' THEN f.amount ELSE 0 END) AS platform_amount,
           SUM(f.amount) AS total_amount
    FROM purchase_facts f
    JOIN products p ON p.product_code = f.product_code
    WHERE f.month_start = :month_start
      AND p.category IN :categories
    GROUP BY f.institution_code, p.category
)
SELECT i.branch_code, c.category,
       COUNT(*) AS institutions,
       SUM(c.platform_amount) AS platform_amount,
       SUM(c.total_amount) AS total_amount
FROM by_category c
JOIN institutions i ON i.institution_code = c.institution_code
WHERE i.ownership = 'public'
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
GROUP BY i.branch_code, c.category
ORDER BY i.branch_code, c.category
