-- 年度报告草稿 · 二、具体工作落实情况 / 三、存在的问题: the open alerts each branch
-- received for periods of the report year ('YYYY-MM' and 'YYYY-MM-DD' labels both sort
-- between :period_from = 'YYYY-01' and :period_to = the next year), per rule.
-- metric_total: e.g. the unpaid amount of PAYMENT_OVERDUE.
SELECT a.branch_code, a.rule_code,
       COUNT(*) AS alerts,
       SUM(CASE WHEN a.severity = 'critical' THEN 1 ELSE 0 END) AS critical_alerts,
       COUNT(DISTINCT a.institution_code) AS institutions,
       SUM(COALESCE(a.metric_value, 0)) AS metric_total
FROM alerts a
WHERE a.branch_code IN :branch_codes
  AND a.rule_code IN :rule_codes
  AND a.status = 'open'
  AND a.period >= :period_from
  AND a.period < :period_to
GROUP BY a.branch_code, a.rule_code
