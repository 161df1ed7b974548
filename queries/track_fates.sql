-- One row per track of plate $plate: where it begins and ends, its length, its parent and lineage, and its fate
-- (reached_end, left_field, lost, divided, missing_image), from its last node's stop_reason.
-- Parameters: $plate (plate name).
SELECT
    t.well,
    t.field,
    t.track_id,
    any_value(t.cell_uid) AS cell_uid,
    any_value(t.parent_track_id) AS parent_track_id,
    any_value(t.lineage_id) AS lineage_id,
    min(t.frame) AS first_frame,
    max(t.frame) AS last_frame,
    count(*) AS length_frames,
    CASE arg_max(t.stop_reason, t.frame)
        WHEN 'end' THEN 'reached_end'
        WHEN 'edge' THEN 'left_field'
        ELSE arg_max(t.stop_reason, t.frame)
    END AS fate,
    count(*) FILTER (WHERE t.flag_jump OR t.flag_area OR t.flag_lost) AS flagged_nodes
FROM tracks AS t
WHERE t.plate = $plate
GROUP BY t.well, t.field, t.track_id
ORDER BY t.well, t.field, t.track_id
