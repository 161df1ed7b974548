"""The fault catalogue of issue 14, shared by ``tests/test_faults.py`` (a fast subset) and
``benchmarks/faults.py`` (every fault, plus kill -9 resume).

A :class:`Fault` is something a hostile or clumsy user, or a crash, really does to a plate folder, a
plate map, a store or the command line. It is injected on a fresh copy of a tiny pristine plate or
store (:class:`Pristine`), the real commands run (``lnpstore ...`` through :func:`lnpstore.cli.main.main`
in this process, or in a subprocess where a process boundary matters: read-only mounts, racing
writers, locks), and the outcome is classified:

- ``handled``: the command did the right thing and the data equal the pristine run's (an upper-case
  ``.TIF`` found, a stale lock or temporary cleaned up, a quoted parameter matched literally);
- ``clear_error``: a non-zero exit with lnpstore's message naming the file / well / setting, no traceback;
- ``flagged``: it succeeds and says so (an image status, ``check`` naming the file, ``info``'s warning);
- ``silently_accepted``: it succeeds with changed data and no word (a bug);
- ``traceback``: a raw Python traceback (a bug).

``rows_lost`` (per fault) is whether a table the fault did not touch has fewer rows afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import tifffile

OUTCOMES = ("handled", "clear_error", "flagged", "silently_accepted", "traceback")
BAD = ("silently_accepted", "traceback")
TB = "Traceback (most recent call last)"
PLATE = "LNP_Tiny01"
MLF = "MeasurementData.mlf"
MRF = "MeasurementDetail.mrf"


# -- running commands ------------------------------------------------------------------------------
@dataclass
class Cmd:
    """One command's result: exit status, output, and the traceback when one escaped."""

    argv: list[str]
    rc: int
    out: str
    err: str
    tb: str | None = None

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def traceback(self) -> bool:
        return self.tb is not None or TB in self.err or TB in self.out


@contextlib.contextmanager
def _env(extra: dict[str, str] | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra or {}}
    os.environ.update(extra or {})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(*argv: Any, env: dict[str, str] | None = None) -> Cmd:
    """``lnpstore ARGV`` in this process (the real entry point, without the interpreter's start-up);
    an exception escaping ``main`` is what the console script would print as a traceback."""
    from lnpstore.cli.main import main

    args = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    tb = None
    with _env(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse: usage error
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001  what the console script would show as a traceback
            tb = traceback.format_exc()
            rc = 1
    return Cmd(args, int(rc or 0), out.getvalue(), err.getvalue(), tb)


DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _fault_catalog import cli
print("\\n@@RESULTS@@" + json.dumps([cli(*a).__dict__ for a in json.loads(sys.argv[2])]))
"""


def cli_subprocess(
    cmds: list[list[Any]], *, read_only: Path | None = None, env: dict[str, str] | None = None, timeout=300
) -> list[Cmd]:
    """Several ``lnpstore`` commands in one fresh Python process; with ``read_only`` that folder is
    mounted read-only for the process (a private mount namespace, EROFS: real even for root), or,
    without the privilege for that, made read-only by permissions."""
    argv = [
        sys.executable,
        "-c",
        DRIVER,
        str(Path(__file__).parent),
        json.dumps([[str(a) for a in c] for c in cmds]),
    ]
    full_env = {**os.environ, "LNPSTORE_QUIET": "1", **(env or {})}
    restore = None
    if read_only is not None:
        if can_mount_read_only():
            ro = str(read_only)
            script = f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" && exec "$@"'
            argv = ["unshare", "-m", "sh", "-c", script, "sh", *argv]
        else:
            restore = _chmod_read_only(read_only)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout)
    finally:
        if restore:
            restore()
    if "@@RESULTS@@" not in p.stdout:
        return [
            Cmd([str(a) for a in c], p.returncode or 1, p.stdout, p.stderr, p.stderr or "no result")
            for c in cmds
        ]
    return [Cmd(**d) for d in json.loads(p.stdout.split("@@RESULTS@@", 1)[1])]


_MOUNT_OK: bool | None = None


def can_mount_read_only() -> bool:
    """Whether ``unshare -m`` + a read-only bind mount works here (root with CAP_SYS_ADMIN)."""
    global _MOUNT_OK
    if _MOUNT_OK is None:
        probe = [
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount --bind / / 2>/dev/null && mount -o remount,bind,ro / / 2>/dev/null; mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && ! touch /tmp/.lnpstore-ro-probe",
        ]
        try:
            _MOUNT_OK = (
                shutil.which("unshare") is not None
                and subprocess.run(probe, capture_output=True).returncode == 0
            )
        except OSError:
            _MOUNT_OK = False
    return _MOUNT_OK


def _chmod_read_only(root: Path) -> Callable[[], None]:
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")]}
    for p, m in modes.items():
        p.chmod(m & ~0o222)
    return lambda: [p.chmod(m) for p, m in modes.items()]


# -- pristine inputs -------------------------------------------------------------------------------
@dataclass
class Pristine:
    """The tiny plate, its ingested store and (optionally) a full store of every stage, made once."""

    root: Path
    plate_dir: Path
    plate_map: Path
    store: Path  # the plate ingested: plates, wells, images
    full: Path | None = None  # every stage's tables (the benchmark's run)
    tables: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)  # base -> table -> rows

    def base_dir(self, base: str) -> Path:
        return {"plate": self.plate_dir.parent, "store": self.store, "full": self.full}[base]  # type: ignore[return-value]


def make_pristine(root: Path, full_store: Path | None = None) -> Pristine:
    """Simulate the tiny plate (3 wells x 1 field x 6 frames, 96 px) and ingest it."""
    from lnpstore.simulate import SimulationSettings, simulate_plate

    kw = dict(n_frames=6, field_width_px=96, field_height_px=96, cells_per_field=3, workers=1)
    sim = simulate_plate(root / "plate", SimulationSettings.tiny(0, **kw), show_progress=False)
    store = root / "store"
    c = cli("ingest", sim.plate_dir, "--store", store, "--plate-map", sim.plate_map)
    assert c.rc == 0, c.text
    pr = Pristine(root, Path(sim.plate_dir), Path(sim.plate_map), store, full_store)
    pr.tables["store"] = read_all(store)
    if full_store is not None:
        pr.tables["full"] = read_all(full_store)
    return pr


def table_names() -> list[str]:
    from lnpstore.store.schema import TABLES

    return list(TABLES)


def live_files(store: Path, table: str) -> list[Path]:
    d = store / "tables" / table
    return sorted(p for p in d.rglob("*.parquet") if not p.name.startswith(".tmp-")) if d.is_dir() else []


def read_all(store: Path) -> dict[str, pl.DataFrame]:
    """Every table's rows, read from its Parquet files directly (not through the store)."""
    out = {}
    for t in table_names():
        files = live_files(store, t)
        out[t] = (
            pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
            if files
            else pl.DataFrame()
        )
    return out


def row_counts(store: Path) -> dict[str, int]:
    out = {}
    for t in table_names():
        n = 0
        for f in live_files(store, t):
            try:
                n += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # noqa: BLE001  a damaged file counts as no rows
                pass
        out[t] = n
    return out


# -- faults ----------------------------------------------------------------------------------------
@dataclass
class Case:
    """One fault's working copy."""

    pristine: Pristine
    work: Path
    plate_dir: Path
    plate_map: Path
    store: Path
    base: str
    note: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    outcome: str
    detail: str

    def __post_init__(self) -> None:
        self.detail = " ".join(self.detail.split())  # one line


@dataclass(frozen=True)
class Fault:
    name: str
    family: str
    base: str  # "plate" (a plate folder to ingest), "store" (the ingested store), "full" (every table)
    inject: Callable[[Case], None]
    probe: Callable[[Case], Verdict]
    damages: tuple[str, ...] = ()  # tables this fault damages on purpose (rows_lost ignores them)
    fast: bool = True  # part of tests/test_faults.py's subset


@dataclass
class Result:
    name: str
    family: str
    outcome: str
    detail: str
    rows_lost: bool
    seconds: float


def run_fault(f: Fault, pr: Pristine, work: Path) -> Result:
    """Copy the pristine input, inject ``f``, run its commands and classify the outcome."""
    t0 = time.perf_counter()
    work.mkdir(parents=True)
    plate_root = work / "plate"
    shutil.copytree(pr.plate_dir.parent, plate_root, symlinks=True)
    src = pr.store if f.base != "full" else pr.full
    store = work / "store"
    if f.base != "plate":
        assert src is not None, f"fault {f.name} needs the full store"
        shutil.copytree(src, store, symlinks=True)
    case = Case(pr, work, plate_root / pr.plate_dir.name, plate_root / pr.plate_map.name, store, f.base)
    before = row_counts(store) if f.base != "plate" else {}
    try:
        f.inject(case)
        v = f.probe(case)
    except BaseException as exc:  # noqa: BLE001  a fault whose probe itself failed is a traceback
        v = Verdict("traceback", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    lost = False
    if before and store.is_dir():
        after = row_counts(store)
        lost = any(after[t] < n for t, n in before.items() if t not in f.damages)
    _make_writable(work)
    return Result(f.name, f.family, v.outcome, v.detail, lost, time.perf_counter() - t0)


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        with contextlib.suppress(OSError):
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)


# -- verdict helpers -------------------------------------------------------------------------------
def _short(c: Cmd, n: int = 300) -> str:
    text = (c.tb or c.err or c.out).strip().replace("\n", " | ")
    return f"`{' '.join(c.argv[:2])}` rc={c.rc}: {text[:n]}"


def clear(c: Cmd, *names: str) -> bool:
    """A refusal: non-zero exit, lnpstore's (or argparse's) one-line error naming one of ``names``."""
    low = c.err.lower()
    return (
        c.rc != 0
        and not c.traceback
        and "error" in low
        and (not names or any(n.lower() in low for n in names))
    )


def refused(c: Cmd, *names: str) -> Verdict:
    """Expect a clear error; anything else is silent acceptance (rc 0) or a traceback."""
    if c.traceback:
        return Verdict("traceback", _short(c, 2000))
    if clear(c, *names):
        return Verdict("clear_error", _short(c))
    if c.rc != 0:
        return Verdict("silently_accepted", f"exit {c.rc} without a message naming {names}: {_short(c)}")
    return Verdict("silently_accepted", f"accepted: {_short(c)}")


def worst(*vs: Verdict) -> Verdict:
    rank = {"traceback": 5, "silently_accepted": 4, "clear_error": 3, "flagged": 2, "handled": 1}
    return max(vs, key=lambda v: rank[v.outcome])


# -- image and metadata faults (ingest) -------------------------------------------------------------
def _files(case: Case, well: str = "C03") -> list[Path]:
    return sorted(case.plate_dir.glob(f"{PLATE}_{well}_*.tif"))


def _target(case: Case) -> Path:
    """The image file the image faults damage: well C03, field 1, frame 2, channel C07 (GFP)."""
    return case.plate_dir / f"{PLATE}_C03_T0002F001L01A01Z01C07.tif"


def _rewrite(case: Case, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    p = _target(case)
    img = tifffile.imread(p)
    p.unlink()
    tifffile.imwrite(p, fn(img))


def _ingest(case: Case, *extra: Any) -> tuple[Cmd, Path]:
    store = case.work / "ingested"
    return cli("ingest", case.plate_dir, "--store", store, "--plate-map", case.plate_map, *extra), store


def _ingest_tables(store: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(live_files(store, t)) for t in ("wells", "images")}


def probe_ingest(names: tuple[str, ...], *, excludes: str | None) -> Callable[[Case], Verdict]:
    """Ingest the damaged plate. A refusal must name one of ``names`` and leave no store; a success
    must equal the pristine tables, or mark every changed image row with a non-ok status (named in
    the command's output) and exclude exactly ``excludes`` (a well, or none)."""

    def probe(case: Case) -> Verdict:
        c, store = _ingest(case)
        if c.rc != 0 or c.traceback:
            v = refused(c, *names)
            if v.outcome == "clear_error" and store.exists():
                return Verdict("silently_accepted", f"refused but left a store behind: {_short(c)}")
            return v
        got = _ingest_tables(store)
        want = case.pristine.tables["store"]
        img_keys = ["well", "field", "frame", "channel_number"]
        cols = [*img_keys, "status", "height_px", "width_px", "dtype"]
        changed = got["images"].select(cols).join(want["images"].select(cols), on=cols, how="anti")
        excluded = set(got["wells"].filter(pl.col("excluded"))["well"])
        was = set(want["wells"].filter(pl.col("excluded"))["well"])
        wcols = ["well", "dose_ng", "is_control"]
        wells_changed = got["wells"].select(wcols).join(want["wells"].select(wcols), on=wcols, how="anti")
        if changed.is_empty() and excluded == was and wells_changed.is_empty():
            said = [n for n in names if n in c.out]
            if said:  # e.g. a file outside the grid, listed as extra
                line = next(ln for ln in c.out.splitlines() if said[0] in ln)
                return Verdict("flagged", f"same tables, the output says: {line.strip()[:160]}")
            return Verdict("handled", "same tables as the pristine plate")
        expect = was | ({excludes} if excludes else set())
        if not wells_changed.is_empty():
            return Verdict("silently_accepted", f"wells changed: {wells_changed.to_dicts()[:3]}")
        if excluded != expect:
            return Verdict(
                "silently_accepted", f"excluded wells {sorted(excluded)}, expected {sorted(expect)}"
            )
        ok_changed = changed.filter(pl.col("status") == "ok")
        if not ok_changed.is_empty():
            return Verdict(
                "silently_accepted", f"stored as ok with changed data: {ok_changed.to_dicts()[:3]}"
            )
        statuses = sorted(set(changed["status"]))
        if not any(s in c.text for s in statuses):
            return Verdict("silently_accepted", f"statuses {statuses} not in the command's output")
        return Verdict("flagged", f"status {statuses}; excluded {sorted(excluded - was) or 'none'}")

    return probe


def _extra_file(name: str, like: str = "C03_T0002F001L01A01Z01C07") -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        shutil.copy(case.plate_dir / f"{PLATE}_{like}.tif", case.plate_dir / name)

    return inject


def _write_text(rel: str, text: str | bytes) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        p = case.plate_dir.parent / rel if not rel.startswith("PLATE/") else case.plate_dir / rel[6:]
        p.unlink(missing_ok=True)
        p.write_bytes(text.encode() if isinstance(text, str) else text)

    return inject


def _truncate_file(rel: str, keep: float = 0.5) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        p = case.plate_dir / rel
        data = p.read_bytes()
        p.unlink()
        p.write_bytes(data[: int(len(data) * keep)])

    return inject


def _delete(rel: str) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        (case.plate_dir / rel).unlink()

    return inject


def _plate_map_edit(fn: Callable[[str], str]) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        text = case.plate_map.read_text()
        case.plate_map.unlink()
        case.plate_map.write_text(fn(text))

    return inject


def _set_dose(well: str, value: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.splitlines()
        head = lines[0].split(",")
        i = head.index("dose_ng")
        out = [lines[0]]
        for ln in lines[1:]:
            parts = ln.split(",")
            if parts[head.index("well")] == well:
                parts[i] = value
            out.append(",".join(parts))
        return "\n".join(out) + "\n"

    return edit


def image_faults() -> list[Fault]:
    t = f"{PLATE}_C03_T0002F001L01A01Z01C07.tif"

    def img(
        name: str, inject: Callable[[Case], None], names: tuple[str, ...], excludes: str | None, fast=True
    ):
        return Fault(name, "image file", "plate", inject, probe_ingest(names, excludes=excludes), fast=fast)

    rng = np.random.default_rng(0)
    upper = lambda case: _target(case).rename(_target(case).with_suffix(".TIF"))  # noqa: E731
    all_upper = lambda case: [p.rename(p.with_name(p.name.upper())) for p in _files(case)]  # noqa: E731
    return [
        img("image missing", _delete(t), (t,), "C03"),
        img("image truncated to half", _truncate_file(t, 0.5), (t,), "C03"),
        img("image truncated to its header", _truncate_file(t, 0.02), (t,), "C03", fast=False),
        img("image zero bytes", _write_text(f"PLATE/{t}", b""), (t,), "C03"),
        img("image junk bytes", _write_text(f"PLATE/{t}", rng.bytes(5000)), (t,), "C03"),
        img(
            "image float32 0..1", lambda c: _rewrite(c, lambda a: (a / 65535).astype(np.float32)), (t,), "C03"
        ),
        img("image float64", lambda c: _rewrite(c, lambda a: a.astype(np.float64)), (t,), "C03", fast=False),
        img("image int32", lambda c: _rewrite(c, lambda a: a.astype(np.int32)), (t,), "C03"),
        img("image uint32", lambda c: _rewrite(c, lambda a: a.astype(np.uint32)), (t,), "C03", fast=False),
        img("image int16", lambda c: _rewrite(c, lambda a: a.astype(np.int16)), (t,), "C03", fast=False),
        img("image wrong shape (cropped)", lambda c: _rewrite(c, lambda a: a[:50, :60]), (t,), "C03"),
        img(
            "image transposed shape",
            lambda c: _rewrite(c, lambda a: np.ascontiguousarray(a[:, :80].T)),
            (t,),
            "C03",
            fast=False,
        ),
        img(
            "image RGB (3 samples)",
            lambda c: _rewrite(c, lambda a: np.stack([a] * 3, -1)),
            (t,),
            "C03",
            fast=False,
        ),
        img(
            "image a stack of 2 pages",
            lambda c: _rewrite(c, lambda a: np.stack([a, a])),
            (t,),
            "C03",
            fast=False,
        ),
        img("image upper-case .TIF extension", upper, (t,), None),
        img("every file name upper case", all_upper, (t,), None, fast=False),
        img(
            "extra unknown channel C03", _extra_file(f"{PLATE}_C03_T0002F001L01A01Z01C03.tif"), ("C03",), None
        ),
        img(
            "extra frame beyond the mlf (T0007)",
            _extra_file(f"{PLATE}_C03_T0007F001L01A01Z01C07.tif"),
            ("T0007",),
            None,
        ),
        img(
            "extra junk C08 file",
            _write_text(f"PLATE/{PLATE}_C03_T0002F001L01A01Z01C08.tif", b"junk"),
            ("C08",),
            None,
        ),
        img(
            "extra image of an unknown well H12",
            _extra_file(f"{PLATE}_H12_T0001F001L01A01Z01C07.tif"),
            ("H12",),
            None,
            fast=False,
        ),
        img(
            "extra image of an unknown field F009",
            _extra_file(f"{PLATE}_C03_T0001F009L01A01Z01C07.tif"),
            ("F009",),
            None,
            fast=False,
        ),
        img(
            "stray non-image file in the plate folder",
            _write_text("PLATE/notes.txt", "hello"),
            (),
            None,
            fast=False,
        ),
        img(
            "a folder named like an image",
            lambda c: (c.plate_dir / f"{PLATE}_C03_T0009F001L01A01Z01C07.tif").mkdir(),
            ("T0009",),
            None,
            fast=False,
        ),
        img(
            "image replaced by a dangling symlink",
            lambda c: (_target(c).unlink(), _target(c).symlink_to(c.work / "gone.tif")),
            (t,),
            "C03",
            fast=False,
        ),
        img(
            "image of another plate's name",
            _extra_file("OtherPlate_C03_T0001F001L01A01Z01C07.tif"),
            ("OtherPlate",),
            None,
            fast=False,
        ),
    ]


def metadata_faults() -> list[Fault]:
    def meta(name, inject, names, *, excludes=None, fast=True):
        return Fault(name, "metadata", "plate", inject, probe_ingest(names, excludes=excludes), fast=fast)

    pm = "plate_map.csv"
    return [
        meta("mlf missing", _delete(MLF), (MLF,)),
        meta("mlf truncated", _truncate_file(MLF, 0.5), (MLF,)),
        meta(
            "mlf corrupt XML",
            _write_text(f"PLATE/{MLF}", "<?xml version='1.0'?><bts:MeasurementData <<<"),
            (MLF,),
            fast=False,
        ),
        meta("mlf zero bytes", _write_text(f"PLATE/{MLF}", b""), (MLF,), fast=False),
        meta("mrf missing", _delete(MRF), (MRF,)),
        meta(
            "mrf corrupt XML", _write_text(f"PLATE/{MRF}", "<bts:MeasurementDetail oops"), (MRF,), fast=False
        ),
        meta("mrf truncated", _truncate_file(MRF, 0.4), (MRF,), fast=False),
        meta("plate map missing", lambda c: c.plate_map.unlink(), (pm,)),
        meta("plate map empty file", _plate_map_edit(lambda s: ""), (pm,)),
        meta("plate map header only", _plate_map_edit(lambda s: s.splitlines()[0] + "\n"), (pm,), fast=False),
        meta(
            "plate map without dose_ng column",
            _plate_map_edit(lambda s: s.replace("dose_ng", "dose")),
            ("dose_ng",),
        ),
        meta(
            "plate map duplicate well",
            _plate_map_edit(lambda s: s + s.splitlines()[-1] + "\n"),
            ("more than once",),
        ),
        meta("plate map dose inf", _plate_map_edit(_set_dose("E03", "inf")), ("E03",)),
        meta("plate map dose nan", _plate_map_edit(_set_dose("E03", "nan")), ("E03",), fast=False),
        meta("plate map dose negative", _plate_map_edit(_set_dose("E03", "-5")), ("E03",)),
        meta("plate map dose a string", _plate_map_edit(_set_dose("E03", "ten")), ("E03", "ten", "dose_ng")),
        meta("plate map dose empty", _plate_map_edit(_set_dose("E03", "")), ("E03", "dose_ng"), fast=False),
        meta(
            "plate map unknown well",
            _plate_map_edit(
                lambda s: (
                    s.rstrip("\n")
                    + "\n"
                    + s.splitlines()[-1].replace(s.splitlines()[-1].split(",")[0], "H12", 1)
                    + "\n"
                )
            ),
            ("H12",),
        ),
        meta(
            "plate map is_control not a boolean",
            _plate_map_edit(lambda s: s.replace("31.6,false", "31.6,maybe")),
            ("is_control", "maybe"),
            fast=False,
        ),
        meta(
            "plate map well in lower case",
            _plate_map_edit(lambda s: s.replace("E03,", "e03,")),
            ("e03",),
            fast=False,
        ),
        meta(
            "plate map well missing",
            _plate_map_edit(lambda s: "\n".join(s.splitlines()[:-1]) + "\n"),
            (),
            excludes=None,
            fast=False,
        ),
        meta(
            "plate map junk binary", _plate_map_edit(lambda s: "\x00\x01\x02\xff garbage"), (pm,), fast=False
        ),
    ]


# -- store faults ----------------------------------------------------------------------------------
def _partition(case: Case, table: str) -> Path:
    files = live_files(case.store, table)
    assert files, f"table {table} of the {case.base} store has no file"
    return files[len(files) // 2]


def _damage(table: str, how: str) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        p = _partition(case, table)
        case.note["file"] = p
        case.note["how"] = how
        data = p.read_bytes()
        p.unlink()  # a new inode: the pristine copy is never touched
        if how == "deleted":
            return
        p.write_bytes(
            {"truncated": data[: len(data) // 2], "zero-byte": b"", "junk": os.urandom(len(data))}[how]
        )

    return inject


def probe_table(table: str) -> Callable[[Case], Verdict]:
    """``check`` must name the damaged file; ``sql`` over the table must refuse naming it (or give the
    pristine rows); ``info`` must warn."""

    def probe(case: Case) -> Verdict:
        rel = str(case.note["file"])  # the full path: every partition file is called data.parquet
        n_before = case.pristine.tables[case.base][table].height
        chk = cli("check", case.store)
        sql = cli("sql", f"SELECT count(*) AS n FROM {table}", "--store", case.store, "--format", "csv")
        info = cli("info", case.store)
        vs = []
        for c in (chk, sql, info):
            if c.traceback:
                return Verdict("traceback", _short(c, 2000))
        if chk.rc != 1 or rel not in chk.out:
            vs.append(Verdict("silently_accepted", f"check does not name {rel}: {_short(chk)}"))
        if sql.rc == 0:
            n = int(sql.out.split()[-1])
            vs.append(
                Verdict(
                    "flagged" if n == n_before else "silently_accepted",
                    f"sql count {n} (pristine {n_before})",
                )
            )
        else:
            vs.append(refused(sql, rel))
        # info's counts come from the manifests (a stat per file): a missing or resized file must be
        # warned about; junk of the very same size is found by every read and by check
        if info.rc == 0 and "warning:" not in info.out and case.note.get("how") != "junk":
            vs.append(Verdict("silently_accepted", f"info prints no warning: {_short(info)}"))
        v = worst(*vs) if vs else Verdict("flagged", "")
        return Verdict(
            v.outcome, f"{v.detail}; check: {chk.out.strip().splitlines()[0][:100] if chk.out else ''}"
        )

    return probe


def table_faults(tables: list[str], base: str) -> list[Fault]:
    out = []
    for t in tables:
        for how in ("deleted", "truncated", "zero-byte", "junk"):
            out.append(
                Fault(f"{t} partition {how}", "store file", base, _damage(t, how), probe_table(t), (t,))
            )
    return out


def _manifest(case: Case, table: str) -> Path:
    return case.store / "tables" / table / "_manifest.json"


def _sql_same(case: Case, table: str, *names: str, expect_damage: bool) -> Verdict:
    """``sql`` over ``table`` and ``check``: with ``expect_damage`` both must say so (naming one of
    ``names``); otherwise the rows must equal the pristine ones."""
    n_before = case.pristine.tables[case.base][table].height
    sql = cli("sql", f"SELECT count(*) AS n FROM {table}", "--store", case.store, "--format", "csv")
    chk = cli("check", case.store)
    for c in (sql, chk):
        if c.traceback:
            return Verdict("traceback", _short(c, 2000))
    if sql.rc == 0:
        n = int(sql.out.split()[-1])
        if n != n_before:
            return Verdict("silently_accepted", f"sql count {n}, pristine {n_before}")
        if expect_damage and (chk.rc == 0 or not any(x in chk.out for x in names)):
            return Verdict("silently_accepted", f"check says nothing: {_short(chk)}")
        return Verdict(
            "flagged" if chk.rc else "handled", f"same {n} rows; check rc={chk.rc} {chk.out.strip()[:150]}"
        )
    v = refused(sql, *names)
    return v


def manifest_faults(tables: list[str], base: str) -> list[Fault]:
    out = []
    for t in tables:

        def missing(case: Case, t=t) -> None:
            _manifest(case, t).unlink()

        def corrupt(case: Case, t=t) -> None:
            p = _manifest(case, t)
            p.unlink()
            p.write_text('{"files": {"broken')

        def stale(
            case: Case, t=t
        ) -> None:  # the manifest of an earlier state: rows and bytes it no longer has
            p = _manifest(case, t)
            doc = json.loads(p.read_text())
            for e in doc["files"].values():
                e["rows"] += 1
                e["bytes"] += 7
            p.unlink()
            p.write_text(json.dumps(doc))

        def unlisted(case: Case, t=t) -> None:  # a new partition whose write was killed before its commit
            p = _manifest(case, t)
            doc = json.loads(p.read_text())
            k = sorted(doc["files"])[len(doc["files"]) // 2]
            case.note["file"] = k
            case.note["rows"] = doc["files"][k]["rows"]
            del doc["files"][k]
            p.unlink()
            p.write_text(json.dumps(doc))

        out += [
            Fault(
                f"{t} manifest missing",
                "manifest",
                base,
                missing,
                lambda c, t=t: _sql_same(c, t, expect_damage=False),
                fast=t == "images",
            ),
            Fault(
                f"{t} manifest corrupt",
                "manifest",
                base,
                corrupt,
                lambda c, t=t: _sql_same(c, t, "_manifest.json", expect_damage=True),
                fast=t == "images",
            ),
            Fault(
                f"{t} manifest stale (rows/bytes)",
                "manifest",
                base,
                stale,
                lambda c, t=t: _sql_same(c, t, t, "manifest", expect_damage=True),
                fast=False,
            ),
            Fault(
                f"{t} partition not in the manifest (write killed before its commit)",
                "manifest",
                base,
                unlisted,
                lambda c, t=t: _probe_uncommitted(c, t),
                fast=False,
            ),
        ]
    return out


def _probe_uncommitted(case: Case, table: str) -> Verdict:
    """Readers see the committed table (without the file); ``check`` lists the file."""
    n_want = case.pristine.tables[case.base][table].height - case.note["rows"]
    sql = cli("sql", f"SELECT count(*) AS n FROM {table}", "--store", case.store, "--format", "csv")
    chk = cli("check", case.store)
    for c in (sql, chk):
        if c.traceback:
            return Verdict("traceback", _short(c, 2000))
    n = int(sql.out.split()[-1]) if sql.rc == 0 else None
    if n != n_want:
        return Verdict(
            "silently_accepted", f"sql gives {n} rows, the committed table has {n_want}: {_short(sql)}"
        )
    if chk.rc != 1 or "not listed in the manifest" not in chk.out:
        return Verdict("silently_accepted", f"check does not list the uncommitted file: {_short(chk)}")
    return Verdict("flagged", f"readers see the {n} committed rows; check lists the uncommitted file")


def _marker(text: str | None) -> Callable[[Case], None]:
    def inject(case: Case) -> None:
        p = case.store / "lnpstore.json"
        p.unlink()
        if text is not None:
            p.write_text(text)

    return inject


def probe_marker(case: Case) -> Verdict:
    cmds = [
        cli("info", case.store),
        cli("sql", "SELECT count(*) FROM wells", "--store", case.store),
        cli("check", case.store),
    ]
    return worst(*(refused(c, "lnpstore.json", str(case.store)) for c in cmds))


def probe_stray(table: str, name: str) -> Callable[[Case], Verdict]:
    def probe(case: Case) -> Verdict:
        v = _sql_same(case, table, name, expect_damage=False)
        return v

    return probe


def marker_faults(base: str) -> list[Fault]:
    def stray(table: str, name: str, data: bytes) -> Fault:
        def inject(case: Case) -> None:
            (case.store / "tables" / table / name).write_bytes(data)

        return Fault(
            f"stray {name} in tables/{table}",
            "store file",
            base,
            inject,
            probe_stray(table, name),
            fast=name.endswith(".txt"),
        )

    return [
        Fault("lnpstore.json corrupt", "store file", base, _marker("{not json"), probe_marker),
        Fault("lnpstore.json missing", "store file", base, _marker(None), probe_marker),
        Fault("lnpstore.json zero bytes", "store file", base, _marker(""), probe_marker, fast=False),
        Fault(
            "lnpstore.json of a newer major schema",
            "store file",
            base,
            _marker('{"schema_version": "99.0", "created_at": "x"}'),
            probe_marker,
            fast=False,
        ),
        stray("wells", "notes.txt", b"some notes"),
        stray("images", "part-stray.parquet", os.urandom(300)),
        stray("images", "junk.parquet", b"PAR1junkPAR1"),
    ]


# -- read-only store -------------------------------------------------------------------------------
READ_COMMANDS = {
    "info": lambda s: ["info", s],
    "query": lambda s: ["query", "plate_summary", "--store", s],
    "sql": lambda s: ["sql", "SELECT count(*) FROM images", "--store", s],
    "check": lambda s: ["check", s],
}
#: Writing commands whose inputs the ingested store holds (the rest need the full store).
WRITE_ON_INGESTED = ("ingest", "track", "check --repair")
WRITE_COMMANDS = {
    "ingest": lambda s, c: ["ingest", c.plate_dir, "--store", s, "--plate-map", c.plate_map],
    "track": lambda s, c: ["track", s],
    "crop": lambda s, c: ["crop", s, "--frames", "6"],
    "figures": lambda s, c: ["figures", s],
    "embed": lambda s, c: ["embed", s, "--weights", "random"],
    "train-cnn": lambda s, c: ["train-cnn", s, "--mode", "classify", "--epochs", "1"],
    "evaluate": lambda s, c: ["evaluate", s, "--permutations", "50"],
    "report": lambda s, c: ["report", s],
    "check --repair": lambda s, c: ["check", s, "--repair"],
}


def read_only_faults(base: str) -> list[Fault]:
    """One fault per command: the store's folder read-only (a read-only mount where possible)."""

    def probe_read(name: str) -> Callable[[Case], Verdict]:
        def probe(case: Case) -> Verdict:
            (c,) = cli_subprocess([READ_COMMANDS[name](case.store)], read_only=case.store)
            if c.traceback:
                return Verdict("traceback", _short(c, 2000))
            if c.rc == 0:
                return Verdict("handled", f"reads a read-only store: {_short(c, 120)}")
            return refused(c, str(case.store))

        return probe

    def probe_write(name: str) -> Callable[[Case], Verdict]:
        def probe(case: Case) -> Verdict:
            (c,) = cli_subprocess([WRITE_COMMANDS[name](case.store, case)], read_only=case.store)
            if name == "check --repair" and c.rc == 0:
                return Verdict("handled", "nothing to repair: no write needed")
            if name == "ingest" and c.rc == 0:  # an unchanged plate: nothing to write
                return Verdict("handled", f"re-ingest of an unchanged plate writes nothing: {_short(c, 120)}")
            return refused(c, "read-only", str(case.store))

        return probe

    out = [
        Fault(f"read-only store: {n}", "read-only", base, lambda c: None, probe_read(n), fast=n == "info")
        for n in READ_COMMANDS
    ]
    out += [
        Fault(f"read-only store: {n}", "read-only", base, lambda c: None, probe_write(n), fast=n == "track")
        for n in WRITE_COMMANDS
        if base == "full" or n in WRITE_ON_INGESTED
    ]
    return out


# -- SQL sandbox -----------------------------------------------------------------------------------
def sql_faults(base: str) -> list[Fault]:
    def sql(
        name: str, text: str, *, params: tuple[str, ...] = (), outside: str | None = None, fast=True
    ) -> Fault:
        def inject(case: Case) -> None:
            case.note["outside"] = case.work / "outside.csv"

        def probe(case: Case) -> Verdict:
            q = text.format(store=case.store, out=case.note["outside"])
            argv = ["sql", q, "--store", case.store] + [x for p in params for x in ("--param", p)]
            c = cli(*argv)
            if Path(case.note["outside"]).exists():
                return Verdict("silently_accepted", f"wrote {case.note['outside']}")
            return refused(c)

        return Fault(f"sql: {name}", "sql sandbox", base, inject, probe, fast=fast)

    def param_quote(case: Case) -> Verdict:
        c = cli(
            "query",
            "cells_per_well",
            "--store",
            case.store,
            "--param",
            "plate=x' OR '1'='1",
            "--format",
            "csv",
        )
        if c.traceback:
            return Verdict("traceback", _short(c, 2000))
        if c.rc == 0 and len(c.out.strip().splitlines()) <= 1:
            return Verdict("handled", "the quoted value matched literally: no rows")
        return refused(c) if c.rc else Verdict("silently_accepted", f"rows returned: {c.out[:200]}")

    images = "{store}/tables/images"
    return [
        sql("COPY TO a file outside the store", "COPY (SELECT * FROM wells) TO '{out}' (FORMAT csv)"),
        sql(
            "COPY TO over a store partition",
            f"COPY (SELECT * FROM wells LIMIT 0) TO '{images}/x.parquet' (FORMAT parquet)",
            fast=False,
        ),
        sql("read_text of /etc/hostname", "SELECT * FROM read_text('/etc/hostname')"),
        sql("read_csv of /etc/passwd", "SELECT * FROM read_csv('/etc/passwd')", fast=False),
        sql("replacement scan of a file path", "SELECT * FROM '/etc/hostname'", fast=False),
        sql("glob of the file system", "SELECT * FROM glob('/etc/*')", fast=False),
        sql("ATTACH a database", "ATTACH '{out}.db' AS x"),
        sql("INSTALL an extension", "INSTALL httpfs"),
        sql("LOAD an extension", "LOAD httpfs", fast=False),
        sql("PRAGMA", "PRAGMA enable_external_access", fast=False),
        sql("SET enable_external_access", "SET enable_external_access = true", fast=False),
        sql("write through a CTE", "WITH x AS (SELECT 1) INSERT INTO wells SELECT * FROM wells", fast=False),
        sql("DELETE FROM a table", "DELETE FROM wells"),
        sql("CREATE TABLE", "CREATE TABLE t AS SELECT 1", fast=False),
        sql("multiple statements", "SELECT 1; DROP VIEW wells"),
        sql("EXPORT DATABASE", "EXPORT DATABASE '{out}'", fast=False),
        Fault("query: a parameter with a quote", "sql sandbox", base, lambda c: None, param_quote),
    ]


# -- CLI misuse ------------------------------------------------------------------------------------
def cli_faults(base: str) -> list[Fault]:
    def misuse(name: str, argv: Callable[[Case], list[Any]], *names: str, prep=None, fast=True) -> Fault:
        def probe(case: Case) -> Verdict:
            return refused(cli(*argv(case)), *names)

        return Fault(f"cli: {name}", "cli misuse", base, prep or (lambda c: None), probe, fast=fast)

    def bad_settings(text: str) -> Callable[[Case], None]:
        return lambda c: (c.work / "settings.json").write_text(text)

    nowhere = lambda c: c.work / "no" / "such" / "store"  # noqa: E731
    a_file = lambda c: c.plate_map  # noqa: E731
    return [
        misuse("info on a nonexistent store", lambda c: ["info", nowhere(c)], "such"),
        misuse(
            "sql on a nonexistent store",
            lambda c: ["sql", "SELECT 1", "--store", nowhere(c)],
            "such",
            fast=False,
        ),
        misuse("track on a nonexistent store", lambda c: ["track", nowhere(c)], "such", fast=False),
        misuse("check on a nonexistent store", lambda c: ["check", nowhere(c)], "such", fast=False),
        misuse("info on a file, not a folder", lambda c: ["info", a_file(c)], "plate_map.csv"),
        misuse(
            "evaluate on a file, not a folder", lambda c: ["evaluate", a_file(c)], "plate_map.csv", fast=False
        ),
        misuse(
            "ingest of a nonexistent plate folder",
            lambda c: ["ingest", c.work / "noplate", "--store", c.work / "s2"],
            "noplate",
        ),
        misuse(
            "ingest of a file as plate folder",
            lambda c: ["ingest", c.plate_map, "--store", c.work / "s2"],
            "plate_map.csv",
            fast=False,
        ),
        misuse(
            "ingest into a non-store folder",
            lambda c: ["ingest", c.plate_dir, "--store", c.plate_dir.parent, "--plate-map", c.plate_map],
            "lnpstore",
            fast=False,
        ),
        misuse(
            "track --settings junk file",
            lambda c: ["track", c.store, "--settings", c.work / "settings.json"],
            "settings.json",
            prep=bad_settings("{junk"),
        ),
        misuse(
            "track --settings unknown key",
            lambda c: ["track", c.store, "--settings", c.work / "settings.json"],
            "bogus",
            prep=bad_settings('{"bogus": 1}'),
            fast=False,
        ),
        misuse(
            "track --settings value out of range",
            lambda c: ["track", c.store, "--settings", c.work / "settings.json"],
            "edge_margin_um",
            prep=bad_settings('{"edge_margin_um": -5}'),
            fast=False,
        ),
        misuse(
            "track --settings missing file",
            lambda c: ["track", c.store, "--settings", c.work / "nope.json"],
            "nope.json",
            fast=False,
        ),
        misuse("unknown --format value", lambda c: ["info", c.store, "--format", "xml"], "format"),
        misuse(
            "unknown --mode value", lambda c: ["train-cnn", c.store, "--mode", "guess"], "mode", fast=False
        ),
        misuse("non-integer --seed", lambda c: ["crop", c.store, "--seed", "abc"], "seed", fast=False),
        misuse(
            "negative --frames", lambda c: ["crop", c.store, "--frames", "-3"], "t_in", "frames", fast=False
        ),
        misuse(
            "negative --pixel-size-um",
            lambda c: [
                "ingest",
                c.plate_dir,
                "--store",
                c.work / "s3",
                "--pixel-size-um",
                "-1",
                "--plate-map",
                c.plate_map,
            ],
            "pixel",
            fast=False,
        ),
        misuse(
            "--param without =",
            lambda c: ["sql", "SELECT 1", "--store", c.store, "--param", "plate"],
            "param",
            fast=False,
        ),
        misuse(
            "unknown named query", lambda c: ["query", "no_such_query", "--store", c.store], "no_such_query"
        ),
        misuse(
            "named query missing its parameter",
            lambda c: ["query", "cells_per_well", "--store", c.store],
            "plate",
            fast=False,
        ),
    ]


def wells_rows(plate: str, wells: list[str]) -> pl.DataFrame:
    """Rows of the store's ``wells`` table for ``wells`` (names like ``C03``) of ``plate``."""
    n = len(wells)
    return pl.DataFrame(
        {
            "plate": [plate] * n,
            "well": wells,
            "row": [w[0] for w in wells],
            "column": [int(w[1:]) for w in wells],
            "dose_ng": [1.0] * n,
            "is_control": [False] * n,
            "n_fields": [1] * n,
            "n_frames_expected": [1] * n,
            "n_images_ok": [1] * n,
            "n_problems": [0] * n,
            "excluded": [False] * n,
            "exclude_reason": [None] * n,
        }
    )


# -- concurrency ------------------------------------------------------------------------------------
RACER = """
import sys
import polars as pl
from lnpstore.store.core import Store

root, plate, n_writes, per_write = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = Store.open(root)
with store.batch():
  for i in range(n_writes):
    wells = [f"W{i * per_write + j:05d}" for j in range(per_write)]
    n = len(wells)
    store.write("wells", pl.DataFrame({
        "plate": [plate] * n, "well": wells, "row": ["W"] * n, "column": list(range(n)),
        "dose_ng": [1.0] * n, "is_control": [False] * n, "n_fields": [1] * n,
        "n_frames_expected": [1] * n, "n_images_ok": [1] * n, "n_problems": [0] * n,
        "excluded": [False] * n, "exclude_reason": [None] * n,
    }))
"""

HOLDER = """
import sys, time
from lnpstore.store.core import Store
with Store.open(sys.argv[1]).writing():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _py(code: str, *args: Any, **kw: Any) -> subprocess.Popen:
    env = {**os.environ, "LNPSTORE_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, text=True, **kw)


def race(n_upserts: int) -> Callable[[Case], Verdict]:
    """Two processes upserting ``n_upserts`` one-row... four-row batches each into one table."""

    def probe(case: Case) -> Verdict:
        per = 4
        writes = n_upserts // per
        procs = [_py(RACER, case.store, p, writes, per, stderr=subprocess.PIPE) for p in ("RaceA", "RaceB")]
        errs = [p.communicate(timeout=900)[1] for p in procs]
        if any(p.returncode for p in procs):
            return Verdict(
                "traceback" if any(TB in e for e in errs) else "clear_error", " | ".join(errs)[-500:]
            )
        wells = pl.read_parquet(live_files(case.store, "wells"))
        got = wells.filter(pl.col("plate").str.starts_with("Race")).height
        want = 2 * writes * per
        return Verdict("handled" if got == want else "silently_accepted", f"{got} of {want} rows kept")

    return probe


def _stale_lock(case: Case) -> None:
    (case.store / ".lnpstore.lock").write_text("")
    (case.store / ".lnpstore.lock.json").write_text(
        json.dumps({"pid": 999999, "command": "lnpstore track", "since": "2020-01-01T00:00:00+00:00"})
    )


def _probe_writer_runs(case: Case) -> Verdict:
    """A re-ingest (a writing command, in a new process as a user would run it) goes ahead, removes
    the dead writer's leftovers and leaves the data unchanged."""
    (c,) = cli_subprocess(
        [["ingest", case.plate_dir, "--store", case.store, "--plate-map", case.plate_map]],
        env={"LNPSTORE_LOCK_TIMEOUT": "5"},
    )
    if c.rc != 0 or c.traceback:
        return refused(c, "lock")
    same = all(
        read_all(case.store)[t].height == df.height for t, df in case.pristine.tables[case.base].items()
    )
    left = sorted(p.name for p in case.store.rglob(".tmp-*"))
    if left:
        return Verdict("silently_accepted", f"stale temporaries kept: {left}")
    return Verdict(
        "handled" if same else "silently_accepted",
        "the writer went ahead; data unchanged" if same else "data changed",
    )


def _stale_tmp(case: Case) -> None:
    old = time.time() - 10
    for rel in ("tables/images/.tmp-999999-deadbeef-part.parquet.tmp", "tables/.tmp-999999-cafe0000-wells"):
        p = case.store / rel
        p.write_bytes(b"half a file") if rel.endswith(".tmp") else p.mkdir()
        os.utime(p, (old, old))


def _probe_held_lock(case: Case) -> Verdict:
    holder = _py(HOLDER, case.store, 60, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        c = cli("check", case.store, "--repair", env={"LNPSTORE_LOCK_TIMEOUT": "1"})
        if c.rc == 0:  # check --repair writes only when something needs repair; ingest always takes the lock
            c = cli(
                "ingest",
                case.plate_dir,
                "--store",
                case.store,
                "--plate-map",
                case.plate_map,
                env={"LNPSTORE_LOCK_TIMEOUT": "1"},
            )
        return refused(c, str(holder.pid))
    finally:
        holder.kill()
        holder.wait()


RUN_HOLDER = """
import sys, time
from lnpstore.store.lock import store_lock
with store_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _run_argv(case: Case, folder: Path, plate_map: Path | None = None) -> list[Any]:
    pm = plate_map or case.plate_map
    return ["run", folder, "--plate", case.plate_dir, "--plate-map", pm, "--weights", "random"]


def _probe_second_run(case: Case) -> Verdict:
    """``lnpstore run`` on a folder another run holds: waits, then exits naming the holder."""
    folder = case.work / "run"
    folder.mkdir()
    holder = _py(RUN_HOLDER, folder, 60, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        c = cli(*_run_argv(case, folder), env={"LNPSTORE_LOCK_TIMEOUT": "1"})
        v = refused(c, f"PID {holder.pid}")
        if v.outcome == "clear_error" and (folder / "store").exists():
            return Verdict(
                "silently_accepted", "the second run wrote a store while the first held the folder"
            )
        return v
    finally:
        holder.kill()
        holder.wait()


def _probe_run_failed_ingest(case: Case) -> Verdict:
    """``lnpstore run`` with a plate map it cannot ingest: a clear error and no run folder left."""
    bad = case.work / "bad_map.csv"
    text = case.plate_map.read_text()
    bad.write_text(_set_dose(text.splitlines()[1].split(",")[0], "inf")(text))
    folder = case.work / "new" / "run"
    v = refused(cli(*_run_argv(case, folder, bad)), "not a finite number")
    if v.outcome == "clear_error" and (case.work / "new").exists():
        return Verdict("silently_accepted", f"a failed run left {case.work / 'new'} behind")
    return v


def concurrency_faults(base: str, n_upserts: int) -> list[Fault]:
    return [
        Fault(
            f"two writers racing {n_upserts} upserts each",
            "concurrency",
            base,
            lambda c: None,
            race(n_upserts),
            fast=n_upserts <= 100,
        ),
        Fault("stale lock file of a dead process", "concurrency", base, _stale_lock, _probe_writer_runs),
        Fault(
            "stale .tmp-PID-* file and folder of a dead writer",
            "concurrency",
            base,
            _stale_tmp,
            _probe_writer_runs,
        ),
        Fault(
            "a second writer while another holds the lock",
            "concurrency",
            base,
            lambda c: None,
            _probe_held_lock,
        ),
        Fault("two lnpstore run on one folder", "concurrency", base, lambda c: None, _probe_second_run),
        Fault(
            "lnpstore run whose ingest fails", "concurrency", base, lambda c: None, _probe_run_failed_ingest
        ),
    ]


# -- stages that find their outputs damaged redo them ------------------------------------------------
def _damage_where(table: str, part: str, how: str = "deleted") -> Callable[[Case], None]:
    """Damage the live file of ``table`` whose path contains ``part`` (e.g. a CNN model's predictions)."""

    def inject(case: Case) -> None:
        p = next(f for f in live_files(case.store, table) if part in str(f))
        case.note["file"] = p
        data = p.read_bytes()
        p.unlink()
        if how == "truncated":
            p.write_bytes(data[: len(data) // 2])

    return inject


def probe_redo(
    table: str, argv: Callable[[Case], list[Any]], model_prefix: str | None = None
) -> Callable[[Case], Verdict]:
    """The stage that writes ``table`` is re-run on the damaged store: it must redo the damaged unit
    (the table then has the pristine rows, those of models ``model_prefix*`` when given, and ``check``
    is clean) or refuse naming the file; exiting 0 with fewer rows is silent acceptance."""

    def rows(df: pl.DataFrame) -> int:
        if model_prefix is None or df.is_empty():
            return df.height
        return df.filter(pl.col("model_id").str.starts_with(model_prefix)).height

    def probe(case: Case) -> Verdict:
        c = cli(*argv(case))
        if c.traceback or c.rc != 0:
            return refused(c, case.note["file"].name, table, "damaged")
        n_want = rows(case.pristine.tables[case.base][table])
        n_got = rows(read_all(case.store)[table])
        chk = cli("check", case.store)
        if n_got != n_want or chk.rc != 0:
            return Verdict(
                "silently_accepted",
                f"exit 0 but {table} has {n_got} rows (pristine {n_want}); check rc={chk.rc}: {_short(c)}",
            )
        return Verdict("handled", f"redone: {table} back to {n_want} rows, check clean")

    return probe


def _delete_table_folder(table: str) -> Callable[[Case], None]:
    """``rm -r STORE/tables/TABLE``: the files and the manifest with them."""

    def inject(case: Case) -> None:
        d = case.store / "tables" / table
        case.note["file"] = d
        shutil.rmtree(d)

    return inject


def probe_evaluate_after(case: Case) -> Verdict:
    """``evaluate`` on a store with a damaged predictions partition: refuse naming it (or give the
    pristine metrics): never exit 0 with metrics of fewer predictions."""
    c = cli("evaluate", case.store, "--permutations", "50")
    if c.traceback or c.rc != 0:
        return refused(c, case.note["file"].name, "predictions", "damaged")
    want = case.pristine.tables[case.base]["metrics"]
    got = read_all(case.store)["metrics"]
    keys = [k for k in ("model_id", "kind", "mode", "fold", "frame", "metric") if k in want.columns]
    joined = want.join(got, on=keys, how="inner", suffix="_new")
    if joined.height == want.height and (joined["value"] - joined["value_new"]).abs().max() < 1e-9:
        return Verdict("handled", "metrics unchanged")
    return Verdict("silently_accepted", f"exit 0 with changed metrics: {_short(c)}")


def _delete_label_movie(case: Case) -> None:
    p = sorted((case.store / "labels").rglob("*.tif"))[0]
    case.note["file"] = p
    p.unlink()


def probe_label_movie(case: Case) -> Verdict:
    """``check`` must name the missing label movie; ``track`` must write it again."""
    chk = cli("check", case.store)
    if chk.traceback:
        return Verdict("traceback", _short(chk, 2000))
    if chk.rc != 1 or case.note["file"].name not in chk.out:
        return Verdict("silently_accepted", f"check does not name {case.note['file']}: {_short(chk)}")
    c = cli("track", case.store)
    if c.traceback or c.rc != 0:
        return refused(c, case.note["file"].name)
    if not case.note["file"].exists():
        return Verdict("silently_accepted", f"track did not write it again: {_short(c)}")
    return Verdict("flagged", "check names it; track writes it again")


def _repair_then(argv: Callable[[Case], list[Any]]) -> Callable[[Case], list[Any]]:
    def run(case: Case) -> list[Any]:
        rep = cli("check", case.store, "--repair")
        case.note["repair"] = rep
        return argv(case)

    return run


def redo_faults() -> list[Fault]:
    def cnn(c: Case) -> list[Any]:
        return ["train-cnn", c.store, "--mode", "classify", "--epochs", "1", "--folds", "2", "--seed", "0"]

    return [
        Fault(
            "tracks partition deleted, then track",
            "redo",
            "full",
            _damage_where("tracks", "well=C03"),
            probe_redo("tracks", lambda c: ["track", c.store]),
            ("tracks",),
            fast=False,
        ),
        Fault(
            "tracks partition truncated, then track",
            "redo",
            "full",
            _damage_where("tracks", "well=C03", "truncated"),
            probe_redo("tracks", lambda c: ["track", c.store]),
            ("tracks",),
            fast=False,
        ),
        Fault(
            "tracks partition deleted, then check --repair and track",
            "redo",
            "full",
            _damage_where("tracks", "well=C03"),
            probe_redo("tracks", _repair_then(lambda c: ["track", c.store])),
            ("tracks",),
            fast=False,
        ),
        Fault(
            "label movie deleted, then check and track",
            "redo",
            "full",
            _delete_label_movie,
            probe_label_movie,
            fast=False,
        ),
        Fault(
            "tables/tracks folder deleted, then track",
            "redo",
            "full",
            _delete_table_folder("tracks"),
            probe_redo("tracks", lambda c: ["track", c.store]),
            ("tracks",),
            fast=False,
        ),
        Fault(
            "tables/cells folder deleted, then crop",
            "redo",
            "full",
            _delete_table_folder("cells"),
            probe_redo("cells", lambda c: ["crop", c.store, "--frames", "6"]),
            ("cells",),
            fast=False,
        ),
        Fault(
            "tables/predictions folder deleted, then train-cnn",
            "redo",
            "full",
            _delete_table_folder("predictions"),
            probe_redo("predictions", cnn, "cnn-classify"),
            ("predictions",),
            fast=False,
        ),
        Fault(
            "tables/models folder deleted, then train-cnn",
            "redo",
            "full",
            _delete_table_folder("models"),
            probe_redo("models", cnn, "cnn-classify"),
            ("models",),
            fast=False,
        ),
        Fault(
            "cells partition deleted, then crop",
            "redo",
            "full",
            _damage_where("cells", "well=C03"),
            probe_redo("cells", lambda c: ["crop", c.store, "--frames", "6"]),
            ("cells",),
            fast=False,
        ),
        Fault(
            "CNN predictions deleted, then train-cnn",
            "redo",
            "full",
            _damage_where("predictions", "cnn-classify-f0"),
            probe_redo("predictions", cnn),
            ("predictions",),
            fast=False,
        ),
        Fault(
            "CNN predictions deleted, then evaluate",
            "redo",
            "full",
            _damage_where("predictions", "cnn-classify-f0"),
            probe_evaluate_after,
            ("predictions",),
            fast=False,
        ),
        Fault(
            "LSTM predictions truncated, then evaluate",
            "redo",
            "full",
            _damage_where("predictions", "lstm-", "truncated"),
            probe_evaluate_after,
            ("predictions",),
            fast=False,
        ),
    ]


def catalog(*, full: bool, n_upserts: int = 1000) -> list[Fault]:
    """Every fault; ``full``: also those that need a store of every stage (the benchmark's)."""
    base_tables = ["plates", "wells", "images"]
    faults = image_faults() + metadata_faults()
    faults += (
        table_faults(base_tables, "store") + manifest_faults(base_tables, "store") + marker_faults("store")
    )
    faults += read_only_faults("full" if full else "store")
    faults += sql_faults("store") + cli_faults("store") + concurrency_faults("store", n_upserts)
    if full:
        others = [t for t in table_names() if t not in base_tables]
        faults += table_faults(others, "full") + manifest_faults(others[:4], "full") + redo_faults()
    names = [f.name for f in faults]
    assert len(names) == len(set(names)), "fault names must be distinct"
    return faults


# -- kill -9 resume -------------------------------------------------------------------------------
#: The run the kill -9 part interrupts (and whose store the store faults damage): a small simulated
#: plate (6 wells, 400 px fields, 8 frames) through every stage with the smallest searches.
RUN_OVERRIDES = {
    "sim_preset": "tiny",
    "sim_overrides": (("columns", (3, 4)), ("cells_per_field", 16), ("n_frames", 8)),
    "t_in_frames": 6,
    "n_augs": 1,
    "n_folds": 2,
    "cnn_epochs": 1,
    "lstm_samples": 1,
    "lstm_units": (32,),
    "tsfresh_samples": 2,
    "checkpoints_frames": (3, 6),
    "n_permutations": 200,
    "weights": "random",
}
RUN = """
import sys
from lnpstore.study.pipeline import run_study
run_study(sys.argv[1], preset="demo", overrides={overrides!r}, show_progress=False)
"""

#: What legitimately differs between two runs of the same study in the same folder (every other
#: column, content hashes, model ids and run ids included, must be equal):
#: - ``plates.ingested_at``, ``models.created_at``: wall-clock times of the ingest and of training;
#: - the ``timings_s`` entry of ``models.config`` (tsfresh models record their stages' durations, s);
#: - its ``cache_hits`` / ``cache_misses``: how many feature tables this run found in the tsfresh
#:   feature cache (``STORE/artifacts/tsfresh``), which a killed run may already have filled: how the
#:   run got the (identical) features, not what the model is.
#: The kill -9 runs use the reference run's folder path, so that absolute paths (``plates.source_dir``,
#: ``images.path``, ``models.weights_path``) and everything hashed from them compare equal too.
RUN_SPECIFIC_COLUMNS = {"plates": ("ingested_at",), "models": ("created_at",)}
RUN_SPECIFIC_CONFIG_KEYS = ("timings_s", "cache_hits", "cache_misses")


def _without_timings(config: str) -> str:
    doc = json.loads(config)
    if isinstance(doc, dict):
        for k in RUN_SPECIFIC_CONFIG_KEYS:
            doc.pop(k, None)
    return json.dumps(doc, sort_keys=True)


def run_study_subprocess(folder: Path, *, kill_after_s: float | None = None) -> tuple[int, float]:
    """``run_study`` in a fresh process; SIGKILL after ``kill_after_s``. Returns (exit status, seconds)."""
    env = {**os.environ, "LNPSTORE_QUIET": "1"}
    code = RUN.format(overrides=RUN_OVERRIDES)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = p.communicate(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return -9, time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"run_study in {folder} failed:\n{err[-3000:]}")
    return 0, time.perf_counter() - t0


def table_contents(store: Path) -> dict[str, pl.DataFrame]:
    """Every table, run-specific columns dropped, rows sorted (every column), read through the store."""
    from lnpstore.store.core import Store

    s = Store.open(store)
    out = {}
    for t in table_names():
        df = s.read(t)
        df = df.drop(RUN_SPECIFIC_COLUMNS.get(t, ()))
        if t == "models" and df.height:
            df = df.with_columns(pl.col("config").map_elements(_without_timings, return_dtype=pl.String))
        sortable = [
            c
            for c, dt in df.schema.items()
            if dt.is_numeric() or dt in (pl.String, pl.Boolean) or dt.is_temporal()
        ]
        out[t] = df.sort(sortable, nulls_last=True) if df.height else df
    return out


def differences(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> list[str]:
    out = []
    for t in a:
        if a[t].shape != b[t].shape:
            out.append(f"{t}: shape {b[t].shape} vs {a[t].shape}")
        elif not a[t].equals(b[t]):
            diff_cols = [c for c in a[t].columns if not a[t][c].equals(b[t][c])]
            keys = _json_keys_differing(a[t], b[t], diff_cols)
            out.append(f"{t}: columns {diff_cols} differ" + (f" (JSON keys {keys})" if keys else ""))
    return out


def _json_keys_differing(a: pl.DataFrame, b: pl.DataFrame, cols: list[str]) -> list[str]:
    """For JSON text columns (``config``), the top-level keys whose values differ, with an example."""
    out: set[str] = set()
    for c in cols:
        if a.schema[c] != pl.String:
            continue
        for x, y in zip(a[c].to_list(), b[c].to_list(), strict=True):
            try:
                dx, dy = json.loads(x), json.loads(y)
            except (TypeError, ValueError):
                continue
            if isinstance(dx, dict) and isinstance(dy, dict):
                out |= {
                    f"{k}: {dx.get(k)!r:.60} vs {dy.get(k)!r:.60}"
                    for k in set(dx) | set(dy)
                    if dx.get(k) != dy.get(k)
                }
    return sorted(out)[:6]


def kill9(run_dir: Path, want: dict[str, pl.DataFrame], duration_s: float, n: int, seed: int) -> list[dict]:
    """Kill the run at ``n`` seeded random times within its duration, re-run it to completion in the
    same folder, compare every table with ``want`` (the uninterrupted run's)."""
    rng = random.Random(seed)
    # one time in each of n equal slices of the run (seeded), so the kills spread over every stage
    times = [duration_s * (i + rng.random()) / n for i in range(n)]
    out = []
    for t_kill in times:
        shutil.rmtree(run_dir, ignore_errors=True)
        rc, _ = run_study_subprocess(run_dir, kill_after_s=t_kill)
        _, resume_s = run_study_subprocess(run_dir)
        diffs = differences(want, table_contents(run_dir / "store"))
        out.append(
            {
                "kill_at_s": round(t_kill, 1),
                "killed": rc == -9,
                "resume_s": round(resume_s, 1),
                "identical": not diffs,
                "differences": diffs,
            }
        )
        state = "killed" if rc == -9 else "finished first"
        verdict = "identical" if not diffs else "DIFFERENT: " + "; ".join(diffs)
        print(f"  kill -9 at {t_kill:5.1f} s ({state}): resumed in {resume_s:.0f} s, {verdict}", flush=True)
    return out
