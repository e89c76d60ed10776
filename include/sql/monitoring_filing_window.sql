-- The order days whose filing deadline (the :working_days-th working day after the order
-- day, the day itself not counted) falls in M, as one range for an index-friendly
-- order_date predicate. deadline(d) = the working day whose workday_seq = workday_seq(d) +
-- :working_days (a non-working day shares the sequence number of the working day before it).
-- Params: :month_start, :month_end, :working_days.
WITH month_seq AS (
    SELECT MIN(wc.workday_seq) AS first_seq, MAX(wc.workday_seq) AS last_seq
    FROM work_calendar wc
    WHERE wc.day >= :month_start
      AND wc.day <= :month_end
      AND wc.is_workday = TRUE
)
SELECT MIN(wc.day) AS order_from, MAX(wc.day) AS order_to
FROM work_calendar wc
JOIN month_seq s
  ON wc.workday_seq >= s.first_seq - :working_days
 AND wc.workday_seq <= s.last_seq - :working_days
