-- One row per ingested plate: grid, wells used and excluded, and image counts per status.
-- Parameters: none.
SELECT
    p.plate,
    p.instrument,
    p.pixel_size_um,
    p.n_wells,
    p.n_fields,
    p.n_frames,
    p.frame_interval_min,
    p.n_images,
    count(*) FILTER (WHERE i.status = 'ok') AS n_ok,
    count(*) FILTER (WHERE i.status = 'missing') AS n_missing,
    count(*) FILTER (WHERE i.status = 'unreadable') AS n_unreadable,
    count(*) FILTER (WHERE i.status = 'wrong_size') AS n_wrong_size,
    count(*) FILTER (WHERE i.status = 'wrong_dtype') AS n_wrong_dtype,
    count(*) FILTER (WHERE i.status = 'unknown_channel') AS n_unknown_channel,
    (SELECT count(*) FROM wells w WHERE w.plate = p.plate AND w.excluded) AS n_wells_excluded,
    p.data_version,
    p.ingested_at
FROM plates p
LEFT JOIN images i ON i.plate = p.plate
GROUP BY ALL
ORDER BY p.plate;
