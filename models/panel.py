"""Panels: (cases x frames x channels) arrays with ids and targets, from the store or any long table.

A *case* is one sequence: a (cell, augmentation) pair for the store's embeddings, or any id of a
long table. Frames are 1-based time points (``frame`` column); channels are the embedding's 32
dimensions (``e00``..``e31``) or the long table's value columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Panel:
    """Equal-length sequences.

    Attributes
    ----------
    X : (n_cases, n_frames, n_channels) float32 ndarray
    ids : DataFrame, one row per case (e.g. ``cell_uid``, ``aug``), in the order of ``X``
    y : (n_cases,) float64 ndarray or None (label 0/1 or regression target)
    frames : (n_frames,) int ndarray, the 1-based frame numbers of axis 1
    channels : channel names, length n_channels
    """

    X: np.ndarray
    ids: pl.DataFrame
    y: np.ndarray | None
    frames: np.ndarray
    channels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.X.ndim != 3:
            raise ValueError(f"`X` must be (cases, frames, channels), got shape {self.X.shape}")
        n, t, c = self.X.shape
        if self.ids.height != n:
            raise ValueError(f"`ids` has {self.ids.height} rows, `X` has {n} cases")
        if self.y is not None and len(self.y) != n:
            raise ValueError(f"`y` has {len(self.y)} values, `X` has {n} cases")
        if len(self.frames) != t or len(self.channels) != c:
            raise ValueError(
                f"frames/channels ({len(self.frames)}, {len(self.channels)}) do not match X {self.X.shape}"
            )

    @property
    def n_cases(self) -> int:
        return self.X.shape[0]

    def truncate(self, checkpoint: int) -> Panel:
        """Only frames ``<= checkpoint`` (the inputs available at checkpoint t, in frames)."""
        keep = self.frames <= checkpoint
        if not keep.any():
            raise ValueError(f"checkpoint {checkpoint} keeps no frame; frames are {self.frames.tolist()}")
        return replace(self, X=self.X[:, keep, :], frames=self.frames[keep])

    def subset(self, mask: np.ndarray) -> Panel:
        """The cases where ``mask`` (bool, n_cases) is true."""
        mask = np.asarray(mask, dtype=bool)
        return replace(
            self,
            X=self.X[mask],
            ids=self.ids.filter(pl.Series(mask)),
            y=None if self.y is None else self.y[mask],
        )

    def average_augs(self, by: str = "cell_uid") -> Panel:
        """One sequence per ``by`` value: the mean over its cases (e.g. the 8 augmentations), aug = -1."""
        keys = self.ids.get_column(by).to_numpy()
        uniq, inv = np.unique(keys, return_inverse=True)
        counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
        X = np.zeros((len(uniq),) + self.X.shape[1:], dtype=np.float64)
        np.add.at(X, inv, self.X)
        X = (X / counts[:, None, None]).astype(np.float32)
        y = None
        if self.y is not None:
            y = np.bincount(inv, weights=self.y, minlength=len(uniq)) / counts
        ids = pl.DataFrame({by: uniq})
        if "aug" in self.ids.columns:
            ids = ids.with_columns(aug=pl.lit(-1, dtype=pl.Int8))
        return replace(self, X=X, ids=ids, y=y)


def panel_from_long(
    df: pl.DataFrame,
    *,
    id_cols: Sequence[str],
    frame_col: str = "frame",
    channel_cols: Sequence[str] | None = None,
    target_col: str | None = None,
) -> Panel:
    """A panel from a long table (one row per id x frame, one column per channel).

    Every id must have the same frames; an id with a missing frame raises ``ValueError`` naming it.
    ``channel_cols`` defaults to every column that is not an id, the frame or the target. A column of
    fixed-size arrays (e.g. the 32-dim ``embedding``) is expanded into one channel per element.
    """
    id_cols = list(id_cols)
    if channel_cols is None:
        skip = set(id_cols) | {frame_col} | ({target_col} if target_col else set())
        channel_cols = [c for c in df.columns if c not in skip]
    df = df.sort([*id_cols, frame_col])
    frames = np.sort(df.get_column(frame_col).unique().to_numpy())
    n_frames = len(frames)
    counts = df.group_by(id_cols, maintain_order=True).agg(n=pl.len(), nf=pl.col(frame_col).n_unique())
    bad = counts.filter((pl.col("n") != n_frames) | (pl.col("nf") != n_frames))
    if bad.height:
        first = bad.row(0, named=True)
        raise ValueError(
            f"{bad.height} case(s) do not have exactly the frames {frames.tolist()}, e.g. "
            f"{ {k: first[k] for k in id_cols} } has {first['n']} rows. "
            "Hint: keep only complete cells, or truncate to a common checkpoint"
        )
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for c in channel_cols:
        s = df.get_column(c)
        if isinstance(s.dtype, pl.Array | pl.List):
            arr = np.asarray(s.to_list() if isinstance(s.dtype, pl.List) else s.to_numpy(), dtype=np.float32)
            blocks.append(arr.reshape(len(df), -1))
            names += [f"{c[0]}{i:02d}" if c == "embedding" else f"{c}_{i}" for i in range(arr.shape[-1])]
        else:
            blocks.append(s.cast(pl.Float32).to_numpy().reshape(-1, 1))
            names.append(c)
    flat = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(df), 0), np.float32)
    n_cases = counts.height
    X = np.ascontiguousarray(flat.reshape(n_cases, n_frames, -1), dtype=np.float32)
    first_rows = df.gather(np.arange(n_cases) * n_frames)
    y = None
    if target_col is not None:
        y = first_rows.get_column(target_col).cast(pl.Float64).to_numpy()
    return Panel(
        X=X, ids=first_rows.select(id_cols), y=y, frames=frames.astype(np.int64), channels=tuple(names)
    )


def target_column(mode: str) -> str:
    """The ``cells`` column that is the target of a mode."""
    if mode == "classify":
        return "label"
    if mode == "regress":
        return "gfp_log_centered"
    raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")


def panels_from_sequences(df: pl.DataFrame, *, mode: str) -> dict[str, Panel]:
    """Split the result of ``queries/sequences.sql`` into train / val / test panels (by ``role``).

    Each (cell, augmentation) is one case; ids are ``cell_uid, aug``. Roles without rows are absent.
    """
    target = target_column(mode)
    out: dict[str, Panel] = {}
    for role in ROLES:
        part = df.filter(pl.col("role") == role)
        if part.height == 0:
            continue
        out[role] = panel_from_long(
            part.select("cell_uid", "aug", "frame", "embedding", target),
            id_cols=["cell_uid", "aug"],
            channel_cols=["embedding"],
            target_col=target,
        )
    return out


def load_panels(store, *, mode: str, fold: int, checkpoint: int) -> dict[str, Panel]:
    """Train / val / test panels of frames 1..checkpoint from the fold's own CNN embeddings."""
    df = store.query("sequences", mode=mode, fold=int(fold), checkpoint=int(checkpoint))
    return panels_from_sequences(df, mode=mode)
