-- 年度考核 · 分局网采率 (domain.md DAG 8, seed 002 附件1): per branch and category, the
-- online purchase rate over the judged year Y on the summed amounts of the branch's public
-- institutions (platform amount ÷ total amount, not cancelled, order day in Y). Every branch
-- × category with purchases is listed; below = 1 when the platform amount <
-- (min_rate − :eps) × the total amount (:drug_min_rate, :hvc_min_rate; NULL = not judged).
-- Params: :year_start, :year_end, :drug_min_rate, :hvc_min_rate, :eps, :branch_code.
WITH min_rates AS (
    SELECT 'drug' AS category, :drug_min_rate AS min_rate
    UNION ALL
    SELECT 'high_value_consumable', :hvc_min_rate
),
amounts AS (
    SELECT i.branch_code, p.category,
           SUM(CASE WHEN o.channel = 'platform' THEN o.amount ELSE 0 END) AS platform_amount,
           SUM(o.amount) AS total_amount,
           COUNT(DISTINCT o.institution_code) AS institution_count
    FROM orders o
    JOIN institutions i ON i.institution_code = o.institution_code
    JOIN products p ON p.product_code = o.product_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= :year_start
      AND o.order_date <= :year_end
      AND i.ownership = 'public'
      AND p.category IN ('drug', 'high_value_consumable')
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
    GROUP BY i.branch_code, p.category
)
SELECT a.branch_code, br.branch_name, a.category, a.platform_amount, a.total_amount,
       a.institution_count, mr.min_rate,
       CASE WHEN mr.min_rate IS NOT NULL AND a.total_amount > :eps
                 AND a.platform_amount < (mr.min_rate - :eps) * a.total_amount
            THEN 1 ELSE 0 END AS below
FROM amounts a
JOIN min_rates mr ON mr.category = a.category
JOIN branches br ON br.branch_code = a.branch_code
ORDER BY a.branch_code, CASE WHEN a.category = 'drug' THEN 0 ELSE 1 END
