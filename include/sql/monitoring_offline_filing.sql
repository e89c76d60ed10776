-- OFFLINE_NOT_FILED / OFFLINE_FILED_LATE (domain.md DAG 2, seed 002 §二(四)): off-platform
-- purchases (channel offline, not cancelled) whose filing deadline — the :working_days-th
-- working day after the order day, from work_calendar.workday_seq — falls in M
-- [:month_start, :month_end]. Order days come in as the range [:order_from, :order_to]
-- (monitoring_filing_window.sql) so the orders index on order_date is used.
--   nothing          : filed on or before the deadline
--   OFFLINE_FILED_LATE: filed after the deadline and on or before the last day of M
--   OFFLINE_NOT_FILED : no filing dated on or before the last day of M
-- filed_working_days = the working day (counted from the order day) the filing fell on; a
-- filing on a non-working day counts as the next working day.
-- Params: :month_start, :month_end, :order_from, :order_to, :working_days, :branch_code.
SELECT o.order_id, o.institution_code, i.institution_name, i.branch_code, o.product_code,
       p.generic_name, p.specification, p.manufacturer, o.order_date, o.quantity, o.amount,
       deadline.day AS filing_deadline, fl.filed_date,
       CASE
           WHEN fl.filed_date IS NULL OR fl.filed_date > :month_end THEN 'OFFLINE_NOT_FILED'
           ELSE 'OFFLINE_FILED_LATE'
       END AS rule_code,
       CASE
           WHEN fl.filed_date IS NULL OR fl.filed_date > :month_end THEN NULL
           ELSE filed.workday_seq + CASE WHEN filed.is_workday = TRUE THEN 0 ELSE 1 END
                - order_day.workday_seq
       END AS filed_working_days,
       CASE
           WHEN order_day.source = 'fallback' OR deadline.source = 'fallback' THEN 1 ELSE 0
       END AS uses_fallback
FROM orders o
JOIN work_calendar order_day ON order_day.day = o.order_date
JOIN work_calendar deadline
  ON deadline.workday_seq = order_day.workday_seq + :working_days
 AND deadline.is_workday = TRUE
JOIN institutions i ON i.institution_code = o.institution_code
LEFT JOIN products p ON p.product_code = o.product_code
LEFT JOIN offline_filings fl ON fl.order_id = o.order_id
LEFT JOIN work_calendar filed ON filed.day = fl.filed_date
WHERE o.order_date >= :order_from
  AND o.order_date <= :order_to
  AND o.channel = 'offline'
  AND o.cancelled = FALSE
  AND deadline.day >= :month_start
  AND deadline.day <= :month_end
  AND (fl.filed_date IS NULL OR fl.filed_date > deadline.day)
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, o.institution_code, o.order_date, o.order_id
