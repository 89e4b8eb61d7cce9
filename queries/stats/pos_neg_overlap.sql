-- Rows whose negatives are not negative: a short negative tag that is also a positive tag,
-- or a negative description identical to the positive one. Both should be (near) zero.
-- Usage: hqflow sql -t refined=refined/ -f queries/stats/pos_neg_overlap.sql
SELECT count(*)                                                          AS refined_rows,
       sum(CASE WHEN cardinality(array_intersect(short_pos, short_neg)) > 0
                THEN 1 ELSE 0 END)                                       AS rows_with_shared_tags,
       sum(CASE WHEN lower(trim(long_pos)) = lower(trim(long_neg))
                THEN 1 ELSE 0 END)                                       AS rows_with_same_descriptions,
       round(avg(cardinality(array_intersect(short_pos, short_neg))
                 * 1.0 / cardinality(short_neg)), 4)                     AS mean_shared_share_of_neg_tags
FROM refined
WHERE long_pos IS NOT NULL;
