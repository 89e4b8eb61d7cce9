-- Why rows of a refined table have no refinement, and how many.
-- Usage: hqflow sql -t refined=refined/ -f queries/stats/refine_errors.sql
SELECT coalesce(refine_error, 'refined') AS outcome, count(*) AS rows
FROM refined
GROUP BY coalesce(refine_error, 'refined')
ORDER BY rows DESC;
