-- Evaluation, generated pools only: the DFN filter's decisions against the hidden truth
-- (truth_quality says what each caption really is). Reading truth_* is for evaluation only.
-- Usage: hqflow sql -t pool=PATH -f queries/text_prefilter.sql -f queries/dfn_filter.sql \
--          -f queries/dfn_vs_truth.sql
SELECT s.truth_quality,
       count(*)                                                  AS scored_rows,
       count(k.uid)                                              AS kept,
       round(100.0 * count(k.uid) / count(*), 1)                 AS kept_pct,
       round(avg(s.dfn_score), 4)                                AS mean_score
FROM scored s
LEFT JOIN dfn_kept k ON s.uid = k.uid
GROUP BY s.truth_quality
ORDER BY mean_score DESC NULLS LAST, s.truth_quality;
