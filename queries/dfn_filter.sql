-- DFN filter: score the rows the text prefilter kept with dfn_score and keep the top 30%
-- (DataComp's CLIP-score baseline; DFN keeps the top 15%: change 0.70 to 0.85). Without a
-- model argument or `SET hqflow.dfn_model`, dfn_score uses hqflow's built-in model.
-- Creates the table `scored` (prefiltered rows plus dfn_score, each score computed once) and
-- the view `dfn_kept`, then shows the threshold and what it keeps.
-- Usage: hqflow sql -t pool=PATH -f queries/text_prefilter.sql -f queries/dfn_filter.sql
CREATE TABLE scored AS
SELECT * EXCEPT (filter_reason), dfn_score(img, txt) AS dfn_score
FROM prefiltered
WHERE filter_reason IS NULL;

CREATE OR REPLACE VIEW dfn_kept AS
SELECT *
FROM scored
WHERE dfn_score >= (SELECT approx_percentile_cont(dfn_score, 0.70) FROM scored);

SELECT count(*)                                                  AS scored_rows,
       (SELECT count(*) FROM dfn_kept)                           AS kept_rows,
       round((SELECT min(dfn_score) FROM dfn_kept), 4)           AS threshold,
       round(avg(dfn_score), 4)                                  AS mean_score,
       sum(CASE WHEN dfn_score IS NULL THEN 1 ELSE 0 END)        AS unscored
FROM scored;
