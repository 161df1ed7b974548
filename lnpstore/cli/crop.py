"""Crop-stage subcommands: ``crop`` (registration, cells, crops) and ``figures`` (tracking figures)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lnpstore.store.core import Store


def _plates(store: Store, plate: str | None) -> list[str]:
    from lnpstore.store.errors import LnpstoreError

    plates = store.read("plates")["plate"].to_list()
    if plate is not None:
        if plate not in plates:
            raise LnpstoreError(f"plate {plate!r} is not in store {store.root}; it has {plates}")
        return [plate]
    if not plates:
        raise LnpstoreError(f"store {store.root} has no plates. Hint: run `lnpstore ingest` first")
    return plates


def cmd_crop(args: argparse.Namespace) -> int:
    from lnpstore.store.core import Store
    from lnpstore.study.crops import CropSettings
    from lnpstore.study.prepare import prepare_plate

    store = Store.open(args.store)
    crop = CropSettings(t_in=args.frames, division_rule=args.division_rule)
    for plate in _plates(store, args.plate):
        res = prepare_plate(store, plate, crop=crop, seed=args.seed, split_by=args.split_by)
        reg = res.registration
        n_bad = reg.height - int(reg["agrees_with_plate"].sum())
        print(
            f"{plate}: BF offset (dy, dx) = ({reg['dy_px'][0]:.2f}, {reg['dx_px'][0]:.2f}) px, "
            f"{n_bad} of {reg.height} fields disagree"
        )
        counts = dict(res.cells.group_by("split").len().sort("split").iter_rows())
        print(f"{plate}: cells by split {counts}")
        print(f"{plate}: {res.n_crops} crops written (wells already cropped are skipped)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from lnpstore.store.core import Store
    from lnpstore.study.figures import make_tracking_figures

    store = Store.open(args.store)
    for p in make_tracking_figures(store, args.out):
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crop", help="register BF, build the cells table (targets, split) and crop cells")
    p.add_argument("store", help="store folder")
    p.add_argument("--plate", help="only this plate (default: every plate)")
    p.add_argument("--frames", type=int, default=20, help="crop frames 1..FRAMES (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    p.add_argument(
        "--split-by",
        choices=["cell", "well"],
        default="cell",
        help="test part: random cells, or whole wells (default: %(default)s)",
    )
    p.add_argument(
        "--division-rule",
        choices=["exclude", "follow"],
        default="exclude",
        help="a cell that divides before the last frame: exclude it (default), or follow the daughter "
        "that stays where it was (its outcome is the cell's)",
    )
    p.set_defaults(func=cmd_crop)

    p = sub.add_parser(
        "figures", help="the study's tracking figures (uptake/expression, displacement) as PNG"
    )
    p.add_argument("store", help="store folder")
    p.add_argument("--out", help="output folder (default: STORE/artifacts/figures)")
    p.set_defaults(func=cmd_figures)
