-- Selected purchase facts of ONE calendar month from its full facts (purchase_facts, built
-- by facts_build_month.sql and committed): the same rows facts_build_selected.sql gives —
-- the month's lines are already grouped there by segment, institution, product, channel and
-- unit price, with cancelled lines left out — summed over unit price for the platform
-- purchases of selected products. Half a million facts instead of a million lines.
--
-- Run inside one transaction (purchase_facts.build_selected_from_full), in the order of
-- facts_build_selected.sql: list the month in the cache index first (its key is the lock;
-- an ingest that clears the month waits for it, or it waits for the ingest), delete and
-- rebuild its facts, count its lines. The caller then checks in the same transaction that
-- the full facts are still listed (an ingest may have cleared them before the lock) and
-- rolls back if not. Params: :month_start, :built_at.
DELETE FROM selected_purchase_facts_months WHERE month_start = :month_start;
INSERT INTO selected_purchase_facts_months (month_start, built_at, line_count)
VALUES (:month_start, :built_at, 0);
DELETE FROM selected_purchase_facts WHERE month_start = :month_start;
INSERT INTO selected_purchase_facts (
    month_start, segment_start, institution_code, product_code, quantity, line_count
)
SELECT f.month_start, f.segment_start, f.institution_code, f.product_code,
       SUM(f.quantity), SUM(f.line_count)
FROM purchase_facts f
JOIN products p ON p.product_code = f.product_code
WHERE f.month_start = :month_start
  AND f.channel = 'platform'
  AND p.is_selected = TRUE
GROUP BY f.month_start, f.segment_start, f.institution_code, f.product_code;
UPDATE selected_purchase_facts_months
SET line_count = (SELECT COALESCE(SUM(s.line_count), 0) FROM selected_purchase_facts s
                  WHERE s.month_start = :month_start)
WHERE month_start = :month_start;
