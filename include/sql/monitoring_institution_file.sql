-- 一院一档 (domain.md DAG 2, seed 002 §二(三)): one row per agreement active in the judged
-- month M (its agreement year overlaps M) and M, from the purchase facts only.
--   figures "in M" count from from_day = max(first day of M, period_start) to
--   as_of_date = min(last day of M, period_end): whole fact segments in that range.
--   selected   = platform purchases by the institution of products selected in the
--                agreement's batch with the agreement's generic name
--   same generic = purchases by the institution of any product of that generic, any channel
--   non-selected = same generic - selected
--   cumulative selected quantity = selected quantity since period_start up to as_of_date
--                (selected facts of :first_month .. :month_start)
--   completion rate = cumulative / agreed_quantity (NULL when agreed_quantity = 0)
--   time progress = (as_of - period_start + 1) / (period_end - period_start + 1) in days,
--                in [0, 1] by construction (period_start <= as_of <= period_end);
--                elapsed_days and total_days are stored too, for the judges to compare
--                by cross-multiplication
-- Divisions multiply by 1.0 first: SQLite keeps whole numbers of NUMERIC columns as
-- integers, and integer division would truncate.
-- Facts-driven joins are written "purchase_facts f CROSS JOIN …": SQLite then keeps the
-- facts as the outer loop (one scan, products found by primary key) whatever its
-- statistics say; PostgreSQL plans them as ordinary joins.
-- Params: :period, :month_start, :month_end, :first_month, :branch_code, :batch_code
-- (NULL = all; the delete removes exactly the rows the insert rebuilds).
DELETE FROM institution_file_metrics
WHERE period = :period
  AND (:branch_code IS NULL OR branch_code = :branch_code)
  AND (:batch_code IS NULL OR batch_code = :batch_code);
INSERT INTO institution_file_metrics (
    period, agreement_id, institution_code, branch_code, batch_code, generic_name, as_of_date,
    agreed_quantity, selected_quantity, selected_amount, same_generic_quantity,
    same_generic_amount, selected_quantity_share, selected_amount_share, non_selected_quantity,
    non_selected_amount, cumulative_selected_quantity, completion_rate, time_progress,
    elapsed_days, total_days
)
WITH active AS (
    SELECT a.agreement_id, a.institution_code, i.branch_code, a.batch_code, a.generic_name,
           a.period_start, a.period_end, a.agreed_quantity,
           CASE WHEN a.period_start > :month_start THEN a.period_start ELSE :month_start END AS from_day,
           CASE WHEN a.period_end < :month_end THEN a.period_end ELSE :month_end END AS as_of_date
    FROM agreements a
    JOIN institutions i ON i.institution_code = a.institution_code
    WHERE a.period_start <= :month_end
      AND a.period_end >= :month_start
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
      AND (:batch_code IS NULL OR a.batch_code = :batch_code)
),
-- Two passes, each fact row joined to its own active agreements on equalities (institution,
-- generic) with the segment range as a filter, each aggregated by agreement on its own: M's
-- full facts give the figures in M; the selected facts of :first_month .. :month_start
-- (platform purchases of selected products, M included) give the cumulative figure. (One
-- aggregate over both passes' UNION ALL added four zeros to every selected fact's row: 1.4 M
-- rows × five NUMERIC sums instead of 0.2 M × four and 1.2 M × one.) SQLite keeps the facts
-- as the outer loop and finds the agreements through an automatic index on the CTE;
-- PostgreSQL hashes them (the caller's planner settings: it underestimates these joins and
-- would otherwise sort the fact rows by text keys for a merge join).
in_month AS (
    SELECT ac.agreement_id,
           SUM(CASE WHEN f.channel = 'platform' AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN f.quantity ELSE 0 END) AS selected_quantity,
           SUM(CASE WHEN f.channel = 'platform' AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN f.amount ELSE 0 END) AS selected_amount,
           SUM(f.quantity) AS same_generic_quantity,
           SUM(f.amount) AS same_generic_amount
    FROM purchase_facts f
    CROSS JOIN products p
    CROSS JOIN active ac
    WHERE f.month_start = :month_start
      AND p.product_code = f.product_code
      AND ac.institution_code = f.institution_code
      AND ac.generic_name = p.generic_name
      AND f.segment_start >= ac.from_day
      AND f.segment_start <= ac.as_of_date
    GROUP BY ac.agreement_id
),
cumulative AS (
    SELECT ac.agreement_id, SUM(s.quantity) AS cumulative_selected_quantity
    FROM selected_purchase_facts s
    CROSS JOIN products p
    CROSS JOIN active ac
    WHERE s.month_start >= :first_month
      AND s.month_start <= :month_start
      AND p.product_code = s.product_code
      AND p.is_selected = TRUE
      AND ac.institution_code = s.institution_code
      AND ac.generic_name = p.generic_name
      AND ac.batch_code = p.batch_code
      AND s.segment_start >= ac.period_start
      AND s.segment_start <= ac.as_of_date
    GROUP BY ac.agreement_id
),
figures AS (
    SELECT ac.agreement_id, ac.institution_code, ac.branch_code, ac.batch_code, ac.generic_name,
           ac.as_of_date, ac.agreed_quantity,
           COALESCE(m.selected_quantity, 0) AS selected_quantity,
           COALESCE(m.selected_amount, 0) AS selected_amount,
           COALESCE(m.same_generic_quantity, 0) AS same_generic_quantity,
           COALESCE(m.same_generic_amount, 0) AS same_generic_amount,
           COALESCE(c.cumulative_selected_quantity, 0) AS cumulative_selected_quantity,
           as_of.day_ordinal - period_start.day_ordinal + 1 AS elapsed_days,
           period_end.day_ordinal - period_start.day_ordinal + 1 AS total_days
    FROM active ac
    JOIN work_calendar period_start ON period_start.day = ac.period_start
    JOIN work_calendar period_end ON period_end.day = ac.period_end
    JOIN work_calendar as_of ON as_of.day = ac.as_of_date
    LEFT JOIN in_month m ON m.agreement_id = ac.agreement_id
    LEFT JOIN cumulative c ON c.agreement_id = ac.agreement_id
)
SELECT :period, agreement_id, institution_code, branch_code, batch_code, generic_name, as_of_date,
       agreed_quantity, selected_quantity, selected_amount, same_generic_quantity,
       same_generic_amount,
       CASE WHEN same_generic_quantity > 0
            THEN selected_quantity * 1.0 / same_generic_quantity END,
       CASE WHEN same_generic_amount > 0
            THEN selected_amount * 1.0 / same_generic_amount END,
       same_generic_quantity - selected_quantity,
       same_generic_amount - selected_amount,
       cumulative_selected_quantity,
       CASE WHEN agreed_quantity > 0
            THEN cumulative_selected_quantity * 1.0 / agreed_quantity END,
       elapsed_days * 1.0 / total_days,
       elapsed_days, total_days
FROM figures;
