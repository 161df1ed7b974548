-- Per kind, mode, frame and metric: the fold ensemble's value (fold = -1), and the mean and sample sd over folds 0..4.
-- No parameters. Reads the `metrics` table written by `lnpstore evaluate`; oracle rows have frame 0.
SELECT
    kind,
    mode,
    frame,
    metric,
    max(CASE WHEN fold = -1 THEN value END) AS ensemble,
    avg(CASE WHEN fold >= 0 THEN value END) AS fold_mean,
    stddev_samp(CASE WHEN fold >= 0 THEN value END) AS fold_sd,
    count(CASE WHEN fold >= 0 THEN value END) AS n_folds,
    max(CASE WHEN fold = -1 THEN n_cells END) AS n_cells,
    any_value(run_id) AS run_id
FROM metrics
GROUP BY kind, mode, frame, metric
ORDER BY kind, mode, metric, frame
