-- 月度工作进展报告 二、预警情况 and 三、回款与预付: alerts per branch and rule, as the rule
-- DAGs wrote them. "Of M": a period inside M ('YYYY-MM', or a day 'YYYY-MM-DD' of a daily
-- DAG), i.e. :period <= period < :next_period as text.
--   new_alerts       open alerts of M
--   earlier_open     alerts of earlier periods still open
--   resolved         alerts of M that a rerun resolved
--   critical_alerts  open critical alerts of M
--   metric_total     Σ metric_value of the open alerts of M (e.g. the unpaid amount)
--   institutions     institutions concerned by the open alerts of M
-- Params: :period, :next_period, :rule_codes, :branch_code (NULL = every branch).
SELECT a.branch_code, a.rule_code,
       SUM(CASE WHEN a.status = 'open' AND a.period >= :period THEN 1 ELSE 0 END) AS new_alerts,
       SUM(CASE WHEN a.status = 'open' AND a.period < :period THEN 1 ELSE 0 END) AS earlier_open,
       SUM(CASE WHEN a.status = 'resolved' AND a.period >= :period THEN 1 ELSE 0 END) AS resolved,
       SUM(CASE WHEN a.status = 'open' AND a.period >= :period AND a.severity = 'critical'
                THEN 1 ELSE 0 END) AS critical_alerts,
       SUM(CASE WHEN a.status = 'open' AND a.period >= :period THEN a.metric_value ELSE 0 END)
           AS metric_total,
       COUNT(DISTINCT CASE WHEN a.status = 'open' AND a.period >= :period THEN a.institution_code END)
           AS institutions
FROM alerts a
WHERE a.rule_code IN :rule_codes
  AND a.period < :next_period
  AND (a.status = 'open' OR a.period >= :period)
  AND (:branch_code IS NULL OR a.branch_code = :branch_code)
GROUP BY a.branch_code, a.rule_code
ORDER BY a.branch_code, a.rule_code
