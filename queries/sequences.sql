-- Per-frame CNN embeddings of frames 1..$checkpoint per (cell, augmentation) of one fold's CNN, with targets and role (train|val|test), ordered by role, cell, augmentation, frame.
-- $mode: classify | regress (selects the fold's CNN: models.kind = 'cnn' and models.mode = $mode)
-- $fold: CV fold k 0..4: role 'train' = split 'train' and fold <> k, 'val' = fold k, 'test' = split 'test'
-- $checkpoint: last input frame t (frames 1..t are returned)
-- The CNN is the fold's latest (created_at) model of kind 'cnn'; control and excluded cells never appear.
WITH cnn AS (
    SELECT model_id
    FROM models
    WHERE kind = 'cnn' AND mode = $mode AND fold = $fold
    ORDER BY created_at DESC NULLS LAST, model_id DESC
    LIMIT 1
),
roles AS (
    SELECT cell_uid, label, gfp_log_centered, role FROM fold_roles WHERE cv_fold = $fold
)
SELECT
    r.role,
    e.cell_uid,
    e.aug,
    e.frame,
    e.embedding,
    r.label,
    r.gfp_log_centered,
    e.model_id AS cnn_model_id
FROM embeddings AS e
JOIN cnn USING (model_id)
JOIN roles AS r USING (cell_uid)
WHERE e.frame BETWEEN 1 AND $checkpoint
ORDER BY r.role, e.cell_uid, e.aug, e.frame
