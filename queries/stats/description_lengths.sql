-- How long the refined texts are: words in the long descriptions and tags per row, as
-- quantiles. HQ-CLIP's long descriptions run to a few sentences; a negative description
-- should be about as long as its positive one, or length alone gives it away.
-- Usage: hqflow sql -t refined=refined/ -f queries/stats/description_lengths.sql
WITH lengths AS (
    SELECT cardinality(string_to_array(trim(long_pos), ' ')) AS pos_words,
           cardinality(string_to_array(trim(long_neg), ' ')) AS neg_words,
           cardinality(short_pos)                           AS pos_tags,
           cardinality(short_neg)                           AS neg_tags
    FROM refined
    WHERE long_pos IS NOT NULL
)
SELECT count(*)                                         AS refined_rows,
       round(avg(pos_words), 1)                         AS mean_pos_words,
       approx_percentile_cont(pos_words, 0.5)           AS median_pos_words,
       max(pos_words)                                   AS max_pos_words,
       round(avg(neg_words), 1)                         AS mean_neg_words,
       round(avg(abs(pos_words - neg_words)), 1)        AS mean_pos_neg_word_gap,
       round(avg(pos_tags), 2)                          AS mean_pos_tags,
       round(avg(neg_tags), 2)                          AS mean_neg_tags
FROM lengths;
