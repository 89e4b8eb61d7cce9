-- Evaluation, generated pools only: the text prefilter's decisions against the hidden truth
-- (truth_quality says what each caption really is). Reading truth_* is for evaluation only.
-- Usage: hqflow sql -t pool=PATH -f queries/text_prefilter.sql -f queries/prefilter_vs_truth.sql
SELECT truth_quality,
       count(*)                                              AS total_rows,
       sum(CASE WHEN filter_reason IS NULL THEN 1 ELSE 0 END) AS kept,
       sum(CASE WHEN filter_reason IS NULL THEN 0 ELSE 1 END) AS dropped
FROM prefiltered
GROUP BY truth_quality
ORDER BY total_rows DESC, truth_quality;
