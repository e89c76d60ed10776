-- 预付对账 (domain.md DAG 3, seed 001 §五(三)8, seed 000 item 12, seed 003 §五(五), seed 004
-- §二(三)): one row per subject (institution × batch × agreement year) and milestone whose
-- milestone day falls in the judged month, as of that day.
--   agreement year      = the agreements of one institution and batch sharing period_start
--                         (ingest quarantines ones that don't share their period);
--                         agreed_amount_total = SUM(agreed_amount)
--   milestones          = the per-run parameter table prepay_run_schedule (built from the
--                         profile by the caller): milestone_month k, the disbursement
--                         fraction in force at month k (last step ≤ k), the cumulative
--                         recovery fraction at k and the profile's shortfall_tolerance
--                         (a column, so the decimal is typed on both databases). The
--                         milestone day is the last day of cycle month k; milestones
--                         whose month-end is on or after period_end collapse into one
--                         final milestone at period_end that carries the last
--                         milestone's steps (:final_milestone = max k): seed 001's
--                         "最后1个月" of a year shorter than 12 months.
--   transactions        = each prepayment belongs to the latest agreement year of its
--                         institution and batch with period_start ≤ txn_date (the year that
--                         contains it, or the nearest earlier one when it lies in a gap or
--                         after the last year), else to the earliest year (dated before the
--                         first year); sums of that year's txns dated ≤ the milestone day.
--   required_disbursement = fraction × agreed_amount_total
--   required_recovery   = fraction × base, capped at disbursed; base = disbursed
--                         (:base_is_agreed = 0) or agreed_amount_total (= 1)
--   flags               = which line is broken: short/over by more than
--                         shortfall_tolerance yuan; :money_eps (far below the contract's
--                         4 decimals) keeps a value exactly at the tolerance from alerting
--                         on SQLite's REAL arithmetic. (Severity is the catalog's.)
-- Params: :month_start, :month_end (judged month), :final_milestone, :base_is_agreed,
-- :money_eps, :ownerships (list), :branch_code, :batch_code (NULL = all).
WITH years AS (
    SELECT a.institution_code, a.batch_code, a.period_start,
           MAX(a.period_end) AS period_end,
           SUM(a.agreed_amount) AS agreed_amount_total
    FROM agreements a
    GROUP BY a.institution_code, a.batch_code, a.period_start
),
subjects AS (
    SELECT y.institution_code, i.institution_name, i.branch_code, i.ownership,
           y.batch_code, b.batch_name, y.period_start, y.period_end, y.agreed_amount_total
    FROM years y
    JOIN institutions i ON i.institution_code = y.institution_code
    JOIN batches b ON b.batch_code = y.batch_code
    WHERE i.ownership IN :ownerships
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
      AND (:batch_code IS NULL OR y.batch_code = :batch_code)
),
milestones AS (
    SELECT s.*, sch.milestone_month, sch.disbursement_fraction, sch.recovery_fraction,
           sch.shortfall_tolerance,
           cm.month_end AS cycle_month_end,
           CASE WHEN cm.month_end < s.period_end THEN cm.month_end ELSE s.period_end END AS milestone_day
    FROM subjects s
    CROSS JOIN prepay_run_schedule sch
    JOIN cycle_month_calendar cm
      ON cm.period_start = s.period_start
     AND cm.cycle_month = sch.milestone_month
    WHERE cm.month_end < s.period_end
       OR sch.milestone_month = :final_milestone
),
judged AS (
    SELECT m.*
    FROM milestones m
    WHERE m.milestone_day >= :month_start
      AND m.milestone_day <= :month_end
),
txns AS (
    SELECT t.institution_code, t.batch_code, t.txn_date, t.txn_type, t.amount,
           COALESCE(
               (SELECT MAX(y.period_start) FROM years y
                WHERE y.institution_code = t.institution_code
                  AND y.batch_code = t.batch_code
                  AND y.period_start <= t.txn_date),
               (SELECT MIN(y.period_start) FROM years y
                WHERE y.institution_code = t.institution_code
                  AND y.batch_code = t.batch_code)
           ) AS year_start
    FROM prepayments t
    WHERE t.txn_date <= :month_end
      AND EXISTS (SELECT 1 FROM judged j
                  WHERE j.institution_code = t.institution_code
                    AND j.batch_code = t.batch_code)
),
amounts AS (
    SELECT j.institution_code, j.batch_code, j.period_start, j.milestone_month,
           SUM(CASE WHEN t.txn_type = 'disbursement' THEN t.amount ELSE 0 END) AS disbursed,
           SUM(CASE WHEN t.txn_type = 'recovery' THEN t.amount ELSE 0 END) AS recovered
    FROM judged j
    JOIN txns t
      ON t.institution_code = j.institution_code
     AND t.batch_code = j.batch_code
     AND t.year_start = j.period_start
     AND t.txn_date <= j.milestone_day
    GROUP BY j.institution_code, j.batch_code, j.period_start, j.milestone_month
),
balances AS (
    SELECT j.*,
           COALESCE(a.disbursed, 0) AS disbursed,
           COALESCE(a.recovered, 0) AS recovered,
           ROUND(j.disbursement_fraction * j.agreed_amount_total, 4) AS required_disbursement,
           ROUND(j.recovery_fraction
                 * CASE WHEN :base_is_agreed = 1 THEN j.agreed_amount_total
                        ELSE COALESCE(a.disbursed, 0) END, 4) AS recovery_due
    FROM judged j
    LEFT JOIN amounts a
      ON a.institution_code = j.institution_code
     AND a.batch_code = j.batch_code
     AND a.period_start = j.period_start
     AND a.milestone_month = j.milestone_month
),
ledger AS (
    SELECT b.*,
           CASE WHEN b.recovery_due < b.disbursed THEN b.recovery_due ELSE b.disbursed END
               AS required_recovery
    FROM balances b
)
SELECT l.institution_code, l.institution_name, l.branch_code, l.ownership,
       l.batch_code, l.batch_name, l.period_start, l.period_end, l.cycle_month_end,
       l.milestone_month, l.milestone_day, l.agreed_amount_total,
       l.disbursement_fraction, l.recovery_fraction,
       l.disbursed, l.recovered, l.required_disbursement, l.recovery_due, l.required_recovery,
       l.required_disbursement - l.disbursed AS disbursement_gap,
       l.required_recovery - l.recovered AS recovery_gap,
       CASE WHEN l.required_disbursement - l.disbursed > l.shortfall_tolerance + :money_eps
            THEN 1 ELSE 0 END AS under_disbursed,
       CASE WHEN l.required_recovery - l.recovered > l.shortfall_tolerance + :money_eps
            THEN 1 ELSE 0 END AS recovery_short,
       CASE WHEN l.recovered - l.disbursed > l.shortfall_tolerance + :money_eps
            THEN 1 ELSE 0 END AS over_recovered
FROM ledger l
ORDER BY l.branch_code, l.institution_code, l.batch_code, l.period_start, l.milestone_month
