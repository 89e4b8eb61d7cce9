-- Pool overview: size, duplicate keys, missing images and captions, typical sizes.
-- Usage: hqflow sql -t pool=PATH -f queries/pool_overview.sql
SELECT count(*)                                                      AS total_rows,
       count(DISTINCT uid)                                           AS distinct_uids,
       sum(CASE WHEN img IS NULL THEN 1 ELSE 0 END)                  AS no_image,
       sum(CASE WHEN txt IS NULL OR trim(txt) = '' THEN 1 ELSE 0 END) AS no_text,
       round(avg(byte_length(img)))                                 AS mean_image_bytes,
       round(avg(character_length(txt)), 1)                          AS mean_text_chars
FROM pool;
