-- Per kind, mode, frame (CNN input frame or checkpoint), fold and cell: the prediction averaged over test-time augmentations.
-- $split: which cells to keep, by cells.split (normally 'test').
-- Only the newest model of each kind, mode, fold and frame counts (a re-run with changed settings trains a new
-- model_id beside the old one; its predictions replace the old ones here, which stay stored); n_aug counts the rows averaged.
WITH current AS (  -- per kind, mode, fold and frame, the newest model (models.created_at; no models row: oldest)
    SELECT kind, mode, fold, frame, model_id
    FROM (
        SELECT k.kind, k.mode, k.fold, k.frame, k.model_id,
               row_number() OVER (
                   PARTITION BY k.kind, k.mode, k.fold, k.frame
                   ORDER BY m.created_at DESC NULLS LAST, k.model_id DESC
               ) AS rank
        FROM (SELECT DISTINCT kind, mode, fold, frame, model_id FROM predictions) AS k
        LEFT JOIN models AS m USING (model_id)
    )
    WHERE rank = 1
)
SELECT
    p.kind,
    p.mode,
    p.frame,
    p.fold,
    p.cell_uid,
    avg(p.y_true) AS y_true,
    avg(p.y_pred) AS y_pred,
    count(*) AS n_aug
FROM predictions AS p
JOIN current USING (kind, mode, fold, frame, model_id)
WHERE p.cell_uid IN (SELECT c.cell_uid FROM cells AS c WHERE c.split = $split)
  AND p.y_pred IS NOT NULL
GROUP BY p.kind, p.mode, p.frame, p.fold, p.cell_uid
ORDER BY p.kind, p.mode, p.frame, p.fold, p.cell_uid
