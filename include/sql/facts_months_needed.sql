-- The months whose purchase facts the judged month M needs: M itself and every month back
-- to the earliest period_start of the agreements active in M (cumulative selected quantity
-- since period_start). Params: :month_start, :month_end.
SELECT MIN(a.period_start) AS earliest_period_start
FROM agreements a
WHERE a.period_start <= :month_end
  AND a.period_end >= :month_start
