-- SELECTED_PRICE_EXCEEDED (domain.md DAG 2 continued; seed 002 §二(五), seed 000 item 4):
-- institution × product × M. Purchases dated in M (order lines not cancelled, any channel)
-- of a selected product at a unit price above its selected price: the selected maker must
-- keep supplying at the selected price, beyond the agreed volume too, until the cycle ends.
--   A product selected in M is one whose batch's cycle covers M; a line counts when its
--   own day lies in the cycle (start_date … cycle_end_date): in the month a batch lands,
--   the days before the landing were bought at the old price and are not judged.
--   metric = the highest unit price paid, threshold = the selected price; lines, quantity
--   and the excess amount Σ (unit_price − selected_price) × quantity are over the lines
--   above the price. A line exactly at the selected price is not above it (:eps: SQLite
--   compares binary floats).
-- Read from the order lines of M (by order_date): a line's own day is needed, which the
-- monthly facts (segments at agreement boundaries) do not keep.
-- Params: :month_start, :month_end, :eps, :branch_code.
SELECT o.institution_code, i.institution_name, i.branch_code, o.product_code, p.generic_name,
       p.manufacturer, p.batch_code, p.selected_price,
       COUNT(*) AS line_count,
       SUM(o.quantity) AS quantity,
       SUM(o.amount) AS amount,
       MAX(o.unit_price) AS highest_unit_price,
       SUM((o.unit_price - p.selected_price) * o.quantity) AS excess_amount
FROM orders o
JOIN products p ON p.product_code = o.product_code
JOIN batches b ON b.batch_code = p.batch_code
JOIN institutions i ON i.institution_code = o.institution_code
WHERE o.order_date >= :month_start
  AND o.order_date <= :month_end
  AND o.cancelled = FALSE
  AND p.is_selected = TRUE
  AND o.order_date >= b.start_date
  AND o.order_date <= b.cycle_end_date
  AND o.unit_price > p.selected_price + :eps
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
GROUP BY o.institution_code, i.institution_name, i.branch_code, o.product_code, p.generic_name,
         p.manufacturer, p.batch_code, p.selected_price
ORDER BY i.branch_code, o.institution_code, o.product_code
