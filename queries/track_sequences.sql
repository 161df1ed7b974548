-- Per-frame track measures of frames 1..$checkpoint per cell, as time-series inputs, with targets and role (train|val|test), ordered by role, cell, frame.
-- $fold: CV fold k 0..4: role 'train' = split 'train' and fold <> k, 'val' = fold k, 'test' = split 'test'
-- $checkpoint: last input frame t (frames 1..t are returned)
-- Channels: log_area (ln px^2), log1p_spots (ln(1 + LNP spot count)), log1p_lnp (ln(1 + mean LNP counts)),
-- mean_cs (counts), eccentricity, lnp_depth (LNP spot signal's mean distance from the centroid in equivalent
-- radii, tracks.lnp_radial_frac: it falls as particles reach the nucleus; 1 = the membrane before any spot).
-- A measure missing on a frame (a gap-filled node) carries the cell's last measured value forward.
-- Rows are the cell's own track (cells.cell_uid): under the 'follow' division rule a daughter's frames
-- are another cell_uid, so a cell that divided before $checkpoint has fewer than $checkpoint rows.
WITH roles AS (
    SELECT cell_uid, label, gfp_log_centered, role FROM fold_roles WHERE cv_fold = $fold
),
measured AS (
    SELECT
        r.role,
        t.cell_uid,
        t.frame,
        t.area_px,
        t.lnp_spots,
        t.mean_lnp,
        t.mean_cs,
        t.eccentricity,
        t.lnp_radial_frac,
        r.label,
        r.gfp_log_centered
    FROM tracks AS t
    JOIN roles AS r USING (cell_uid)
    WHERE t.frame BETWEEN 1 AND $checkpoint
),
carried AS (
    SELECT
        role,
        cell_uid,
        frame,
        last_value(area_px IGNORE NULLS) OVER w AS area_px,
        last_value(lnp_spots IGNORE NULLS) OVER w AS lnp_spots,
        last_value(mean_lnp IGNORE NULLS) OVER w AS mean_lnp,
        last_value(mean_cs IGNORE NULLS) OVER w AS mean_cs,
        last_value(eccentricity IGNORE NULLS) OVER w AS eccentricity,
        last_value(lnp_radial_frac IGNORE NULLS) OVER w AS lnp_radial_frac,
        label,
        gfp_log_centered
    FROM measured
    WINDOW w AS (PARTITION BY cell_uid ORDER BY frame ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
    role,
    cell_uid,
    frame,
    ln(greatest(coalesce(area_px, 1.0), 1.0)) AS log_area,
    ln(1.0 + greatest(coalesce(lnp_spots, 0), 0)) AS log1p_spots,
    ln(1.0 + greatest(coalesce(mean_lnp, 0.0), 0.0)) AS log1p_lnp,
    coalesce(mean_cs, 0.0) AS mean_cs,
    coalesce(eccentricity, 0.0) AS eccentricity,
    coalesce(lnp_radial_frac, 1.0) AS lnp_depth,
    label,
    gfp_log_centered
FROM carried
ORDER BY role, cell_uid, frame
