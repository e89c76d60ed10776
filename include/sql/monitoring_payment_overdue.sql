-- PAYMENT_OVERDUE (domain.md DAG 2; seed 000 item 11, seed 003 §五(五), seed 001 §五(三)9):
-- platform purchases (not cancelled) with an acceptance date whose payment deadline falls
-- in M, and whose payments dated on or before the deadline sum to less than the amount.
--   public institutions: the last day of the month after acceptance (work_calendar.next_month_end)
--   military / private : acceptance + :private_days days (work_calendar.day_ordinal)
-- Acceptance days come in as the range [:accept_from, :accept_to] (every acceptance day
-- whose deadline can fall in M) so the orders index on acceptance_date is used.
-- Metric = unpaid amount by the deadline. ``due`` is read once (one LEFT JOIN to payments and
-- one GROUP BY), so PostgreSQL inlines it and plans the join in parallel; read twice, it was
-- materialised and probed payments order by order (7.6 s → 4.5 s at 1,000,000 lines a month).
-- Params: :month_start, :month_end, :accept_from, :accept_to, :private_days, :eps, :branch_code.
WITH accepted AS (
    SELECT o.order_id, o.institution_code, i.institution_name, i.branch_code, i.ownership,
           o.product_code, o.order_date, o.acceptance_date, o.quantity, o.amount,
           CASE WHEN i.ownership = 'public' THEN accepted_day.next_month_end
                ELSE private_deadline.day END AS payment_deadline
    FROM orders o
    JOIN institutions i ON i.institution_code = o.institution_code
    JOIN work_calendar accepted_day ON accepted_day.day = o.acceptance_date
    LEFT JOIN work_calendar private_deadline
      ON private_deadline.day_ordinal = accepted_day.day_ordinal + :private_days
    WHERE o.acceptance_date >= :accept_from
      AND o.acceptance_date <= :accept_to
      AND o.channel = 'platform'
      AND o.cancelled = FALSE
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
),
due AS (
    SELECT *
    FROM accepted
    WHERE payment_deadline >= :month_start
      AND payment_deadline <= :month_end
),
unpaid AS (
    SELECT d.order_id, d.institution_code, d.institution_name, d.branch_code, d.ownership,
           d.product_code, d.order_date, d.acceptance_date, d.payment_deadline, d.quantity, d.amount,
           COALESCE(SUM(pay.amount), 0) AS paid_amount
    FROM due d
    LEFT JOIN payments pay ON pay.order_id = d.order_id AND pay.payment_date <= d.payment_deadline
    GROUP BY d.order_id, d.institution_code, d.institution_name, d.branch_code, d.ownership,
             d.product_code, d.order_date, d.acceptance_date, d.payment_deadline, d.quantity, d.amount
    HAVING COALESCE(SUM(pay.amount), 0) < d.amount - :eps
)
SELECT u.order_id, u.institution_code, u.institution_name, u.branch_code, u.ownership,
       u.product_code, p.generic_name, p.specification, u.order_date, u.acceptance_date,
       u.payment_deadline, u.quantity, u.amount, u.paid_amount,
       u.amount - u.paid_amount AS unpaid_amount
FROM unpaid u
LEFT JOIN products p ON p.product_code = u.product_code
ORDER BY u.branch_code, u.institution_code, u.payment_deadline, u.order_id
