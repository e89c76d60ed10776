-- RECTIFICATION_OVERDUE (domain.md DAG 2 continued; seed 002 §二(三) 督促整改；拒不整改的，
-- 将有关线索移交同级行风主管部门和纪检监察部门): institution × generic name, or
-- institution × category, judged for month M from the alerts table, after M's other
-- monthly alerts are written (same transaction).
--   raised   = open alerts of vbp_monthly_monitoring of the watched codes, by subject and
--              month: PROGRESS_BEHIND (any severity), SELECTED_SHARE_LOW,
--              NON_SELECTED_HIGH_PRICE, ONLY_NON_SELECTED → institution × generic name
--              (the agreement rules' batch is set aside); ONLINE_RATE_LOW → institution ×
--              category. RECTIFICATION_OVERDUE itself is not watched: a rerun does not
--              count its own alert.
--   run      = consecutive months ending with M that have such an alert, counted back at
--              most 12: the first month back without one (a resolved alert, or a month
--              not judged, has none) ends it.
--   raised when run >= :rectification_months; one row per subject, month of the run and
--   code (the message lists them).
-- Period labels 'YYYY-MM' of M (:period_0) and the 11 months before it (:period_1 …
-- :period_11) come from the caller: no date functions.
-- Params: :period_0 … :period_11, :dag_id, :rectification_months, :branch_code.
WITH months AS (
    SELECT :period_0 AS period, 0 AS months_back
    UNION ALL SELECT :period_1, 1
    UNION ALL SELECT :period_2, 2
    UNION ALL SELECT :period_3, 3
    UNION ALL SELECT :period_4, 4
    UNION ALL SELECT :period_5, 5
    UNION ALL SELECT :period_6, 6
    UNION ALL SELECT :period_7, 7
    UNION ALL SELECT :period_8, 8
    UNION ALL SELECT :period_9, 9
    UNION ALL SELECT :period_10, 10
    UNION ALL SELECT :period_11, 11
),
raised AS (
    SELECT a.institution_code,
           CASE WHEN a.rule_code = 'ONLINE_RATE_LOW' THEN 'category' ELSE 'generic' END AS subject_kind,
           CASE WHEN a.rule_code = 'ONLINE_RATE_LOW' THEN a.category ELSE a.generic_name END AS subject_name,
           a.period, m.months_back, a.rule_code
    FROM alerts a
    JOIN months m ON m.period = a.period
    WHERE a.dag_id = :dag_id
      AND a.status = 'open'
      AND a.institution_code IS NOT NULL
      AND ((a.rule_code IN ('PROGRESS_BEHIND', 'SELECTED_SHARE_LOW', 'NON_SELECTED_HIGH_PRICE',
                            'ONLY_NON_SELECTED') AND a.generic_name IS NOT NULL)
           OR (a.rule_code = 'ONLINE_RATE_LOW' AND a.category IS NOT NULL))
),
subject_months AS (
    SELECT DISTINCT institution_code, subject_kind, subject_name, months_back
    FROM raised
),
runs AS (
    -- per subject raised in M: the first month back without an alert (12 when none is missing)
    SELECT s.institution_code, s.subject_kind, s.subject_name,
           COALESCE(MIN(CASE WHEN x.months_back IS NULL THEN m.months_back END), 12) AS run_months
    FROM subject_months s
    CROSS JOIN months m
    LEFT JOIN subject_months x
           ON x.institution_code = s.institution_code
          AND x.subject_kind = s.subject_kind
          AND x.subject_name = s.subject_name
          AND x.months_back = m.months_back
    WHERE s.months_back = 0
    GROUP BY s.institution_code, s.subject_kind, s.subject_name
),
listed AS (
    SELECT DISTINCT institution_code, subject_kind, subject_name, period, months_back, rule_code
    FROM raised
)
SELECT r.institution_code, i.institution_name, i.branch_code, r.subject_kind, r.subject_name,
       r.run_months, l.period, l.months_back, l.rule_code
FROM runs r
JOIN institutions i ON i.institution_code = r.institution_code
JOIN listed l
  ON l.institution_code = r.institution_code
 AND l.subject_kind = r.subject_kind
 AND l.subject_name = r.subject_name
 AND l.months_back < r.run_months
WHERE r.run_months >= :rectification_months
  AND (:branch_code IS NULL OR i.branch_code = :branch_code)
ORDER BY i.branch_code, r.institution_code, r.subject_kind, r.subject_name, l.months_back DESC, l.rule_code
