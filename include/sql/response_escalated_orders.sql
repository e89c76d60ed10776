-- 配送响应 · ORDER_RESPONSE_ESCALATED (domain.md DAG 6, seed 002 §二(六)): platform orders,
-- not cancelled, whose escalation day is the judged day J and that had no response by the
-- end of J. The caller computes, with the one PRC calendar, the mark days whose escalation
-- day is J (first working day after the mark day, plus the distributor's grace) — a
-- contiguous run of days — and binds the order_time window [:window_start, :window_end)
-- whose marks fall on them. :escalation_day_end is J + 1 day 00:00.
-- Datetime params are compared with >= and < only (see response_overdue_orders.sql).
SELECT o.order_id, o.institution_code, i.institution_name, i.branch_code,
       o.product_code, p.generic_name, p.specification, p.manufacturer,
       o.distributor_code, d.distributor_name,
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
  AND (o.response_time IS NULL OR o.response_time >= :escalation_day_end)
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, COALESCE(o.distributor_code, ''), o.order_time, o.order_id
