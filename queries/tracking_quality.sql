-- One row per well and field of plate $plate: tracks, cell-frames, why tracks stopped, and the share of flagged nodes.
-- Parameters: $plate (plate name).
SELECT
    t.well,
    t.field,
    count(DISTINCT t.track_id) AS n_tracks,
    count(*) AS n_cell_frames,
    count(*) FILTER (WHERE t.stop_reason = 'edge') AS stopped_edge,
    count(*) FILTER (WHERE t.stop_reason = 'lost') AS stopped_lost,
    count(*) FILTER (WHERE t.stop_reason = 'end') AS reached_end,
    count(*) FILTER (WHERE t.stop_reason = 'divided') AS divided,
    avg(CAST(t.flag_jump OR t.flag_area OR t.flag_lost AS DOUBLE)) AS share_flagged,
    avg(t.displacement_px) AS mean_displacement_px
FROM tracks AS t
WHERE t.plate = $plate
GROUP BY t.well, t.field
ORDER BY t.well, t.field
