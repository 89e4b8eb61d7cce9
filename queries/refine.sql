-- HQ-CLIP refinement: the pairs a DFN keeps, each with the four texts a vision-language model
-- writes for it, in the refined contract (schemas/refined.json; the shape of HQ-CLIP's
-- VLM-150M). Keeps the top 30% of a scored pool by dfn_score (DataComp's CLIP-score baseline;
-- DFN keeps the top 15%: change 0.70 to 0.85). Input: the output of queries/dfn_scored.sql.
-- The backend is `hqflow.refine_backend`, else hqflow's built-in refiner (hqflow-world-vlm);
-- for a VLM such as Qwen2-VL behind an OpenAI-compatible server (vLLM, SGLang, Ollama,
-- llama.cpp), register it and make it the session's backend.
-- Usage: hqflow run queries/refine.sql -t scored=scored/ --out refined/
--        hqflow run queries/refine.sql -t scored=scored/ --out refined/ \
--          -m qwen='http://HOST:PORT/v1?model=Qwen/Qwen2-VL-7B-Instruct' -s hqflow.refine_backend=qwen
--        hqflow schema check -t refined=refined/ --schema refined
-- A row whose refinement failed is kept with NULL texts and a refine_error; the reasons are
-- counted at the end of the run. Answers are cached: a rerun computes no row twice.
WITH kept AS (
    SELECT uid, txt, img, dfn_score
    FROM scored
    WHERE dfn_score >= (SELECT approx_percentile_cont(dfn_score, 0.70) FROM scored)
), refined AS (
    SELECT *, lvlm_refine(img, txt) AS r FROM kept
)
SELECT uid,
       txt,
       img,
       dfn_score,
       r['long_pos']  AS long_pos,
       r['long_neg']  AS long_neg,
       r['short_pos'] AS short_pos,
       r['short_neg'] AS short_neg,
       model_id()          AS refine_model,
       CASE WHEN img IS NULL THEN 'no image'
            WHEN txt IS NULL THEN 'no alt-text'
            WHEN r IS NULL THEN 'lvlm_refine failed (reasons counted at the end of the run)'
       END            AS refine_error
FROM refined;
