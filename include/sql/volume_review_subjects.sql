-- 报量审核 (domain.md DAG 5, seed 002 §二(一)): one row per subject = institution × batch ×
-- selected generic name of a batch whose report_deadline falls in the judged month, for every
-- institution (any ownership) with a history or a report. Judged as of the deadline.
--   history  = same-generic purchases (any product of that generic, any channel, not
--              cancelled) in the calendar year before the deadline's year
--   report   = the latest report (report_date, then report_id) dated on or before the deadline
--   verdict  = the rule code raised, or NULL
-- Params: :first_day, :last_day (judged month), :history_start, :history_end, :ratio
-- (history_floor_ratio as decimal text, cast here: exact on PostgreSQL, and SQLite's driver
-- binds no Decimal), :eps, :branch_code (NULL = all), :tab, :cr, :lf, :wide_space
-- (characters an "empty" explanation may consist of, besides spaces).
WITH judged_batches AS (
    SELECT b.batch_code, b.batch_name, b.report_deadline
    FROM batches b
    WHERE b.report_deadline >= :first_day
      AND b.report_deadline <= :last_day
),
batch_generics AS (
    SELECT DISTINCT jb.batch_code, jb.batch_name, jb.report_deadline, p.generic_name
    FROM judged_batches jb
    JOIN products p ON p.batch_code = jb.batch_code AND p.is_selected = TRUE
),
history AS (
    SELECT o.institution_code, bg.batch_code, bg.generic_name,
           SUM(o.quantity) AS history_quantity
    FROM batch_generics bg
    JOIN products hp ON hp.generic_name = bg.generic_name
    JOIN orders o ON o.product_code = hp.product_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= :history_start
      AND o.order_date <= :history_end
    GROUP BY o.institution_code, bg.batch_code, bg.generic_name
),
reports_by_deadline AS (
    SELECT r.report_id, r.institution_code, r.batch_code, r.generic_name,
           r.reported_quantity, r.explanation, r.report_date
    FROM volume_reports r
    JOIN batch_generics bg ON bg.batch_code = r.batch_code AND bg.generic_name = r.generic_name
    WHERE r.report_date <= bg.report_deadline
),
latest_reports AS (
    SELECT r.*,
           CASE WHEN TRIM(REPLACE(REPLACE(REPLACE(REPLACE(COALESCE(r.explanation, ''),
                     :tab, ' '), :cr, ' '), :lf, ' '), :wide_space, ' ')) = ''
                THEN 0 ELSE 1 END AS explanation_given
    FROM reports_by_deadline r
    WHERE NOT EXISTS (
        SELECT 1 FROM reports_by_deadline later
        WHERE later.institution_code = r.institution_code
          AND later.batch_code = r.batch_code
          AND later.generic_name = r.generic_name
          AND (later.report_date > r.report_date
               OR (later.report_date = r.report_date AND later.report_id > r.report_id))
    )
),
subjects AS (
    SELECT institution_code, batch_code, generic_name FROM history WHERE history_quantity > :eps
    UNION
    SELECT institution_code, batch_code, generic_name FROM latest_reports
)
SELECT s.institution_code, i.institution_name, i.branch_code,
       s.batch_code, bg.batch_name, bg.report_deadline, s.generic_name,
       COALESCE(h.history_quantity, 0) AS history_quantity,
       lr.report_id, lr.report_date, lr.reported_quantity, lr.explanation,
       COALESCE(lr.explanation_given, 0) AS explanation_given,
       CASE
           WHEN lr.report_id IS NULL THEN 'HISTORY_NOT_REPORTED'
           WHEN lr.reported_quantity < CAST(:ratio AS NUMERIC) * COALESCE(h.history_quantity, 0) - :eps
                AND lr.explanation_given = 0 THEN 'REPORT_BELOW_80_NO_EXPLANATION'
           WHEN lr.reported_quantity < CAST(:ratio AS NUMERIC) * COALESCE(h.history_quantity, 0) - :eps
                THEN 'REPORT_BELOW_80'
           WHEN lr.reported_quantity < COALESCE(h.history_quantity, 0) - :eps
                THEN 'REPORT_BELOW_HISTORY'
           ELSE NULL
       END AS verdict
FROM subjects s
JOIN batch_generics bg ON bg.batch_code = s.batch_code AND bg.generic_name = s.generic_name
JOIN institutions i ON i.institution_code = s.institution_code
LEFT JOIN history h
       ON h.institution_code = s.institution_code
      AND h.batch_code = s.batch_code AND h.generic_name = s.generic_name
LEFT JOIN latest_reports lr
       ON lr.institution_code = s.institution_code
      AND lr.batch_code = s.batch_code AND lr.generic_name = s.generic_name
WHERE (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, s.institution_code, s.batch_code, s.generic_name
