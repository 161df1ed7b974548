"""File names of the Yokogawa CV7000/CV8000 and the well ids (lnpstore.layout)."""

from __future__ import annotations

import pytest

from lnpstore.instrument.layout import (
    CHANNELS,
    ImageName,
    image_filename,
    parse_image_name,
    split_well,
    well_id,
)


def test_parse_plain_name() -> None:
    n = parse_image_name("LNP_Plate01_C03_T0012F002L01A01Z01C07.tif")
    assert n == ImageName("LNP_Plate01", "C03", frame=12, field=2, line=1, action=1, z=1, channel_number=7)
    assert n.channel == "CS"


@pytest.mark.parametrize(
    "plate",
    ["AssayPlate_Greiner_#781091", "my_plate_with_many_parts", "P 1 (repeat)", "plate-2024-01-05_A01_x", "X"],
)
def test_odd_plate_names_round_trip(plate: str) -> None:
    name = image_filename(plate, "H12", 3, 7, 9, z=2)
    n = parse_image_name(name)
    assert n is not None
    assert (n.plate, n.well, n.frame, n.field, n.z, n.channel_number, n.channel) == (
        plate,
        "H12",
        3,
        7,
        2,
        9,
        "BF",
    )
    assert n.filename() == name


def test_plate_name_that_looks_like_a_well_is_parsed_from_the_right() -> None:
    n = parse_image_name("Plate_B02_C03_T0001F001L01A01Z01C05.tif")
    assert n is not None and (n.plate, n.well, n.channel) == ("Plate_B02", "C03", "GFP")


def test_tiff_extension_and_lower_case_well() -> None:
    n = parse_image_name("P1_c03_T0001F001L01A01Z01C06.tiff")
    assert n is not None and (n.well, n.channel) == ("C03", "LNP")


@pytest.mark.parametrize(
    "name",
    [
        "MeasurementData.mlf",
        "DC_DCAM#2_CAM4.tif",
        "SC_BP445-45_20x v2_M01_CH01.tif",
        "P1_C03_T0001F001L01A01Z01C07.png",
        "P1_C3_T0001F001L01A01Z01C07.tif",
        "_C03_T0001F001L01A01Z01C07.tif",
        "P1_Q03_T0001F001L01A01Z01C07.tif",
    ],
)
def test_non_image_names_are_none(name: str) -> None:
    assert parse_image_name(name) is None


def test_unknown_channel_is_named_by_number() -> None:
    n = parse_image_name("P1_C03_T0001F001L01A01Z01C01.tif")
    assert n is not None and n.channel == "C01"
    assert set(CHANNELS) == {"GFP", "LNP", "CS", "BF"}


def test_wells() -> None:
    assert split_well("C03") == ("C", 3)
    assert split_well(" p24 ") == ("P", 24)
    assert well_id(3, 8) == "C08" and well_id("c", 8) == "C08"
    with pytest.raises(ValueError, match="not a well id"):
        split_well("C3")
