-- Per kind, mode, frame (CNN input frame or checkpoint) and cell: the fold ensemble with test-time augmentation.
-- $split: which cells to keep, by cells.split (normally 'test').
-- Only the newest model of each kind, mode, fold and frame counts (as in tta_predictions).
-- Each fold's model is first averaged over augmentations, then the fold means are averaged (equal weight per fold).
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
),
tta AS (
    SELECT p.kind, p.mode, p.frame, p.fold, p.cell_uid,
           avg(p.y_true) AS y_true, avg(p.y_pred) AS y_pred, count(*) AS n_aug
    FROM predictions AS p
    JOIN current USING (kind, mode, fold, frame, model_id)
    WHERE p.cell_uid IN (SELECT c.cell_uid FROM cells AS c WHERE c.split = $split)
      AND p.y_pred IS NOT NULL
    GROUP BY p.kind, p.mode, p.frame, p.fold, p.cell_uid
)
SELECT
    kind,
    mode,
    frame,
    cell_uid,
    avg(y_true) AS y_true,
    avg(y_pred) AS y_pred,
    count(*) AS n_folds,
    sum(n_aug) AS n_rows
FROM tta
GROUP BY kind, mode, frame, cell_uid
ORDER BY kind, mode, frame, cell_uid
