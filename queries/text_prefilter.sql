-- Text prefilter: cheap rules on the alt-text alone, run before any model, with the reason
-- every dropped row was dropped (nothing disappears without a trace).
-- Creates the view `prefiltered`: the pool plus `filter_reason` (NULL when the row is kept),
-- then shows how many rows each rule dropped.
-- Usage: hqflow sql -t pool=PATH -f queries/text_prefilter.sql
CREATE OR REPLACE VIEW prefiltered AS
SELECT *,
       CASE
         WHEN img IS NULL                                    THEN 'no_image'
         WHEN txt IS NULL OR trim(txt) = ''                  THEN 'empty_text'
         WHEN regexp_like(trim(txt), '^[a-z_-]*[0-9]+\.(jpe?g|png|gif|webp|bmp)$', 'i')
                                                             THEN 'file_name'
         WHEN regexp_like(txt, 'buy |cheap|discount|free shipping|best price|subscribe|click here', 'i')
                                                             THEN 'spam'
         WHEN regexp_like(txt, '^posted on |by admin$', 'i') THEN 'boilerplate'
         WHEN regexp_like(txt, '^(canon|nikon|sony|olympus|fujifilm|panasonic) ', 'i')
                                                             THEN 'camera_model'
         WHEN array_length(string_to_array(trim(txt), ' ')) < 2
                                                             THEN 'too_short'
       END AS filter_reason
FROM pool;

SELECT coalesce(filter_reason, '(kept)')                 AS reason,
       count(*)                                          AS total_rows,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
FROM prefiltered
GROUP BY 1
ORDER BY total_rows DESC, reason;
