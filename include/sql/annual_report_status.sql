-- 年度报告收集 (domain.md DAG 4, seed 002 §三(二)): one row per branch bureau (level
-- 'branch', within the operator's scope) with its latest submission of :report_year made
-- by the end of the judged day J (submitted_at < :judged_end = J+1 00:00), and the rules
-- that row raises:
--   due          ANNUAL_REPORT_DUE      D is a reminder date and nothing submitted by J
--   missing      ANNUAL_REPORT_MISSING  J is the deadline and nothing submitted by J
--   late         ANNUAL_REPORT_LATE     the submission is dated J and J is after the deadline
--   check_file   the submission is judged now (dated J, or earlier on the season's first
--                run): its file is checked for the four headings (ANNUAL_REPORT_INCOMPLETE)
-- Flags come in as 0/1 integers computed from the run's dates. Datetime params are compared
-- with >= and < only (SQLite stores timestamps as text with microseconds).
-- The key (branch_code, report_year) allows one row per branch and year; "the latest
-- counts" is still spelled out so a wider key could not double a branch.
SELECT b.branch_code, b.branch_name,
       s.submitted_at, s.file_name,
       CASE WHEN s.branch_code IS NULL THEN 0 ELSE 1 END AS submitted,
       CASE WHEN s.branch_code IS NULL AND :is_reminder_day = 1 THEN 1 ELSE 0 END AS due,
       CASE WHEN s.branch_code IS NULL AND :is_deadline = 1 THEN 1 ELSE 0 END AS missing,
       CASE WHEN s.submitted_at >= :judged_start AND :after_deadline = 1 THEN 1 ELSE 0 END AS late,
       CASE WHEN s.submitted_at >= :judged_start OR (s.branch_code IS NOT NULL AND :first_run_of_season = 1)
            THEN 1 ELSE 0 END AS check_file
FROM branches b
LEFT JOIN annual_reports s
  ON s.branch_code = b.branch_code
 AND s.report_year = :report_year
 AND s.submitted_at < :judged_end
 AND NOT EXISTS (
       SELECT 1 FROM annual_reports later
       WHERE later.branch_code = s.branch_code
         AND later.report_year = s.report_year
         AND later.submitted_at < :judged_end
         AND (later.submitted_at > s.submitted_at
              OR (later.submitted_at = s.submitted_at AND later.file_name > s.file_name)))
WHERE b.level = 'branch'
  AND (:branch_code IS NULL OR b.branch_code = :branch_code)
ORDER BY b.branch_code
