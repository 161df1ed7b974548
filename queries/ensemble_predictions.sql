-- Per kind, mode, frame (CNN input frame or checkpoint) and cell: the fold ensemble with test-time augmentation.
-- $split: which cells to keep, by cells.split (normally 'test').
-- Only the newest model of each kind, mode, fold and frame counts (the view current_predictions).
-- Each fold's model is first averaged over augmentations, then the fold means are averaged (equal weight per fold).
WITH tta AS (
    SELECT p.kind, p.mode, p.frame, p.fold, p.cell_uid,
           avg(p.y_true) AS y_true, avg(p.y_pred) AS y_pred, count(*) AS n_aug
    FROM current_predictions AS p
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
