-- One row per well of plate $plate: dose, cells tracked, complete, positive (label 1), split counts, mean target.
-- Parameters: $plate (plate name).
SELECT
    c.well,
    any_value(c.dose_ng) AS dose_ng,
    any_value(c.is_control) AS is_control,
    count(*) AS n_cells,
    count(*) FILTER (WHERE c.complete) AS n_complete,
    count(*) FILTER (WHERE c.label = 1) AS n_positive,
    count(*) FILTER (WHERE c.split = 'train') AS n_train,
    count(*) FILTER (WHERE c.split = 'test') AS n_test,
    avg(c.gfp_log_centered) AS mean_gfp_log_centered
FROM cells AS c
WHERE c.plate = $plate
GROUP BY c.well
ORDER BY c.well
