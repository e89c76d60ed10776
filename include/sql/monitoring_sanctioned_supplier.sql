-- SANCTIONED_SUPPLIER_PURCHASE (domain.md DAG 2 continued; seed 004 §二(二)): public
-- institution × product × M. Purchases dated in M (order lines not cancelled, any channel)
-- by a public institution of a product whose manufacturer is on the sanction list on the
-- order day: sanction_start <= day <= sanction_end. metric = their amount (threshold 0).
--
-- A blank sanction_end means sanction_start + :sanction_years years − 1 day, i.e. the day
-- before add_months(start, 12 × years) (a day missing in the target month becomes its last
-- day). Without dialect date functions, relative to M (the caller computes the dates):
--   * a start before :window_start (the first day of the month 12 × years months before M)
--     ends before M;
--   * a start on or after :window_next (the first day of the month after that) ends after M;
--   * a start in the window month ends inside M: its day k maps to day k of M (the start's
--     day_ordinal + :shift_days, shift_days = days from :window_start to the first day of M),
--     clamped to M's last day (29 February → 28 February), minus one day — the earlier of
--     (start + shift_days − 1) and :month_end_eve (the day before M's last day).
-- Two sanction rows of one maker may overlap: a line is counted once (EXISTS).
-- Params: :month_start, :month_end, :month_end_eve, :window_start, :window_next,
-- :shift_days, :branch_code.
WITH spans AS (
    -- the days in force of every sanction row that can reach into M
    SELECT s.manufacturer,
           s.sanction_start AS from_day,
           CASE
               WHEN s.sanction_end IS NOT NULL THEN s.sanction_end
               WHEN s.sanction_start >= :window_next THEN :month_end
               WHEN shifted.day < :month_end THEN shifted.day
               ELSE :month_end_eve
           END AS to_day
    FROM supplier_sanctions s
    LEFT JOIN work_calendar start_day ON start_day.day = s.sanction_start
    LEFT JOIN work_calendar shifted ON shifted.day_ordinal = start_day.day_ordinal + :shift_days - 1
    WHERE s.sanction_start <= :month_end
      AND (s.sanction_end >= :month_start
           OR (s.sanction_end IS NULL AND s.sanction_start >= :window_start))
)
SELECT o.institution_code, i.institution_name, i.branch_code, o.product_code, p.generic_name,
       p.manufacturer,
       COUNT(*) AS line_count,
       SUM(o.quantity) AS quantity,
       SUM(o.amount) AS amount,
       MIN(o.order_date) AS first_day,
       MAX(o.order_date) AS last_day
FROM orders o
JOIN products p ON p.product_code = o.product_code
JOIN institutions i ON i.institution_code = o.institution_code
WHERE o.order_date >= :month_start
  AND o.order_date <= :month_end
  AND o.cancelled = FALSE
  AND i.ownership = 'public'
  AND p.manufacturer IN (SELECT manufacturer FROM spans)
  AND EXISTS (
        SELECT 1
        FROM spans sp
        WHERE sp.manufacturer = p.manufacturer
          AND sp.from_day <= o.order_date
          AND sp.to_day >= o.order_date)
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
GROUP BY o.institution_code, i.institution_name, i.branch_code, o.product_code, p.generic_name,
         p.manufacturer
ORDER BY i.branch_code, o.institution_code, o.product_code
