-- The DFN score distribution of a table with a dfn_score column (scored or refined), in
-- buckets of 0.05, with the cumulative share of rows at or above each bucket: read off the
-- threshold that keeps a given fraction (DFN keeps 15%, DataComp's baseline 30%).
-- Usage: hqflow sql -t scored=scored/ -f queries/stats/score_histogram.sql
WITH buckets AS (
    SELECT floor(dfn_score * 20) / 20 AS bucket, count(*) AS n
    FROM scored
    WHERE dfn_score IS NOT NULL
    GROUP BY floor(dfn_score * 20) / 20
)
SELECT bucket,
       n,
       round(sum(n) OVER (ORDER BY bucket DESC) * 1.0 / sum(n) OVER (), 4) AS share_at_or_above
FROM buckets
ORDER BY bucket;
