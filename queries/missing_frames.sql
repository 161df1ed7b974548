-- One row per well, field and channel of plate $plate with missing frames: which frames, how many.
-- $plate: plate name, as `lnpstore info STORE` lists it.
SELECT
    well,
    field,
    channel,
    count(*) AS n_missing,
    list(frame ORDER BY frame) AS missing_frames
FROM images
WHERE plate = $plate AND status = 'missing'
GROUP BY well, field, channel
ORDER BY well, field, channel;
