"""Label movies: a tracked field's label images (T x Y x X, uint16, pixel = track_id), one TIFF per field.

Written one frame at a time (:class:`LabelMovieWriter`, memory flat in the movie's length) under a
temporary name and renamed into place when complete, so an interrupted run never leaves a partial movie
that looks finished: one T x Y x X series (ImageJ hyperstack) that ``tifffile.imread`` reads whole.
Read lazily (:class:`LabelMovie`: one page per frame; movies of older versions, one series per page,
read the same). tifffile does the TIFF work. A new writer in a folder removes the temporaries that
killed writers left there (:func:`remove_label_tmp_of_dead_writers`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lnpstore.store.atomic import TMP_PREFIX, commit_tmp, remove_stale_tmp, tmp_path_for
from lnpstore.store.errors import LabelMovieError

MAX_LABEL = np.iinfo(np.uint16).max


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (True when that cannot be told, so its files are kept)."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process on Windows: rely on age there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs, as another user
        return True
    return True


def remove_label_tmp_of_dead_writers(folder: str | os.PathLike) -> int:
    """Remove the temporaries of label movies (``.tmp-PID-*``, spool pages included) in ``folder``
    whose writing process no longer runs, whatever their age (a killed ``lnpstore track`` or
    ``track-stack`` leaves them); returns how many were removed. :func:`remove_stale_tmp` removes only
    those older than an hour, so a run resumed at once would otherwise keep them forever."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.glob(f"{TMP_PREFIX}*"):
        pid = p.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)) or not p.is_file():
            continue
        p.unlink(missing_ok=True)
        n += 1
    return n


class LabelMovieWriter:
    """Append 2-D label frames to ``path``; ``close()`` writes the movie as one T x Y x X series (an
    ImageJ hyperstack, zlib-compressed, that ``tifffile.imread`` reads whole) and renames it into place.

    Frames are spooled one page each to a temporary file while tracking runs (the frame count is not
    known in advance) and copied into the one series at the end, one frame at a time (tifffile cannot
    append compressed pages to a series). Use as a context manager: on an exception the temporary files
    are removed and ``path`` is untouched.
    """

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.path.parent)
        remove_label_tmp_of_dead_writers(self.path.parent)
        self.tmp = tmp_path_for(self.path, keep_suffix=True)
        self.spool = self.tmp.with_name(self.tmp.name + ".pages")
        self._tif = tifffile.TiffWriter(self.spool, bigtiff=True)
        self.n_frames = 0
        self.shape: tuple[int, int] | None = None

    def write(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise LabelMovieError(f"{self.path}: a label frame must be 2-D, got shape {labels.shape}")
        if self.shape is None:
            self.shape = labels.shape
        elif labels.shape != self.shape:
            raise LabelMovieError(
                f"{self.path}: frame {self.n_frames + 1} has shape {labels.shape}, frame 1 had {self.shape}"
            )
        if labels.size and (int(labels.max()) > MAX_LABEL or int(labels.min()) < 0):
            raise LabelMovieError(f"{self.path}: labels must be in 0..{MAX_LABEL} to fit uint16")
        self._tif.write(labels.astype(np.uint16), compression="zlib", photometric="minisblack")
        self.n_frames += 1

    def close(self) -> Path:
        import tifffile

        self._tif.close()
        try:
            with tifffile.TiffFile(self.spool) as spool:
                pages = (page.asarray() for page in spool.pages)
                shape = (self.n_frames, *(self.shape or (0, 0)))
                with tifffile.TiffWriter(self.tmp, imagej=bool(self.n_frames)) as out:
                    if self.n_frames:  # (an empty movie stays a TIFF without pages, as before)
                        out.write(
                            pages, shape=shape, dtype=np.uint16, compression="zlib", metadata={"axes": "TYX"}
                        )
            commit_tmp(self.tmp, self.path)
        finally:
            self.spool.unlink(missing_ok=True)
            self.tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        self._tif.close()
        self.spool.unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> LabelMovieWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class LabelMovie(Sequence):
    """A label movie read lazily: ``movie[i]`` is frame i + 1 as a 2-D uint16 array; ``len`` is T."""

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = Path(path)
        if not self.path.is_file():
            raise LabelMovieError(
                f"label movie {self.path} does not exist. Hint: re-run `lnpstore track` (it writes them)"
            )
        with tifffile.TiffFile(self.path) as tif:
            self._n = len(tif.pages)
            page = tif.pages[0]
            self.shape = (self._n, *page.shape)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        import tifffile

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(f"frame index {i} out of range for {self._n} frames")
        return tifffile.imread(self.path, key=i % self._n)

    def __iter__(self) -> Iterator[np.ndarray]:
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for page in tif.pages:
                yield page.asarray()

    def to_array(self) -> np.ndarray:
        """The whole movie in memory (T x Y x X uint16)."""
        return np.stack(list(self)) if self._n else np.zeros((0, 0, 0), np.uint16)
