-- 年度报告草稿 · 一、总体进展: institutions each branch supervises, by ownership, and those
-- with an agreement active in the report year (agreement year overlapping
-- [:year_start, :year_end]) with the batches, generic names and agreements involved.
SELECT i.branch_code,
       COUNT(*) AS institutions,
       SUM(CASE WHEN i.ownership = 'public' THEN 1 ELSE 0 END) AS public_institutions,
       SUM(CASE WHEN i.ownership = 'military' THEN 1 ELSE 0 END) AS military_institutions,
       SUM(CASE WHEN i.ownership = 'private' THEN 1 ELSE 0 END) AS private_institutions,
       SUM(CASE WHEN EXISTS (
             SELECT 1 FROM agreements a
             WHERE a.institution_code = i.institution_code
               AND a.period_start <= :year_end AND a.period_end >= :year_start)
           THEN 1 ELSE 0 END) AS institutions_with_agreements
FROM institutions i
WHERE i.branch_code IN :branch_codes
GROUP BY i.branch_code
