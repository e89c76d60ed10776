-- 进院排查 (domain.md DAG 1, seed 002 §二(二)): one row per swept agreement = an agreement of
-- a public institution with agreed_quantity > 0 whose cycle month :k ends in the judged month
-- (the milestone day), judged as of that day. An agreement year shorter than :k months has
-- no such milestone inside the year and is not swept.
--   selected purchases = platform order lines, not cancelled, of a product selected in the
--                        agreement's batch with the agreement's generic name, by the
--                        agreement's institution, dated period_start … milestone day
--   time progress      = elapsed_days / total_days (calendar days, both ends counted)
--   verdict            = ENTRY_NOT_PURCHASED (no such line), ENTRY_BEHIND_AGREEMENT
--                        (completion rate < :ratio × time progress), or NULL
-- The comparison is cross-multiplied (no division: SQLite would divide integers):
--   selected / agreed < ratio × elapsed / total
--   ⇔ selected × total < ratio × elapsed × agreed − :quantity_eps × total
-- i.e. short of ratio × time progress × agreed by more than :quantity_eps, a quantity far
-- below the contract's 4 decimals and far above REAL rounding: a value exactly at the
-- threshold never alerts on either database, whatever the size of the agreed quantity.
-- Params: :k (entry_sweep_month), :month_start, :month_end (judged month), :ratio
-- (progress_warning_ratio as decimal text, cast here: exact on PostgreSQL, and SQLite's driver
-- binds no Decimal), :quantity_eps, :branch_code (NULL = every branch). The batch filter is
-- applied by the caller: the branch's sweep list shows every batch.
WITH swept AS (
    SELECT a.agreement_id, a.institution_code, i.institution_name, i.branch_code,
           a.batch_code, b.batch_name, a.generic_name, a.period_start, a.period_end,
           a.agreed_quantity, cm.month_end AS milestone_day
    FROM agreements a
    JOIN institutions i ON i.institution_code = a.institution_code
    JOIN batches b ON b.batch_code = a.batch_code
    JOIN cycle_month_calendar cm
      ON cm.period_start = a.period_start
     AND cm.cycle_month = :k
    WHERE cm.month_end BETWEEN :month_start AND :month_end
      AND cm.month_end <= a.period_end
      AND i.ownership = 'public'
      AND a.agreed_quantity > 0
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
),
selected_purchases AS (
    SELECT s.agreement_id,
           SUM(o.quantity) AS selected_quantity,
           COUNT(*) AS line_count,
           MIN(o.order_date) AS first_order_date
    FROM swept s
    JOIN products p
      ON p.batch_code = s.batch_code
     AND p.generic_name = s.generic_name
     AND p.is_selected = TRUE
    JOIN orders o
      ON o.product_code = p.product_code
     AND o.institution_code = s.institution_code
    WHERE o.channel = 'platform'
      AND o.cancelled = FALSE
      AND o.order_date >= s.period_start
      AND o.order_date <= s.milestone_day
    GROUP BY s.agreement_id
),
figures AS (
    SELECT s.*,
           COALESCE(sp.selected_quantity, 0) AS selected_quantity,
           COALESCE(sp.line_count, 0) AS line_count,
           sp.first_order_date,
           wm.day_ordinal - ws.day_ordinal + 1 AS elapsed_days,
           we.day_ordinal - ws.day_ordinal + 1 AS total_days
    FROM swept s
    LEFT JOIN selected_purchases sp ON sp.agreement_id = s.agreement_id
    JOIN work_calendar ws ON ws.day = s.period_start
    JOIN work_calendar wm ON wm.day = s.milestone_day
    JOIN work_calendar we ON we.day = s.period_end
)
SELECT f.agreement_id, f.institution_code, f.institution_name, f.branch_code,
       f.batch_code, f.batch_name, f.generic_name, f.period_start, f.period_end,
       f.milestone_day, f.agreed_quantity, f.selected_quantity, f.line_count,
       f.first_order_date, f.elapsed_days, f.total_days,
       CASE
           WHEN f.line_count = 0 THEN 'ENTRY_NOT_PURCHASED'
           WHEN f.selected_quantity * f.total_days
                < CAST(:ratio AS NUMERIC) * f.elapsed_days * f.agreed_quantity
                  - :quantity_eps * f.total_days
                THEN 'ENTRY_BEHIND_AGREEMENT'
           ELSE NULL
       END AS verdict
FROM figures f
ORDER BY f.branch_code, f.institution_code, f.batch_code, f.generic_name, f.agreement_id
