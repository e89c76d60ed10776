-- NON_SELECTED_HIGH_PRICE / ONLY_NON_SELECTED (domain.md DAG 2, seed 002 §二(三)):
-- institution × generic name × M, from the purchase facts of M (every segment, any channel).
--   selected in M    = is_selected and its batch's cycle covers M
--                      (start_date <= last day of M and cycle_end_date >= first day of M)
--   price cap        = the highest selected price of the generic among products selected in M
--   high-priced      = purchases in M of products non-selected in M of such a generic at a
--                      unit price above the cap; metric = their amount
--   ONLY_NON_SELECTED replaces NON_SELECTED_HIGH_PRICE for the subject when, besides, the
--   institution has no agreement for the generic active in M in a batch whose cycle covers
--   M, and no platform purchase in M of a product of the generic selected in M.
-- Facts-driven joins are written "purchase_facts f CROSS JOIN …": SQLite then keeps the
-- month's facts as the outer loop (one scan) whatever its statistics say; PostgreSQL
-- plans them as ordinary joins.
-- Params: :month_start, :month_end, :eps, :branch_code.
WITH selected_in_month AS (
    SELECT p.product_code, p.generic_name, p.selected_price
    FROM products p
    JOIN batches b ON b.batch_code = p.batch_code
    WHERE p.is_selected = TRUE
      AND b.start_date <= :month_end
      AND b.cycle_end_date >= :month_start
),
price_caps AS (
    SELECT generic_name, MAX(selected_price) AS highest_selected_price
    FROM selected_in_month
    GROUP BY generic_name
),
by_subject AS (
    -- one pass over M's facts of generics with a price cap: the high-priced non-selected
    -- purchases, and whether the institution bought a selected-in-M product on the platform
    SELECT f.institution_code, p.generic_name, pc.highest_selected_price,
           SUM(CASE WHEN s.product_code IS NULL THEN f.quantity ELSE 0 END) AS quantity,
           SUM(CASE WHEN s.product_code IS NULL THEN f.amount ELSE 0 END) AS amount,
           MAX(CASE WHEN s.product_code IS NULL THEN f.unit_price END) AS highest_unit_price,
           COUNT(DISTINCT CASE WHEN s.product_code IS NULL THEN f.product_code END) AS product_count,
           SUM(CASE WHEN s.product_code IS NULL THEN 1 ELSE 0 END) AS high_priced_facts,
           MAX(CASE WHEN s.product_code IS NULL THEN 0 ELSE 1 END) AS bought_selected_on_platform
    FROM purchase_facts f
    CROSS JOIN products p
    CROSS JOIN price_caps pc
    LEFT JOIN selected_in_month s ON s.product_code = f.product_code
    WHERE f.month_start = :month_start
      AND p.product_code = f.product_code
      AND pc.generic_name = p.generic_name
      AND ((s.product_code IS NULL AND f.unit_price > pc.highest_selected_price + :eps)
           OR (s.product_code IS NOT NULL AND f.channel = 'platform'))
    GROUP BY f.institution_code, p.generic_name, pc.highest_selected_price
)
SELECT h.institution_code, i.institution_name, i.branch_code, i.ownership, h.generic_name,
       h.highest_selected_price, h.quantity, h.amount, h.highest_unit_price, h.product_count,
       CASE
           WHEN h.bought_selected_on_platform = 0
            AND NOT EXISTS (
                    SELECT 1
                    FROM agreements a
                    JOIN batches b ON b.batch_code = a.batch_code
                    WHERE a.institution_code = h.institution_code
                      AND a.generic_name = h.generic_name
                      AND a.period_start <= :month_end
                      AND a.period_end >= :month_start
                      AND b.start_date <= :month_end
                      AND b.cycle_end_date >= :month_start)
           THEN 'ONLY_NON_SELECTED'
           ELSE 'NON_SELECTED_HIGH_PRICE'
       END AS rule_code
FROM by_subject h
JOIN institutions i ON i.institution_code = h.institution_code
WHERE h.high_priced_facts > 0
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, h.institution_code, h.generic_name
