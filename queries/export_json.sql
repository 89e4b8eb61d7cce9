-- The refined texts as one JSON object keyed by uid, without images: the form HQ-CLIP
-- released its refined datasets in (VLM-150M, VLM-1B). Rows without a refinement are left out.
-- Usage: hqflow sql -t refined=refined/ -f queries/export_json.sql --format json-keyed -o refined.json
SELECT uid, long_pos, long_neg, short_pos, short_neg
FROM refined
WHERE refine_error IS NULL
ORDER BY uid;
