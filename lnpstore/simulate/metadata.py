"""The simulated plate's instrument metadata: ``MeasurementData.mlf`` (one record per image written) and
``MeasurementDetail.mrf`` (pixel size, image size per channel), as a CV7000 writes them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from lnpstore.instrument import cvmeta
from lnpstore.instrument.layout import CHANNELS, image_filename, split_well
from lnpstore.simulate.settings import SimulationSettings

#: Start of every simulated measurement (fixed, so the same settings give the same bytes).
BEGIN = datetime(2024, 5, 6, 9, 0, 0, tzinfo=timezone(timedelta(hours=2)))
#: Seconds between two images of one frame.
PER_IMAGE_S = 0.25


def measurement_records(settings: SimulationSettings) -> list[cvmeta.MeasurementRecord]:
    """One mlf record per image written (missing frames excluded), in acquisition order."""
    missing = {(f.well, t) for f in settings.fault_specs if f.kind == "missing_frames" for t in f.frames}
    width_um = settings.width_px * settings.pixel_size_um
    height_um = settings.height_px * settings.pixel_size_um
    out = []
    for frame in range(1, settings.n_frames + 1):
        t0 = BEGIN + timedelta(minutes=settings.frame_interval_min * (frame - 1))
        k = 0
        for well in settings.wells:
            row, col = split_well(well)
            for f in range(1, settings.n_fields + 1):
                for num in CHANNELS.values():
                    k += 1
                    if (well, frame) in missing:
                        continue
                    stamp = (t0 + timedelta(seconds=PER_IMAGE_S * k)).isoformat(timespec="milliseconds")
                    out.append(
                        cvmeta.MeasurementRecord(
                            filename=image_filename(settings.plate, well, frame, f, num),
                            row=ord(row) - ord("A") + 1,
                            column=col,
                            time_point=frame,
                            field=f,
                            z_index=1,
                            channel=num,
                            time=stamp,
                            x_um=round((f - 1) * width_um * 1.1 - width_um * 0.55, 1),
                            y_um=round(height_um * 0.5, 1),
                            z_um=0.0,
                        )
                    )
    return out


def write_metadata(settings: SimulationSettings, plate_dir: Path) -> None:
    """Write the plate folder's mlf and mrf."""
    cvmeta.write_measurement_data(plate_dir / cvmeta.MLF_NAME, measurement_records(settings))
    end = BEGIN + timedelta(minutes=settings.frame_interval_min * settings.n_frames)
    detail = cvmeta.MeasurementDetail(
        title=settings.plate,
        target_system="CV7000",
        begin_time=BEGIN.isoformat(),
        end_time=end.isoformat(),
        time_point_count=settings.n_frames,
        field_count=settings.n_fields,
        z_count=1,
        row_count=16 if any(r > "H" for r in settings.rows) else 8,
        column_count=24 if max(settings.columns) > 12 else 12,
        channels={
            num: cvmeta.ChannelDetail(num, settings.pixel_size_um, settings.width_px, settings.height_px)
            for num in CHANNELS.values()
        },
    )
    cvmeta.write_measurement_detail(plate_dir / cvmeta.MRF_NAME, detail)
