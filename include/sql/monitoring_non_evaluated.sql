-- NON_EVALUATED_PURCHASE (domain.md DAG 2, seed 001 §五(一)4, seed 004): drugs only.
-- Institution × generic name × M: the generic has drug products of >= :min_makers distinct
-- manufacturers that passed consistency evaluation (过评), and the institution bought in M
-- (any channel, from the facts of M) drug products of that generic that did not pass.
-- Metric = the amount of those purchases (threshold 0): raised when it is above 0.
-- The facts stay the outer loop in SQLite ("purchase_facts f CROSS JOIN …").
-- Params: :month_start, :min_makers, :eps, :branch_code.
WITH evaluated_generics AS (
    SELECT p.generic_name, COUNT(DISTINCT p.manufacturer) AS evaluated_makers
    FROM products p
    WHERE p.category = 'drug'
      AND p.consistency_passed = TRUE
    GROUP BY p.generic_name
    HAVING COUNT(DISTINCT p.manufacturer) >= :min_makers
),
-- the products whose purchase counts: non-evaluated drug products of such a generic, found
-- once per product rather than per fact row
non_evaluated_products AS (
    SELECT p.product_code, p.generic_name, eg.evaluated_makers
    FROM products p
    JOIN evaluated_generics eg ON eg.generic_name = p.generic_name
    WHERE p.category = 'drug'
      AND p.consistency_passed = FALSE
),
purchases AS (
    SELECT f.institution_code, ne.generic_name, ne.evaluated_makers,
           SUM(f.quantity) AS quantity, SUM(f.amount) AS amount,
           COUNT(DISTINCT f.product_code) AS product_count
    FROM purchase_facts f
    CROSS JOIN non_evaluated_products ne
    WHERE f.month_start = :month_start
      AND ne.product_code = f.product_code
    GROUP BY f.institution_code, ne.generic_name, ne.evaluated_makers
)
SELECT pu.institution_code, i.institution_name, i.branch_code, pu.generic_name,
       pu.evaluated_makers, pu.quantity, pu.amount, pu.product_count
FROM purchases pu
JOIN institutions i ON i.institution_code = pu.institution_code
WHERE pu.amount > :eps
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, pu.institution_code, pu.generic_name
