"""Read and write the Yokogawa CV7000/CV8000 measurement metadata files.

``MeasurementData.mlf``: one ``bts:MeasurementRecord`` per image (row, column, time point, field,
z index, channel, stage position in um, acquisition time, file name). ``MeasurementDetail.mrf``: the
measurement's header and one ``bts:MeasurementChannel`` per channel (pixel size in um, image size in
px, bit depth). The schema is the instrument's own (namespace ``http://www.yokogawa.co.jp/BTS/BTSSchema/1.0``),
checked against a real CV8000 measurement folder in ``tests/data/cv8000-minimal``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from lnpstore.instrument.layout import well_id
from lnpstore.store.errors import IngestError

NS = "http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"
_B = f"{{{NS}}}"
MLF_NAME = "MeasurementData.mlf"
MRF_NAME = "MeasurementDetail.mrf"


@dataclass(frozen=True)
class MeasurementRecord:
    """One image as ``MeasurementData.mlf`` lists it."""

    filename: str
    row: int
    column: int
    time_point: int
    field: int
    z_index: int
    channel: int
    time: str = ""
    x_um: float | None = None
    y_um: float | None = None
    z_um: float | None = None
    action_index: int = 1
    record_type: str = "IMG"

    @property
    def well(self) -> str:
        return well_id(self.row, self.column)


@dataclass(frozen=True)
class ChannelDetail:
    """One channel as ``MeasurementDetail.mrf`` describes it."""

    channel: int
    pixel_size_um: float
    width_px: int
    height_px: int
    bit_depth: int = 16


@dataclass
class MeasurementDetail:
    title: str
    target_system: str
    begin_time: str
    end_time: str
    time_point_count: int | None
    field_count: int | None
    z_count: int | None
    row_count: int | None
    column_count: int | None
    channels: dict[int, ChannelDetail] = field(default_factory=dict)


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise IngestError(
            f"{path}: not a readable instrument metadata file ({exc}). Hint: remove or repair it; "
            "ingest then indexes the images from their file names alone"
        ) from None


def _num(value: str | None, kind=float):
    if value is None or value == "":
        return None
    return kind(value)


def read_measurement_data(path: str | Path) -> list[MeasurementRecord]:
    """Every image record of a ``MeasurementData.mlf`` (error records and others are skipped)."""
    path = Path(path)
    root = _parse(path)
    out = []
    for el in root.iter(f"{_B}MeasurementRecord"):
        a = {k.replace(_B, ""): v for k, v in el.attrib.items()}
        if a.get("Type", "IMG") != "IMG":
            continue
        try:
            out.append(
                MeasurementRecord(
                    filename=(el.text or "").strip(),
                    row=int(a["Row"]),
                    column=int(a["Column"]),
                    time_point=int(a["TimePoint"]),
                    field=int(a["FieldIndex"]),
                    z_index=int(a["ZIndex"]),
                    channel=int(a["Ch"]),
                    time=a.get("Time", ""),
                    x_um=_num(a.get("X")),
                    y_um=_num(a.get("Y")),
                    z_um=_num(a.get("Z")),
                    action_index=int(a.get("ActionIndex", 1)),
                )
            )
        except (KeyError, ValueError) as exc:
            raise IngestError(f"{path}: a MeasurementRecord lacks or garbles {exc}: {a}") from None
    return out


def read_measurement_detail(path: str | Path) -> MeasurementDetail:
    """The header and per-channel geometry of a ``MeasurementDetail.mrf``."""
    path = Path(path)
    root = _parse(path)
    a = {k.replace(_B, ""): v for k, v in root.attrib.items()}
    detail = MeasurementDetail(
        title=a.get("Title", ""),
        target_system=a.get("TargetSystem", ""),
        begin_time=a.get("BeginTime", ""),
        end_time=a.get("EndTime", ""),
        time_point_count=_num(a.get("TimePointCount"), int),
        field_count=_num(a.get("FieldCount"), int),
        z_count=_num(a.get("ZCount"), int),
        row_count=_num(a.get("RowCount"), int),
        column_count=_num(a.get("ColumnCount"), int),
    )
    for el in root.iter(f"{_B}MeasurementChannel"):
        c = {k.replace(_B, ""): v for k, v in el.attrib.items()}
        try:
            ch = ChannelDetail(
                channel=int(c["Ch"]),
                pixel_size_um=float(c["HorizontalPixelDimension"]),
                width_px=int(c["HorizontalPixels"]),
                height_px=int(c["VerticalPixels"]),
                bit_depth=int(c.get("InputBitDepth", 16)),
            )
        except (KeyError, ValueError) as exc:
            raise IngestError(f"{path}: a MeasurementChannel lacks or garbles {exc}: {c}") from None
        detail.channels[ch.channel] = ch
    return detail


def _el(tag: str, attrs: dict, text: str | None = None, parent: ET.Element | None = None) -> ET.Element:
    attrib = {f"{_B}{k}": str(v) for k, v in attrs.items() if v is not None}
    e = ET.Element(f"{_B}{tag}", attrib) if parent is None else ET.SubElement(parent, f"{_B}{tag}", attrib)
    if text is not None:
        e.text = text
    return e


def _write(root: ET.Element, path: Path) -> None:
    from lnpstore.store.atomic import atomic_write_bytes

    ET.register_namespace("bts", NS)
    ET.indent(root)
    atomic_write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True), path)


def write_measurement_data(path: str | Path, records: list[MeasurementRecord]) -> None:
    """Write a ``MeasurementData.mlf`` in the instrument's schema."""
    root = _el("MeasurementData", {"Version": "1.0"})
    for r in records:
        _el(
            "MeasurementRecord",
            {
                "Type": r.record_type,
                "Time": r.time,
                "Column": r.column,
                "Row": r.row,
                "TimePoint": r.time_point,
                "FieldIndex": r.field,
                "ZIndex": r.z_index,
                "TimelineIndex": 1,
                "ActionIndex": r.action_index,
                "Action": "2D",
                "X": None if r.x_um is None else f"{r.x_um:.1f}",
                "Y": None if r.y_um is None else f"{r.y_um:.1f}",
                "Z": None if r.z_um is None else f"{r.z_um:.1f}",
                "Ch": r.channel,
            },
            text=r.filename,
            parent=root,
        )
    _write(root, Path(path))


def write_measurement_detail(path: str | Path, detail: MeasurementDetail) -> None:
    """Write a ``MeasurementDetail.mrf`` in the instrument's schema."""
    root = _el(
        "MeasurementDetail",
        {
            "Version": "1.0",
            "OperatorName": "lnpstore-simulator",
            "Title": detail.title,
            "Application": "",
            "BeginTime": detail.begin_time,
            "EndTime": detail.end_time,
            "MeasurementSettingFileName": f"{detail.title}.mes",
            "ColumnCount": detail.column_count,
            "RowCount": detail.row_count,
            "TimePointCount": detail.time_point_count,
            "FieldCount": detail.field_count,
            "ZCount": detail.z_count,
            "TargetSystem": detail.target_system,
            "ReleaseNumber": "simulated",
            "Status": 0,
        },
    )
    _el(
        "MeasurementSamplePlate",
        {"Name": detail.title, "WellPlateFileName": f"{detail.title}.wpi", "WellPlateProductFileName": ""},
        parent=root,
    )
    for ch in sorted(detail.channels.values(), key=lambda c: c.channel):
        _el(
            "MeasurementChannel",
            {
                "Ch": ch.channel,
                "HorizontalPixelDimension": ch.pixel_size_um,
                "VerticalPixelDimension": ch.pixel_size_um,
                "CameraNumber": 1,
                "InputBitDepth": ch.bit_depth,
                "InputLevel": 10000,
                "HorizontalPixels": ch.width_px,
                "VerticalPixels": ch.height_px,
                "FilterWheelPosition": 1,
                "FilterPosition": 1,
                "ShadingCorrectionSource": "",
                "ObjectiveMagnificationRatio": 1,
                "OriginalHorizontalPixels": ch.width_px,
                "OriginalVerticalPixels": ch.height_px,
            },
            parent=root,
        )
    _write(root, Path(path))
