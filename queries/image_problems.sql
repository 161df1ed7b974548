-- One row per image of plate $plate whose status is not 'ok', with what is wrong and what to do.
-- $plate: plate name, as `lnpstore info STORE` lists it.
SELECT
    well,
    field,
    frame,
    channel,
    status,
    status_detail,
    path
FROM images
WHERE plate = $plate AND status <> 'ok'
ORDER BY well, field, frame, channel;
