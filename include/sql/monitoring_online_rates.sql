-- ONLINE_RATE_LOW / BRANCH_ONLINE_RATE_LOW (domain.md DAG 2, seed 002 §二(四), 附件1):
-- online purchase rate = platform amount / (platform + off-platform amount) in M, by the
-- product's category, from the facts of M; public institutions only.
--   level 'institution': public institution × category
--   level 'branch'     : branch × category, on the summed amounts of its public institutions
-- Only where the category's total amount in M > 0; below the profile's minimum rate
-- (:drug_min_rate, :hvc_min_rate; NULL = no rule for the category), compared as
-- platform < (min_rate - :eps) × total.
-- The facts stay the outer loop in SQLite ("purchase_facts f CROSS JOIN …").
-- Params: :month_start, :drug_min_rate, :hvc_min_rate, :eps, :branch_code.
WITH min_rates AS (
    SELECT 'drug' AS category, :drug_min_rate AS min_rate
    UNION ALL
    SELECT 'high_value_consumable', :hvc_min_rate
),
-- one pass over M's facts, summed per institution and category; the institution (public,
-- in the branch scope) is looked up once per sum, not once per fact row
by_category AS (
    SELECT f.institution_code, p.category,
           SUM(CASE WHEN f.channel = 'platform' THEN f.amount ELSE 0 END) AS platform_amount,
           SUM(f.amount) AS total_amount
    FROM purchase_facts f
    CROSS JOIN products p
    WHERE f.month_start = :month_start
      AND p.product_code = f.product_code
      AND p.category IN ('drug', 'high_value_consumable')
    GROUP BY f.institution_code, p.category
),
by_institution AS (
    SELECT i.branch_code, c.institution_code, c.category, c.platform_amount, c.total_amount
    FROM by_category c
    JOIN institutions i ON i.institution_code = c.institution_code
    WHERE i.ownership = 'public'
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
),
by_branch AS (
    SELECT branch_code, category, SUM(platform_amount) AS platform_amount,
           SUM(total_amount) AS total_amount, COUNT(*) AS institution_count
    FROM by_institution
    GROUP BY branch_code, category
),
rates AS (
    SELECT 'institution' AS level, bi.branch_code, bi.institution_code, bi.category,
           bi.platform_amount, bi.total_amount, 1 AS institution_count
    FROM by_institution bi
    UNION ALL
    SELECT 'branch', bb.branch_code, NULL, bb.category, bb.platform_amount, bb.total_amount,
           bb.institution_count
    FROM by_branch bb
)
SELECT r.level, r.branch_code, br.branch_name, r.institution_code, i.institution_name,
       r.category, r.platform_amount, r.total_amount, r.institution_count, mr.min_rate
FROM rates r
JOIN min_rates mr ON mr.category = r.category
JOIN branches br ON br.branch_code = r.branch_code
LEFT JOIN institutions i ON i.institution_code = r.institution_code
WHERE mr.min_rate IS NOT NULL
  AND r.total_amount > :eps
  AND r.platform_amount < (mr.min_rate - :eps) * r.total_amount
ORDER BY r.branch_code, r.level DESC, r.institution_code, r.category
