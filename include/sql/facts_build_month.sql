-- Purchase facts of one calendar month (domain.md › counting rules; DAG 2): ONE pass over
-- the month's order lines, grouped by segment, institution, product, channel and unit price.
-- Cancelled lines are not purchases. A line belongs to its order_date (local order day).
--
-- segment_start splits the month at the agreement-period boundaries inside it (every
-- period_start, every period_end + 1 day), so a figure "from max(first day of M,
-- period_start) to min(last day of M, period_end)" is an exact sum of whole segments: the
-- view facts_segment_days (migration 0006) maps each day of M (<= 31 rows, read by range)
-- to its segment; the lines join it by order_date. Unit price stays in the key so the
-- price-cap rules are exact.
--
-- Run inside one transaction (purchase_facts.build_month): list the month in the cache
-- index FIRST, then delete and rebuild its facts, then count its lines. The index's key is
-- the lock (the facts have no key): a concurrent build of the month waits on it, then fails
-- and retries. Deleting the facts before listing the month would let a build that commits
-- in between keep its rows beside ours (each statement sees the latest commits).
-- Params: :month_start, :month_end, :built_at.
DELETE FROM purchase_facts_months WHERE month_start = :month_start;
INSERT INTO purchase_facts_months (month_start, built_at, line_count)
VALUES (:month_start, :built_at, 0);
DELETE FROM purchase_facts WHERE month_start = :month_start;
INSERT INTO purchase_facts (
    month_start, segment_start, institution_code, product_code, channel, unit_price,
    quantity, amount, line_count
)
SELECT :month_start, sm.segment_start, o.institution_code, o.product_code, o.channel,
       o.unit_price, SUM(o.quantity), SUM(o.amount), COUNT(*)
FROM orders o
JOIN facts_segment_days sm ON sm.day = o.order_date
WHERE o.order_date >= :month_start
  AND o.order_date <= :month_end
  AND sm.day >= :month_start
  AND sm.day <= :month_end
  AND o.cancelled = FALSE
GROUP BY sm.segment_start, o.institution_code, o.product_code, o.channel, o.unit_price;
UPDATE purchase_facts_months
SET line_count = (SELECT COALESCE(SUM(f.line_count), 0) FROM purchase_facts f
                  WHERE f.month_start = :month_start)
WHERE month_start = :month_start;
