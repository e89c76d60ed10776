-- 月度工作进展报告 四、飞检线索: the reasons of each lead, i.e. its open alerts of M counted
-- by rule and severity (and the generic names they concern).
-- Params: :period, :next_period, :rule_codes, :institution_codes.
SELECT a.institution_code, a.rule_code, a.severity, COUNT(*) AS alerts,
       COUNT(DISTINCT a.generic_name) AS generic_names, MIN(a.generic_name) AS first_generic_name
FROM alerts a
WHERE a.status = 'open'
  AND a.institution_code IN :institution_codes
  AND a.rule_code IN :rule_codes
  AND a.period >= :period
  AND a.period < :next_period
GROUP BY a.institution_code, a.rule_code, a.severity
ORDER BY a.institution_code, a.rule_code, a.severity
