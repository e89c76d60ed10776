-- The facts cache index: which months in [:first_month, :last_month] are built.
SELECT m.month_start, m.line_count
FROM purchase_facts_months m
WHERE m.month_start >= :first_month
  AND m.month_start <= :last_month
ORDER BY m.month_start
