-- Evaluation, generated pools only: of the alt-texts with exactly one thing wrong, which
-- kinds of mistake the DFN filter lets through (truth_changed: shape, color, size,
-- position, relation, background color or kind). A kind kept about as often as correct
-- alt-texts are is one the filter model cannot see. Reading truth_* is for evaluation only.
-- Usage: hqflow sql -t pool=PATH -f queries/text_prefilter.sql -f queries/dfn_filter.sql \
--          -f queries/dfn_wrong_kept.sql
SELECT s.truth_changed                                           AS wrong,
       count(*)                                                  AS scored_rows,
       count(k.uid)                                              AS kept,
       round(100.0 * count(k.uid) / count(*), 1)                 AS kept_pct,
       round(avg(s.dfn_score), 4)                                AS mean_score
FROM scored s
LEFT JOIN dfn_kept k ON s.uid = k.uid
WHERE s.truth_quality = 'wrong_attr'
GROUP BY s.truth_changed
ORDER BY kept_pct DESC, wrong;
