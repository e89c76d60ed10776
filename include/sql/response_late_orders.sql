-- 配送响应 (domain.md DAG 6, seed 002 §二(六)): platform orders, not cancelled, whose response
-- mark (order_time + :response_hours h) falls in the order_time window [:window_start,
-- :window_end) computed by the caller, and that had no response at or before the mark.
-- response_hours is derived at ingest (hours from order to response), so "no response by the
-- mark" is response_hours IS NULL or above it.
--   ORDER_RESPONSE_OVERDUE:   the marks on the judged day J; :silent_until NULL. These
--                             orders are the delay list (延迟响应清单) of J.
--   ORDER_RESPONSE_ESCALATED: the marks whose escalation day is J (the caller finds them with
--                             the one PRC calendar: a contiguous run of days); :silent_until
--                             = J + 1 day 00:00, i.e. still no response by the end of J.
-- Datetime params are compared with >= and < only: SQLite stores timestamps as text with
-- microseconds, so a bound value equals a stored one under neither = nor <=.
SELECT o.order_id, o.institution_code, i.institution_name, i.branch_code,
       o.product_code, p.generic_name, p.specification, p.manufacturer,
       o.distributor_code, d.distributor_name, d.emails AS distributor_emails,
       o.quantity, o.amount, o.order_time, o.response_time, o.response_hours
FROM orders o
JOIN institutions i ON i.institution_code = o.institution_code
LEFT JOIN products p ON p.product_code = o.product_code
LEFT JOIN distributors d ON d.distributor_code = o.distributor_code
WHERE o.channel = 'platform'
  AND o.cancelled = FALSE
  AND o.order_date >= :first_order_day
  AND o.order_date <= :last_order_day
  AND o.order_time >= :window_start
  AND o.order_time < :window_end
  AND (o.response_hours IS NULL OR o.response_hours > :response_hours + :eps)
  AND (:silent_until IS NULL OR o.response_time IS NULL OR o.response_time >= :silent_until)
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, COALESCE(o.distributor_code, ''), o.order_time, o.order_id
