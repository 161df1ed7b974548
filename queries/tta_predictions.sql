-- Per kind, mode, frame (CNN input frame or checkpoint), fold and cell: the prediction averaged over test-time augmentations.
-- $split: which cells to keep, by cells.split (normally 'test').
-- Only the newest model of each kind, mode, fold and frame counts: the view current_predictions
-- (lnpstore/store/schema.py, VIEWS; older models' predictions stay stored). n_aug counts the rows averaged.
SELECT
    p.kind,
    p.mode,
    p.frame,
    p.fold,
    p.cell_uid,
    avg(p.y_true) AS y_true,
    avg(p.y_pred) AS y_pred,
    count(*) AS n_aug
FROM current_predictions AS p
WHERE p.cell_uid IN (SELECT c.cell_uid FROM cells AS c WHERE c.split = $split)
  AND p.y_pred IS NOT NULL
GROUP BY p.kind, p.mode, p.frame, p.fold, p.cell_uid
ORDER BY p.kind, p.mode, p.frame, p.fold, p.cell_uid
