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
due AS MATERIALIZED (
    SELECT a.*,
           COALESCE((SELECT SUM(pay.amount) FROM payments pay
                     WHERE pay.order_id = a.order_id
                       AND pay.payment_date <= a.payment_deadline), 0) AS paid_amount
    FROM accepted a
    WHERE a.payment_deadline >= :month_start
      AND a.payment_deadline <= :month_end
)
SELECT d.order_id, d.institution_code, d.institution_name, d.branch_code, d.ownership,
       d.product_code, p.generic_name, p.specification, d.order_date, d.acceptance_date,
       d.payment_deadline, d.quantity, d.amount, d.paid_amount,
       d.amount - d.paid_amount AS unpaid_amount
FROM due d
LEFT JOIN products p ON p.product_code = d.product_code
WHERE d.paid_amount < d.amount - :eps
ORDER BY d.branch_code, d.institution_code, d.payment_deadline, d.order_id
