-- 月度工作进展报告 四、飞检线索 (domain.md DAG 7, seed 002 §二(二)): the institutions with
-- the worst execution in M, ranked by the sum over their open alerts of M of a severity
-- weight (profile [monthly_report] severity_weights); ties: the lower completion rate
-- (Σ cumulative selected ÷ Σ agreed over its agreements of M with an agreed quantity; an
-- institution without one comes after those with one), then the institution code.
-- Params: :period, :next_period, :rule_codes, :w_critical, :w_high, :w_warning, :w_info,
--         :lead_limit, :branch_code (NULL = every branch).
WITH scored AS (
    SELECT a.institution_code,
           SUM(CASE a.severity WHEN 'critical' THEN :w_critical WHEN 'high' THEN :w_high
                               WHEN 'warning' THEN :w_warning WHEN 'info' THEN :w_info ELSE 0 END) AS score,
           COUNT(*) AS open_alerts
    FROM alerts a
    WHERE a.status = 'open'
      AND a.institution_code IS NOT NULL
      AND a.rule_code IN :rule_codes
      AND a.period >= :period
      AND a.period < :next_period
      AND (:branch_code IS NULL OR a.branch_code = :branch_code)
    GROUP BY a.institution_code
),
completion AS (
    SELECT f.institution_code,
           SUM(f.agreed_quantity) AS agreed_quantity,
           SUM(f.cumulative_selected_quantity) AS cumulative_selected_quantity
    FROM institution_file_metrics f
    WHERE f.period = :period
      AND f.agreed_quantity > 0
    GROUP BY f.institution_code
)
SELECT s.institution_code, i.institution_name, i.branch_code, b.branch_name, i.ownership,
       s.score, s.open_alerts, c.agreed_quantity, c.cumulative_selected_quantity
FROM scored s
JOIN institutions i ON i.institution_code = s.institution_code
LEFT JOIN branches b ON b.branch_code = i.branch_code
LEFT JOIN completion c ON c.institution_code = s.institution_code
ORDER BY s.score DESC,
         CASE WHEN c.agreed_quantity > 0 THEN 0 ELSE 1 END,
         CASE WHEN c.agreed_quantity > 0 THEN c.cumulative_selected_quantity * 1.0 / c.agreed_quantity END,
         s.institution_code
LIMIT :lead_limit
