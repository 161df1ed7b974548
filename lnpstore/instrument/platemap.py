"""The plate map: which well got which mRNA dose, and which wells are controls.

A plate map is a CSV or Parquet file (or a polars DataFrame) with the columns

=============  ========  =====================================================================
column         type      meaning
=============  ========  =====================================================================
well           text      well id, row letter + column (``C03``; ``c3`` is accepted)
dose_ng        number    mRNA dose in ng (finite, >= 0)
is_control     boolean   optional: control well (LNPs without mRNA); missing -> ``dose_ng == 0``
=============  ========  =====================================================================

Other columns are ignored. :func:`read_plate_map` validates the file on its own;
:func:`check_plate_map_wells` checks it against the wells a plate has images of.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl

from lnpstore.store.errors import PlateMapError

PlateMapSource = str | os.PathLike | pl.DataFrame

_WELL_RE = re.compile(r"^\s*([A-Pa-p])\s*0*(\d{1,2})\s*$")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_MAX_LISTED = 12


def _list(items: list[str]) -> str:
    """At most ``_MAX_LISTED`` items, comma-separated, with a count of the rest."""
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def normalise_well(text: str) -> str | None:
    """``"c3"`` / ``"C03"`` / ``" C 3 "`` -> ``"C03"``; None when ``text`` is not a well id."""
    m = _WELL_RE.match(str(text))
    if not m or not 1 <= int(m[2]) <= 48:
        return None
    return f"{m[1].upper()}{int(m[2]):02d}"


def _as_bool(s: pl.Series, origin: str, wells: list[str | None]) -> pl.Series:
    """``is_control`` as booleans; a :class:`PlateMapError` naming the values and wells that are not."""

    def fail(bad: pl.Series) -> PlateMapError:
        where = [str(w) for w, b in zip(wells, bad.to_list(), strict=True) if b]
        values = s.filter(bad).cast(pl.String).unique(maintain_order=True).to_list()[:5]
        return PlateMapError(
            f"{origin}: column `is_control` has values {values} (well(s) {_list(where)}); use true/false"
        )

    if s.dtype == pl.Boolean:
        return s
    if s.dtype.is_numeric():
        bad = (~s.is_in([0, 1]) & s.is_not_null()).fill_null(False)
        if bad.any():
            raise fail(bad)
        return s.cast(pl.Boolean)
    text = s.cast(pl.String).str.strip_chars().str.to_lowercase()
    bad = (~text.is_in(list(_TRUE | _FALSE)) & text.is_not_null()).fill_null(False)
    if bad.any():
        raise fail(bad)
    return pl.Series(
        "is_control", [None if v is None else v in _TRUE for v in text.to_list()], dtype=pl.Boolean
    )


def _check_finite(out: pl.DataFrame, origin: str) -> None:
    """Raise :class:`PlateMapError` naming the wells whose ``dose_ng`` is NaN or infinite."""
    bad = out.filter(~pl.col("dose_ng").is_finite())
    if bad.height:
        pairs = [f"{w} ({d})" for w, d in bad.select("well", "dose_ng").rows()]
        raise PlateMapError(
            f"{origin}: column `dose_ng` is not a finite number for well(s) {_list(pairs)}. "
            "Hint: give each well's mRNA dose in ng (0 for control wells)"
        )


def read_plate_map(source: PlateMapSource) -> pl.DataFrame:
    """Read and validate a plate map; returns columns ``well`` (String), ``dose_ng`` (Float64), ``is_control``.

    Raises :class:`PlateMapError` naming the file and the offending wells for a missing column, a
    malformed well id, a duplicated well, or a missing, non-numeric, non-finite (NaN, inf) or negative
    dose.
    """
    if isinstance(source, pl.DataFrame):
        df, origin = source, "plate map (DataFrame)"
    else:
        path = Path(source)
        origin = f"plate map {path}"
        if not path.is_file():
            raise PlateMapError(
                f"{origin}: no such file. Hint: give a CSV or Parquet file with well,dose_ng[,is_control]"
            )
        try:
            if path.suffix.lower() in (".parquet", ".pq"):
                df = pl.read_parquet(path)
            else:
                df = pl.read_csv(path, infer_schema_length=None, schema_overrides={"well": pl.String})
        except Exception as exc:  # polars raises several types for unreadable files
            raise PlateMapError(f"{origin}: cannot read it ({str(exc).splitlines()[0]})") from None
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in ("well", "dose_ng") if c not in df.columns]
    if missing:
        raise PlateMapError(
            f"{origin}: missing column(s) {missing}; found {df.columns}. "
            "Hint: the columns are well, dose_ng and optionally is_control"
        )
    raw_wells = df.get_column("well").cast(pl.String)
    wells = [normalise_well(w) if w is not None else None for w in raw_wells.to_list()]
    bad = [str(r) for r, w in zip(raw_wells.to_list(), wells, strict=True) if w is None]
    if bad:
        raise PlateMapError(
            f"{origin}: {len(bad)} value(s) of `well` are not well ids like C03: {_list(bad)}"
        )
    try:
        dose = df.get_column("dose_ng").cast(pl.Float64, strict=True)
    except Exception:
        raise PlateMapError(
            f"{origin}: column `dose_ng` is not numeric (values such as "
            f"{df.get_column('dose_ng').head(3).to_list()}); give the mRNA dose in ng"
        ) from None
    out = pl.DataFrame({"well": wells, "dose_ng": dose})
    null_dose = out.filter(pl.col("dose_ng").is_null())["well"].to_list()
    if null_dose:
        raise PlateMapError(f"{origin}: well(s) {_list(null_dose)} have no dose_ng; give 0 for control wells")
    _check_finite(out, origin)
    negative = out.filter(pl.col("dose_ng") < 0)["well"].to_list()
    if negative:
        raise PlateMapError(f"{origin}: well(s) {_list(negative)} have a negative dose_ng")
    if "is_control" in df.columns:
        ctrl = _as_bool(df.get_column("is_control"), origin, wells)
        out = out.with_columns(ctrl.alias("is_control"))
        out = out.with_columns(pl.col("is_control").fill_null(pl.col("dose_ng") == 0))
    else:
        out = out.with_columns(is_control=pl.col("dose_ng") == 0)
    dup = out.filter(pl.col("well").is_duplicated())["well"].unique(maintain_order=True).to_list()
    if dup:
        raise PlateMapError(f"{origin}: well(s) {_list(dup)} appear more than once; give one row per well")
    return out.sort("well")


def check_plate_map_wells(
    plate_map: pl.DataFrame, image_wells: list[str], *, plate: str, origin: str = ""
) -> None:
    """Raise :class:`PlateMapError` when the plate map and the plate's images disagree on the wells.

    Names both the wells in the map that have no images and the wells with images that the map lacks.
    """
    mapped = set(plate_map.get_column("well").to_list())
    imaged = set(image_wells)
    no_images = sorted(mapped - imaged)
    not_mapped = sorted(imaged - mapped)
    if not (no_images or not_mapped):
        return
    parts = []
    if no_images:
        parts.append(f"{len(no_images)} well(s) in the plate map have no images: {_list(no_images)}")
    if not_mapped:
        parts.append(
            f"{len(not_mapped)} well(s) with images are missing from the plate map: {_list(not_mapped)}"
        )
    where = f" ({origin})" if origin else ""
    raise PlateMapError(
        f"plate {plate}: plate map{where} and images disagree: "
        + "; ".join(parts)
        + ". Hint: fix the plate map (one row per imaged well) or ingest the right plate folder; nothing was written"
    )
