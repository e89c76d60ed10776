-- 年度考核 (domain.md DAG 8, seed 002 附件1, seed 003 §五(七)): one row per agreement of a
-- public institution active in the judged year Y (its agreement year overlaps Y), with the
-- figures the assessment and the savings-retention estimate read. As of 31 December of Y.
--   as_of_date   = min(period_end, 31 Dec Y); from_day = max(period_start, 1 Jan Y)
--   completion   = selected platform quantity from period_start to as_of_date ÷ agreed quantity,
--                  compared with time progress on as_of_date (elapsed_days / total_days) by
--                  cross-multiplication: on_target = 1 when cumulative × total_days ≥
--                  (1 − :eps) × agreed × elapsed_days (an agreement ending in Y is judged at
--                  its period_end, where time progress is 1: completion ≥ 1). NULL when
--                  agreed_quantity = 0 (not assessed).
--   ratio_reached = selected quantity ≥ agreed_ratio × same-generic quantity over
--                  [from_day, as_of_date] (1 when there were no same-generic purchases;
--                  NULL when agreed_quantity = 0)
--   savings_gross = baseline_price × selected quantity − Σ quantity × unit_price over the
--                  selected platform purchases in [from_day, as_of_date] (NULL when the batch
--                  and generic have no baseline price); the caller counts a negative as 0
-- Same agreement figures as the CTEs of assessment_institutions.sql (keep them in step:
-- tests/test_annual_assessment.py checks in every scenario that the two agree).
-- Params: :year_start, :year_end, :eps, :branch_code (NULL = all).
WITH public_institutions AS (
    SELECT i.institution_code, i.institution_name, i.branch_code
    FROM institutions i
    WHERE i.ownership = 'public'
      AND (:branch_code IS NULL OR i.branch_code = :branch_code)
),
active AS (
    SELECT a.agreement_id, a.institution_code, a.batch_code, a.generic_name, a.period_start,
           a.period_end, a.agreed_quantity, a.agreed_ratio,
           CASE WHEN a.period_start > :year_start THEN a.period_start ELSE :year_start END AS from_day,
           CASE WHEN a.period_end < :year_end THEN a.period_end ELSE :year_end END AS as_of_date
    FROM agreements a
    JOIN public_institutions pi ON pi.institution_code = a.institution_code
    WHERE a.period_start <= :year_end
      AND a.period_end >= :year_start
),
purchases AS (
    SELECT ac.agreement_id,
           SUM(CASE WHEN o.channel = 'platform' AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN o.quantity ELSE 0 END) AS cumulative_selected_quantity,
           SUM(CASE WHEN o.order_date >= ac.from_day AND o.channel = 'platform'
                     AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN o.quantity ELSE 0 END) AS selected_quantity,
           SUM(CASE WHEN o.order_date >= ac.from_day AND o.channel = 'platform'
                     AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN o.quantity * o.unit_price ELSE 0 END) AS selected_value,
           SUM(CASE WHEN o.order_date >= ac.from_day THEN o.quantity ELSE 0 END) AS same_generic_quantity
    FROM active ac
    JOIN products p ON p.generic_name = ac.generic_name
    JOIN orders o ON o.product_code = p.product_code AND o.institution_code = ac.institution_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= ac.period_start
      AND o.order_date <= ac.as_of_date
    GROUP BY ac.agreement_id
),
figures AS (
    SELECT ac.*,
           COALESCE(pu.cumulative_selected_quantity, 0) AS cumulative_selected_quantity,
           COALESCE(pu.selected_quantity, 0) AS selected_quantity,
           COALESCE(pu.selected_value, 0) AS selected_value,
           COALESCE(pu.same_generic_quantity, 0) AS same_generic_quantity,
           as_of.day_ordinal - ps.day_ordinal + 1 AS elapsed_days,
           pe.day_ordinal - ps.day_ordinal + 1 AS total_days
    FROM active ac
    JOIN work_calendar ps ON ps.day = ac.period_start
    JOIN work_calendar pe ON pe.day = ac.period_end
    JOIN work_calendar as_of ON as_of.day = ac.as_of_date
    LEFT JOIN purchases pu ON pu.agreement_id = ac.agreement_id
)
SELECT f.agreement_id, f.institution_code, pi.institution_name, pi.branch_code, f.batch_code,
       b.batch_name, f.generic_name, f.period_start, f.period_end, f.from_day, f.as_of_date,
       f.agreed_quantity, f.agreed_ratio, f.cumulative_selected_quantity, f.selected_quantity,
       f.selected_value, f.same_generic_quantity, f.elapsed_days, f.total_days,
       CASE WHEN f.agreed_quantity <= 0 THEN NULL
            WHEN f.cumulative_selected_quantity * f.total_days
                 >= (1 - :eps) * f.agreed_quantity * f.elapsed_days THEN 1 ELSE 0 END AS on_target,
       CASE WHEN f.agreed_quantity <= 0 THEN NULL
            WHEN f.same_generic_quantity <= 0 THEN 1
            WHEN f.selected_quantity >= (f.agreed_ratio - :eps) * f.same_generic_quantity THEN 1
            ELSE 0 END AS ratio_reached,
       bp.baseline_price,
       CASE WHEN bp.baseline_price IS NULL THEN NULL
            ELSE bp.baseline_price * f.selected_quantity - f.selected_value END AS savings_gross
FROM figures f
JOIN public_institutions pi ON pi.institution_code = f.institution_code
JOIN batches b ON b.batch_code = f.batch_code
LEFT JOIN baseline_prices bp ON bp.batch_code = f.batch_code AND bp.generic_name = f.generic_name
ORDER BY pi.branch_code, f.institution_code, f.batch_code, f.generic_name, f.period_start
