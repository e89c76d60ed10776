-- 年度考核 (domain.md DAG 8, seed 002 附件1): one row per public institution (as the
-- institutions table holds them now), judged over the calendar year Y, as of 31 December.
--   C1 (均完成约定采购量): every agreement with agreed_quantity > 0 active in Y is on target
--      (see assessment_agreements.sql: completion ≥ time progress on min(period_end, 31 Dec))
--   C2 (中选药品使用比例达到约定采购比例): for each such agreement, the selected quantity share
--      over the days of Y inside its agreement year ≥ agreed_ratio (no same-generic purchases:
--      reached)
--   C3 (网采率): over Y, per category (:drug_min_rate, :hvc_min_rate; NULL = not judged), the
--      platform amount ≥ (min_rate − :eps) × the total amount; a category without purchases passes
--   ranking share: over drug generic names with a product selected in Y (a batch whose cycle
--      [start_date, cycle_end_date] overlaps Y), the quantity of products selected on the order
--      day (its batch's cycle covers it) ÷ the quantity of all products of those generic names,
--      any channel; rank_position among the institutions that pass C1 and have such purchases,
--      highest share first (ties: institution code), compared by cross-multiplication
-- The agreement CTEs are those of assessment_agreements.sql (keep them in step:
-- tests/test_annual_assessment.py checks in every scenario that the two agree).
-- Params: :year_start, :year_end, :drug_min_rate, :hvc_min_rate, :eps, :branch_code.
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
      AND a.agreed_quantity > 0
),
purchases AS (
    SELECT ac.agreement_id,
           SUM(CASE WHEN o.channel = 'platform' AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN o.quantity ELSE 0 END) AS cumulative_selected_quantity,
           SUM(CASE WHEN o.order_date >= ac.from_day AND o.channel = 'platform'
                     AND p.is_selected = TRUE AND p.batch_code = ac.batch_code
                    THEN o.quantity ELSE 0 END) AS selected_quantity,
           SUM(CASE WHEN o.order_date >= ac.from_day THEN o.quantity ELSE 0 END) AS same_generic_quantity
    FROM active ac
    JOIN products p ON p.generic_name = ac.generic_name
    JOIN orders o ON o.product_code = p.product_code AND o.institution_code = ac.institution_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= ac.period_start
      AND o.order_date <= ac.as_of_date
    GROUP BY ac.agreement_id
),
agreement_checks AS (
    SELECT ac.institution_code,
           CASE WHEN COALESCE(pu.cumulative_selected_quantity, 0) * (pe.day_ordinal - ps.day_ordinal + 1)
                     >= (1 - :eps) * ac.agreed_quantity * (as_of.day_ordinal - ps.day_ordinal + 1)
                THEN 0 ELSE 1 END AS behind,
           CASE WHEN COALESCE(pu.same_generic_quantity, 0) <= 0 THEN 0
                WHEN pu.selected_quantity >= (ac.agreed_ratio - :eps) * pu.same_generic_quantity THEN 0
                ELSE 1 END AS ratio_low
    FROM active ac
    JOIN work_calendar ps ON ps.day = ac.period_start
    JOIN work_calendar pe ON pe.day = ac.period_end
    JOIN work_calendar as_of ON as_of.day = ac.as_of_date
    LEFT JOIN purchases pu ON pu.agreement_id = ac.agreement_id
),
by_agreements AS (
    SELECT institution_code, COUNT(*) AS agreements, SUM(behind) AS agreements_behind,
           SUM(ratio_low) AS agreements_ratio_low
    FROM agreement_checks
    GROUP BY institution_code
),
online AS (
    SELECT o.institution_code,
           SUM(CASE WHEN p.category = 'drug' AND o.channel = 'platform' THEN o.amount ELSE 0 END) AS drug_platform_amount,
           SUM(CASE WHEN p.category = 'drug' THEN o.amount ELSE 0 END) AS drug_total_amount,
           SUM(CASE WHEN p.category = 'high_value_consumable' AND o.channel = 'platform'
                    THEN o.amount ELSE 0 END) AS hvc_platform_amount,
           SUM(CASE WHEN p.category = 'high_value_consumable' THEN o.amount ELSE 0 END) AS hvc_total_amount
    FROM orders o
    JOIN public_institutions pi ON pi.institution_code = o.institution_code
    JOIN products p ON p.product_code = o.product_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= :year_start
      AND o.order_date <= :year_end
      AND p.category IN ('drug', 'high_value_consumable')
    GROUP BY o.institution_code
),
ranked_generics AS (
    SELECT DISTINCT p.generic_name
    FROM products p
    JOIN batches b ON b.batch_code = p.batch_code
    WHERE p.is_selected = TRUE
      AND p.category = 'drug'
      AND b.start_date <= :year_end
      AND b.cycle_end_date >= :year_start
),
shares AS (
    SELECT o.institution_code,
           SUM(CASE WHEN p.is_selected = TRUE AND b.start_date <= o.order_date AND b.cycle_end_date >= o.order_date
                    THEN o.quantity ELSE 0 END) AS share_selected_quantity,
           SUM(o.quantity) AS share_generic_quantity
    FROM orders o
    JOIN public_institutions pi ON pi.institution_code = o.institution_code
    JOIN products p ON p.product_code = o.product_code
    JOIN ranked_generics rg ON rg.generic_name = p.generic_name
    LEFT JOIN batches b ON b.batch_code = p.batch_code
    WHERE o.cancelled = FALSE
      AND o.order_date >= :year_start
      AND o.order_date <= :year_end
      AND p.category = 'drug'
    GROUP BY o.institution_code
),
judged AS (
    SELECT pi.institution_code, pi.institution_name, pi.branch_code,
           COALESCE(ba.agreements, 0) AS agreements,
           COALESCE(ba.agreements_behind, 0) AS agreements_behind,
           COALESCE(ba.agreements_ratio_low, 0) AS agreements_ratio_low,
           COALESCE(ol.drug_platform_amount, 0) AS drug_platform_amount,
           COALESCE(ol.drug_total_amount, 0) AS drug_total_amount,
           COALESCE(ol.hvc_platform_amount, 0) AS hvc_platform_amount,
           COALESCE(ol.hvc_total_amount, 0) AS hvc_total_amount,
           COALESCE(sh.share_selected_quantity, 0) AS share_selected_quantity,
           COALESCE(sh.share_generic_quantity, 0) AS share_generic_quantity,
           CASE WHEN COALESCE(ba.agreements_behind, 0) = 0 THEN 1 ELSE 0 END AS c1_pass,
           CASE WHEN COALESCE(ba.agreements_ratio_low, 0) = 0 THEN 1 ELSE 0 END AS c2_pass,
           CASE WHEN :drug_min_rate IS NULL OR COALESCE(ol.drug_total_amount, 0) <= :eps
                     OR ol.drug_platform_amount >= (:drug_min_rate - :eps) * ol.drug_total_amount
                THEN 1 ELSE 0 END AS c3_drug_pass,
           CASE WHEN :hvc_min_rate IS NULL OR COALESCE(ol.hvc_total_amount, 0) <= :eps
                     OR ol.hvc_platform_amount >= (:hvc_min_rate - :eps) * ol.hvc_total_amount
                THEN 1 ELSE 0 END AS c3_hvc_pass
    FROM public_institutions pi
    LEFT JOIN by_agreements ba ON ba.institution_code = pi.institution_code
    LEFT JOIN online ol ON ol.institution_code = pi.institution_code
    LEFT JOIN shares sh ON sh.institution_code = pi.institution_code
),
rankable AS (
    SELECT institution_code, share_selected_quantity AS sel, share_generic_quantity AS tot
    FROM judged
    WHERE c1_pass = 1 AND share_generic_quantity > 0
),
positions AS (
    SELECT r.institution_code, 1 + COUNT(o.institution_code) AS rank_position
    FROM rankable r
    LEFT JOIN rankable o
           ON o.sel * r.tot > r.sel * o.tot
           OR (o.sel * r.tot = r.sel * o.tot AND o.institution_code < r.institution_code)
    GROUP BY r.institution_code
)
SELECT j.*, j.c1_pass + j.c2_pass + j.c3_drug_pass * j.c3_hvc_pass AS criteria_met,
       po.rank_position
FROM judged j
LEFT JOIN positions po ON po.institution_code = j.institution_code
ORDER BY CASE WHEN po.rank_position IS NULL THEN 1 ELSE 0 END, po.rank_position,
         j.c1_pass DESC, j.institution_code
