"""Tiny plate folders for the ingest tests: a CV7000-like plate written here (real TIFFs, mlf, mrf, plate
map) and a small simulated one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import tifffile

from lnpstore.instrument.cvmeta import (
    ChannelDetail,
    MeasurementDetail,
    MeasurementRecord,
    write_measurement_data,
    write_measurement_detail,
)
from lnpstore.instrument.layout import image_filename, split_well
from lnpstore.store.core import Store

TABLES = ("plates", "wells", "images")


@dataclass
class Plate:
    plate_dir: Path
    plate_map: Path
    plate: str


def make_plate(
    out_dir: Path,
    plate: str = "AssayPlate_Greiner_#781091",
    *,
    wells: tuple[str, ...] = ("C03", "C04", "D03", "D04"),
    n_fields: int = 2,
    n_frames: int = 3,
    channels: tuple[int, ...] = (7, 9),
    size_px: tuple[int, int] = (24, 32),
    pixel_size_um: float = 0.65,
    with_metadata: bool = True,
) -> Plate:
    """A small CV7000-like plate folder: TIFFs, MeasurementData.mlf, MeasurementDetail.mrf, plate_map.csv."""
    plate_dir = out_dir / plate
    plate_dir.mkdir(parents=True)
    records = []
    rng = np.random.default_rng(0)
    for w in wells:
        row, col = split_well(w)
        for f in range(1, n_fields + 1):
            for t in range(1, n_frames + 1):
                for c in channels:
                    name = image_filename(plate, w, t, f, c)
                    tifffile.imwrite(plate_dir / name, rng.integers(0, 4000, size_px, dtype=np.uint16))
                    records.append(
                        MeasurementRecord(
                            name,
                            "ABCDEFGHIJKLMNOP".index(row) + 1,
                            col,
                            t,
                            f,
                            1,
                            c,
                            f"2024-03-01T10:{10 * (t - 1):02d}:0{f}+01:00",
                            100.0 * f,
                            -50.0 * f,
                            0.0,
                        )
                    )
    if with_metadata:
        write_measurement_data(plate_dir / "MeasurementData.mlf", records)
        chans = {c: ChannelDetail(c, pixel_size_um, size_px[1], size_px[0]) for c in channels}
        detail = MeasurementDetail(plate, "CV7000", "", "", n_frames, n_fields, 1, 16, 24, chans)
        write_measurement_detail(plate_dir / "MeasurementDetail.mrf", detail)
    plate_map = out_dir / "plate_map.csv"
    pl.DataFrame(
        {"well": list(wells), "dose_ng": [0.0] + [10.0 * i for i in range(1, len(wells))]}
    ).write_csv(plate_map)
    return Plate(plate_dir, plate_map, plate)


def read_tables(store: Store) -> dict[str, pl.DataFrame]:
    return {t: store.read(t) for t in TABLES}


def simulate(out_dir: Path, **overrides) -> Plate:
    """A small simulated plate (lnpstore.simulator's tiny preset, 96 x 96 px, 6 frames)."""
    from lnpstore.simulate.simulator import SimulationSettings, simulate_plate

    kw = dict(n_frames=6, field_width_px=96, field_height_px=96, cells_per_field=3, workers=1) | overrides
    sim = simulate_plate(out_dir, SimulationSettings.tiny(0, **kw), show_progress=False)
    return Plate(sim.plate_dir, sim.plate_map, sim.settings.plate)
