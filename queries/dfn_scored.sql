-- DFN scores for the whole pool, materialized: every row with a caption, plus its
-- `dfn_score`. Written for `hqflow run`, which splits the pool into units, writes each
-- unit's shard when it is complete and resumes after a crash; then pick a threshold with
-- cheap queries over the scored table instead of scoring again.
-- Usage: hqflow run queries/dfn_scored.sql -t pool=PATH -m dfn=CHECKPOINT --out scored/
--        hqflow sql -t scored=scored/ "SELECT approx_percentile_cont(dfn_score, 0.7) FROM scored"
SELECT *, dfn_score(img, txt, 'dfn') AS dfn_score
FROM pool
WHERE txt IS NOT NULL AND trim(txt) <> ''
