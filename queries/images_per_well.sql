-- One row per well of plate $plate: dose, exclusion, and its images per status (all fields, frames, channels).
-- $plate: plate name, as `lnpstore info STORE` lists it.
SELECT
    i.well,
    w.dose_ng,
    w.is_control,
    w.excluded,
    count(DISTINCT i.field) AS n_fields,
    count(DISTINCT i.frame) AS n_frames,
    count(*) AS n_images,
    count(*) FILTER (WHERE i.status = 'ok') AS n_ok,
    count(*) FILTER (WHERE i.status = 'missing') AS n_missing,
    count(*) FILTER (WHERE i.status = 'unreadable') AS n_unreadable,
    count(*) FILTER (WHERE i.status = 'wrong_size') AS n_wrong_size,
    count(*) FILTER (WHERE i.status = 'wrong_dtype') AS n_wrong_dtype,
    count(*) FILTER (WHERE i.status = 'unknown_channel') AS n_unknown_channel,
    w.exclude_reason
FROM images i
JOIN wells w USING (plate, well)
WHERE i.plate = $plate
GROUP BY ALL
ORDER BY i.well;
