-- The most frequent short tags of a refined table, positive and negative, with the share of
-- refined rows that carry each. A healthy refinement has varied positive tags and negative
-- tags that are not just the positive ones again (see pos_neg_overlap.sql).
-- Usage: hqflow sql -t refined=refined/ -f queries/stats/tag_frequencies.sql
WITH tags AS (
    SELECT 'positive' AS kind, unnest(short_pos) AS tag FROM refined WHERE short_pos IS NOT NULL
    UNION ALL
    SELECT 'negative' AS kind, unnest(short_neg) AS tag FROM refined WHERE short_neg IS NOT NULL
), refined_rows AS (
    SELECT count(*) AS n FROM refined WHERE short_pos IS NOT NULL
)
SELECT kind,
       lower(trim(tag))                          AS tag,
       count(*)                                  AS uses,
       round(count(*) * 1.0 / max(refined_rows.n), 4) AS share_of_rows
FROM tags CROSS JOIN refined_rows
GROUP BY kind, lower(trim(tag))
ORDER BY uses DESC, kind, tag
LIMIT 50;
