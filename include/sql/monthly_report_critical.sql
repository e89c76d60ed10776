-- 月度工作进展报告 二、预警情况 (the critical ones listed) and 五、下一步工作 (a sentence per
-- open critical alert, referrals included): open critical alerts of M and of earlier
-- periods, as the rule DAGs wrote them.
-- Params: :next_period, :rule_codes, :branch_code (NULL = every branch).
SELECT a.alert_id, a.rule_code, a.period, a.branch_code, b.branch_name, a.institution_code,
       i.institution_name, a.generic_name, a.category, a.order_id, a.batch_code,
       a.metric_value, a.threshold_value, a.message
FROM alerts a
LEFT JOIN branches b ON b.branch_code = a.branch_code
LEFT JOIN institutions i ON i.institution_code = a.institution_code
WHERE a.status = 'open'
  AND a.severity = 'critical'
  AND a.rule_code IN :rule_codes
  AND a.period < :next_period
  AND (:branch_code IS NULL OR a.branch_code = :branch_code)
ORDER BY a.period DESC, a.branch_code, a.rule_code, a.institution_code, a.generic_name, a.order_id,
         a.alert_id
