"""MeasurementData.mlf / MeasurementDetail.mrf, read from a real CV8000 measurement (tests/data/cv8000-minimal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lnpstore.instrument.cvmeta import (
    ChannelDetail,
    MeasurementDetail,
    MeasurementRecord,
    read_measurement_data,
    read_measurement_detail,
    write_measurement_data,
    write_measurement_detail,
)
from lnpstore.instrument.layout import parse_image_name
from lnpstore.store.errors import IngestError

CV8000 = Path(__file__).parent / "data" / "cv8000-minimal"
PLATE = "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"


def test_real_mlf() -> None:
    recs = read_measurement_data(CV8000 / "MeasurementData.mlf")
    assert len(recs) == 96  # 3 wells x 4 fields x 4 z x 2 channels x 1 time point
    assert {r.well for r in recs} == {"D08", "E03", "F08"}
    assert {r.field for r in recs} == {1, 2, 3, 4}
    assert {r.z_index for r in recs} == {1, 2, 3, 4}
    assert {r.channel for r in recs} == {1, 2}
    assert {r.time_point for r in recs} == {1}
    first = recs[0]
    assert first.filename == f"{PLATE}_D08_T0001F001L01A01Z01C01.tif"
    assert (first.x_um, first.y_um, first.z_um) == (-567.1, 402.9, 0.0)
    assert first.time == "2023-09-18T13:58:44.438+02:00"
    # what the record says agrees with its file name, for every record
    for r in recs:
        n = parse_image_name(r.filename)
        assert n is not None and n.plate == PLATE
        assert (n.well, n.field, n.frame, n.z, n.channel_number) == (
            r.well,
            r.field,
            r.time_point,
            r.z_index,
            r.channel,
        )
        assert n.action == r.action_index


def test_real_mrf() -> None:
    d = read_measurement_detail(CV8000 / "MeasurementDetail.mrf")
    assert d.target_system == "CV8000"
    assert d.title == PLATE
    assert (d.time_point_count, d.field_count, d.z_count, d.row_count, d.column_count) == (1, 4, 4, 8, 12)
    # the mrf declares 4 channels although only C01 and C02 were imaged (see the mlf)
    assert sorted(d.channels) == [1, 2, 3, 4]
    for ch in d.channels.values():
        assert (ch.pixel_size_um, ch.width_px, ch.height_px, ch.bit_depth) == (0.325, 2000, 2000, 16)


def test_write_read_round_trip(tmp_path: Path) -> None:
    recs = [
        MeasurementRecord(
            f"P_C03_T000{t}F001L01A01Z01C07.tif",
            3,
            3,
            t,
            1,
            1,
            7,
            f"2024-01-01T00:0{t}:00+00:00",
            1.5,
            -2.5,
            0.0,
        )
        for t in (1, 2)
    ]
    write_measurement_data(tmp_path / "MeasurementData.mlf", recs)
    assert read_measurement_data(tmp_path / "MeasurementData.mlf") == recs
    detail = MeasurementDetail(
        "P", "CV7000", "b", "e", 2, 1, 1, 8, 12, {7: ChannelDetail(7, 0.65, 64, 48, 16)}
    )
    write_measurement_detail(tmp_path / "MeasurementDetail.mrf", detail)
    assert read_measurement_detail(tmp_path / "MeasurementDetail.mrf") == detail


def test_garbled_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "MeasurementData.mlf"
    p.write_text("<bts:MeasurementData not xml")
    with pytest.raises(IngestError, match="not a readable instrument metadata file"):
        read_measurement_data(p)
