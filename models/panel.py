"""Panels: (cases x frames x channels) arrays with ids and targets, from the store or any long table,
and the scikit-learn-style base of the panel estimators (LSTM, tsfresh -> XGBoost).

A *case* (series) is one sequence: a (cell, augmentation) pair for the store's embeddings, or any id of
a long table. Frames (steps) are time points (``frame`` column); channels are the embedding's 32
dimensions (``e00``..``e31``) or the long table's value columns.

:class:`PanelEstimator` takes a panel in any of these forms (:func:`as_panel`): an
(n_series, n_steps, n_channels) array, an (n_series, n_steps) array (one channel), a list of
(n_steps_i, n_channels) arrays of unequal lengths, or a long polars frame (one row per series x step);
shorter series are right-padded and masked. Labels of any type are encoded internally (``classes_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

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
    return _panels_by_role(df, mode=mode, id_cols=["cell_uid", "aug"], channel_cols=["embedding"])


def _panels_by_role(
    df: pl.DataFrame, *, mode: str, id_cols: list[str], channel_cols: list[str]
) -> dict[str, Panel]:
    """One panel per ``role`` of a long query result (roles without rows are absent)."""
    target = target_column(mode)
    out: dict[str, Panel] = {}
    for role in ROLES:
        part = df.filter(pl.col("role") == role)
        if part.height == 0:
            continue
        out[role] = panel_from_long(
            part.select(*id_cols, "frame", *channel_cols, target),
            id_cols=id_cols,
            channel_cols=channel_cols,
            target_col=target,
        )
    return out


#: What the store's time-series models read: the fold's CNN embeddings (the study's protocol), the
#: cells' per-frame track measures (``queries/track_sequences.sql``), or both (each augmentation's
#: embedding with its cell's measures appended as channels).
Inputs = Literal["embeddings", "tracks", "both"]
INPUTS: tuple[str, ...] = ("embeddings", "tracks", "both")

#: The channels of ``queries/track_sequences.sql``, in order (units there).
TRACK_CHANNELS: tuple[str, ...] = (
    "log_area",
    "log1p_spots",
    "log1p_lnp",
    "mean_cs",
    "eccentricity",
    "lnp_depth",
)


def panels_from_tracks(df: pl.DataFrame, *, mode: str) -> dict[str, Panel]:
    """Split the result of ``queries/track_sequences.sql`` into train / val / test panels (by ``role``).

    Each cell is one case (track measures are not augmented); ids are ``cell_uid, aug`` with
    ``aug = -1`` (as for augmentation-averaged sequences). A cell without every frame raises
    :class:`~lnpstore.store.errors.PanelError` naming it.
    """
    try:
        panels = _panels_by_role(df, mode=mode, id_cols=["cell_uid"], channel_cols=list(TRACK_CHANNELS))
    except ValueError as exc:
        raise _panel_error(
            f"track measures: {exc}. A cell followed through a division (division_rule='follow') "
            "changes track after it; use the embeddings as inputs for it"
        ) from exc
    return {r: replace(p, ids=p.ids.with_columns(aug=pl.lit(-1, dtype=pl.Int8))) for r, p in panels.items()}


def with_track_measures(emb: Panel, tracks: Panel) -> Panel:
    """``emb`` (one case per cell x augmentation) with its cell's track measures appended as channels."""
    if not np.array_equal(emb.frames, tracks.frames):
        raise _panel_error(
            f"embeddings have frames {emb.frames.tolist()}, track measures {tracks.frames.tolist()}"
        )
    row = {u: i for i, u in enumerate(tracks.ids.get_column("cell_uid").to_list())}
    uids = emb.ids.get_column("cell_uid").to_list()
    missing = sorted({u for u in uids if u not in row})
    if missing:
        raise _panel_error(
            f"{len(missing)} embedded cell(s) have no track measures, e.g. {missing[0]!r}. "
            "Hint: the tracks table lost rows since the crops were made; re-run `lnpstore track`"
        )
    idx = np.fromiter((row[u] for u in uids), dtype=np.int64, count=len(uids))
    X = np.concatenate([emb.X, tracks.X[idx]], axis=2)
    return replace(emb, X=X, channels=emb.channels + tracks.channels)


def load_inputs(
    store, *, mode: str, fold: int, checkpoint: int, inputs: Inputs = "embeddings"
) -> tuple[dict[str, Panel], str | None]:
    """Train / val / test panels of frames 1..checkpoint, and the id of the CNN whose embeddings
    they hold (None for ``inputs='tracks'``). See :data:`Inputs`."""
    if inputs not in INPUTS:
        raise _panel_error(f"inputs must be one of {INPUTS}, not {inputs!r}")
    emb: dict[str, Panel] = {}
    cnn_id = None
    if inputs in ("embeddings", "both"):
        df = store.query("sequences", mode=mode, fold=int(fold), checkpoint=int(checkpoint))
        emb = panels_from_sequences(df, mode=mode)
        cnn_id = df.get_column("cnn_model_id")[0] if df.height else None
    if inputs == "embeddings":
        return emb, cnn_id
    trk = panels_from_tracks(
        store.query("track_sequences", fold=int(fold), checkpoint=int(checkpoint)), mode=mode
    )
    if inputs == "tracks":
        return trk, None
    return {r: with_track_measures(p, trk[r]) for r, p in emb.items() if r in trk}, cnn_id


def load_panels(
    store, *, mode: str, fold: int, checkpoint: int, inputs: Inputs = "embeddings"
) -> dict[str, Panel]:
    """Train / val / test panels of frames 1..checkpoint: the fold's own CNN embeddings, the cells'
    track measures or both (:data:`Inputs`)."""
    return load_inputs(store, mode=mode, fold=fold, checkpoint=checkpoint, inputs=inputs)[0]


# ------------------------------------------------------------------------------------------ estimators
def _panel_error(msg: str) -> Exception:
    from lnpstore.store.errors import PanelError

    return PanelError(msg)


def as_panel(
    X,
    *,
    name: str = "X",
    id_col: str = "id",
    time_col: str = "time",
    n_channels: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Any panel form -> (X (n, T, C) float32 zero-padded, lengths (n,) int32 steps, ids or None).

    Forms: an (n_series, n_steps, n_channels) array (trailing all-NaN steps are padding: a shorter
    series), an (n_series, n_steps) array (one channel), a list of (n_steps_i[, n_channels]) arrays,
    or a long polars frame with ``id_col``, ``time_col`` and one numeric column per channel (series in
    order of first appearance; ``ids`` returned). ``n_channels`` (the fitted count) is checked, with a
    hint when the array looks transposed ((n, channels, steps)).
    """
    ids = None
    if isinstance(X, pl.DataFrame):
        X, lengths, ids = _from_long(X, id_col=id_col, time_col=time_col, name=name)
    elif isinstance(X, list | tuple) and len(X) and np.ndim(X[0]) in (1, 2):
        seqs = [np.asarray(s, np.float32) for s in X]
        seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
        chans = {s.shape[1] for s in seqs}
        if len(chans) != 1:
            raise _panel_error(f"`{name}`: the series have different channel counts {sorted(chans)}")
        lengths = np.array([len(s) for s in seqs], np.int32)
        if (lengths < 1).any():
            raise _panel_error(f"`{name}`: series {int(np.argmin(lengths))} has no step")
        out = np.zeros((len(seqs), int(lengths.max()), chans.pop()), np.float32)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        X = out
    else:
        X = np.asarray(X)
        if X.dtype == object:
            raise _panel_error(f"`{name}`: an object array; pass a list of (steps, channels) arrays instead")
        X = np.asarray(X, np.float32)
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3:
            raise _panel_error(
                f"`{name}` must be (n_series, n_steps, n_channels) or (n_series, n_steps), got shape {X.shape}"
            )
        finite_step = np.isfinite(X).any(axis=2)  # (n, T): a step with any value
        lengths = np.where(finite_step.any(1), X.shape[1] - np.argmax(finite_step[:, ::-1], axis=1), 0)
        lengths = lengths.astype(np.int32)
        inner = ~np.isfinite(X) & (np.arange(X.shape[1])[None, :, None] < lengths[:, None, None])
        if inner.any():
            i, t, c = (int(v[0]) for v in np.nonzero(inner))
            raise _panel_error(
                f"`{name}`: series {i} has a missing value at step {t}, channel {c} (only trailing "
                "all-missing steps are read as a shorter series). Hint: interpolate or fill it first"
            )
        X = np.where(np.isfinite(X), X, 0.0).astype(np.float32)
    if len(X) == 0:
        raise _panel_error(f"`{name}` has no series")
    if (lengths < 1).any():
        raise _panel_error(f"`{name}`: series {int(np.argmin(lengths))} has no finite step")
    n, t, c = X.shape
    if n_channels is None and t == 1 and c > 1:
        raise _panel_error(
            f"`{name}` has shape {X.shape}: {c} channels of 1 step each. It looks like (n_series, "
            "n_channels, n_steps). Hint: pass X.transpose(0, 2, 1), or X[:, :, None] for one channel"
        )
    if n_channels is not None and c != n_channels:
        hint = " It looks transposed: pass X.transpose(0, 2, 1)." if t == n_channels else ""
        raise _panel_error(
            f"`{name}` has {c} channels (shape {X.shape}), the model was fitted on {n_channels}.{hint}"
        )
    return X, lengths, ids


def _from_long(
    df: pl.DataFrame, *, id_col: str, time_col: str, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for col in (id_col, time_col):
        if col not in df.columns:
            raise _panel_error(
                f"`{name}`: the long frame has no {col!r} column (columns: {df.columns}). "
                "Hint: set id_col= / time_col= on the estimator"
            )
    chans = [c for c in df.columns if c not in (id_col, time_col)]
    bad = [c for c in chans if not df.schema[c].is_numeric()]
    if bad or not chans:
        raise _panel_error(
            f"`{name}`: every column other than {id_col!r} and {time_col!r} is a channel and must be "
            f"numeric; found {bad or 'no channel'}. Hint: drop the target and other columns first"
        )
    order = df.select(id_col).unique(maintain_order=True).with_row_index("_series")
    d = df.join(order, on=id_col).sort(["_series", time_col])
    dup = d.select(pl.struct(id_col, time_col).is_duplicated().any()).item()
    if dup:
        raise _panel_error(f"`{name}`: a series has two rows for the same {time_col!r}")
    lengths = d.group_by("_series", maintain_order=True).len().get_column("len").to_numpy().astype(np.int32)
    pos = d.select(pl.int_range(pl.len()).over("_series")).to_series().to_numpy()
    X = np.zeros((order.height, int(lengths.max()), len(chans)), np.float32)
    X[d.get_column("_series").to_numpy(), pos] = d.select(chans).cast(pl.Float32).to_numpy()
    return X, lengths, order.get_column(id_col).to_numpy()


def encode_labels(y) -> tuple[np.ndarray, np.ndarray]:
    """(classes, class index per series): labels of any type (str, int, float, bool) -> 0..K-1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise _panel_error(f"labels must be one per series (1-d), got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise _panel_error(f"labels hold {int(np.isnan(y).sum())} NaN value(s)")
    classes, idx = np.unique(y, return_inverse=True)
    return classes, idx.astype(np.int64)


def validation_split(
    y: np.ndarray, fraction: float, seed: int, *, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a random ``fraction`` held out, per class when ``stratify`` and
    every class has at least 2 series; at least 1 row each side."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    if n < 4:
        raise _panel_error(f"{n} series are too few to split off a validation part (need >= 4)")
    n_val = min(n - 2, max(1, round(fraction * n)))
    strat = None
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            strat = y
    tr, va = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


try:  # scikit-learn is a dependency; kept lazy-safe for `import lnpstore.models.panel` users
    from sklearn.base import BaseEstimator as _Base
except ImportError:  # pragma: no cover
    _Base = object  # type: ignore[assignment,misc]


class PanelEstimator(_Base):  # type: ignore[misc,valid-type]
    """scikit-learn-style estimator on panels: ``fit``, ``predict``, ``predict_proba``,
    ``decision_function``, ``score``, ``get_params``/``set_params`` (so ``cross_val_score``, ``clone``
    and ``GridSearchCV`` work), ``classes_``.

    Subclasses set ``mode`` ("classify" or "regress") and implement ``_fit_panel`` and
    ``_decision``. ``fit(X, y)`` holds out ``val_fraction`` of the series (stratified) for early
    stopping and model choice when no ``X_val``/``y_val`` is given; the held-out rows are recorded
    (``train_index_``, ``val_index_``). X: any form of :func:`as_panel`; y: one label or value per
    series, or the name of a column of a long frame X (constant within a series).
    """

    mode: str = "classify"
    # set by fit (val_index_: None when X_val was given; _split_from: only during fit)
    train_index_: np.ndarray
    val_index_: np.ndarray | None
    _split_from: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    # -- subclass hooks
    def _fit_panel(self, X, L, y, Xv, Lv, yv) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decision(self, X, L) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self._mode() == "classify" else "regressor"
        if self._mode() == "classify":
            from sklearn.utils import ClassifierTags

            tags.classifier_tags = ClassifierTags()
        else:
            from sklearn.utils import RegressorTags

            tags.regressor_tags = RegressorTags()
        return tags

    def _mode(self) -> Literal["classify", "regress"]:
        return getattr(self, "mode", "classify")

    def _panel(self, X, name: str = "X", *, fitted: bool = True):
        return as_panel(
            X,
            name=name,
            id_col=getattr(self, "id_col", "id"),
            time_col=getattr(self, "time_col", "time"),
            n_channels=self.n_channels_ if fitted else None,
        )

    def _targets(self, X, y, name: str):
        if isinstance(y, str):
            if not isinstance(X, pl.DataFrame) or y not in X.columns:
                raise _panel_error(f"`{name}`: target column {y!r} needs a long polars frame that has it")
            id_col = getattr(self, "id_col", "id")
            per = X.group_by(id_col, maintain_order=True).agg(pl.col(y).first(), n=pl.col(y).n_unique())
            if (per["n"] > 1).any():
                raise _panel_error(f"`{name}`: target column {y!r} varies within a series")
            return X.drop(y), per.get_column(y).to_numpy()
        return X, np.asarray(y)

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on (X, y); (X_val, y_val) drive early stopping and model choice (split off X when None).

        X: (n_series, n_steps, n_channels) array or another form of :func:`as_panel`; y: labels of any
        type (classify) or numbers (regress), one per series. Returns self.
        """
        if self._mode() not in ("classify", "regress"):
            raise _panel_error(f"mode must be 'classify' or 'regress', not {self._mode()!r}")
        X, y = self._targets(X, y, "y")
        Xa, La, _ = self._panel(X, fitted=False)
        if len(y) != len(Xa):
            raise _panel_error(f"`X` has {len(Xa)} series but `y` has {len(y)} values")
        self.n_channels_ = Xa.shape[2]
        self.n_steps_ = int(La.max())
        if self._mode() == "classify":
            self.classes_, ya = encode_labels(y)
            if len(self.classes_) < 2:
                raise _panel_error(f"`y` has one class only ({self.classes_.tolist()}); need >= 2")
        else:
            ya = np.asarray(y, np.float64)
            if ya.ndim != 1 or not np.isfinite(ya).all():
                raise _panel_error("`y` must be one finite number per series for mode='regress'")
        if X_val is None:
            if y_val is not None:
                raise _panel_error("`y_val` given without `X_val`")
            tr, va = validation_split(
                ya,
                getattr(self, "val_fraction", 0.2),
                getattr(self, "seed", 0),
                stratify=self._mode() == "classify",
            )
            self.train_index_, self.val_index_ = tr, va
            Xt, Lt, yt, Xv, Lv, yv = Xa[tr], La[tr], ya[tr], Xa[va], La[va], ya[va]
            self._split_from = (Xa, La, ya)  # a model may refit on all rows (see TsfreshXGB.refit)
        else:
            X_val, y_val = self._targets(X_val, y_val, "y_val")
            Xv, Lv, _ = self._panel(X_val, "X_val")
            if self._mode() == "classify":
                unknown = sorted(set(np.asarray(y_val).tolist()) - set(self.classes_.tolist()))
                if unknown:
                    raise _panel_error(f"`y_val` has labels not in `y`: {unknown[:5]}")
                yv = np.searchsorted(self.classes_, np.asarray(y_val))
            else:
                yv = np.asarray(y_val, np.float64)
            if len(yv) != len(Xv):
                raise _panel_error(f"`X_val` has {len(Xv)} series but `y_val` has {len(yv)} values")
            # pad both to one length so train and validation share a layout
            T = max(Xa.shape[1], Xv.shape[1])
            Xt, Xv = pad_steps(Xa, T), pad_steps(Xv, T)
            Lt, yt = La, ya
            self.train_index_, self.val_index_ = np.arange(len(Xa)), None
            self._split_from = None
        try:
            self._fit_panel(Xt, Lt, yt, Xv, Lv, yv)
        finally:
            self._split_from = None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_channels_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet. Hint: call fit(X, y) first")

    def decision_function(self, X) -> np.ndarray:
        """Scores: (n,) logit of ``classes_[1]`` (binary), (n, K) per-class scores (multi-class), or the
        predicted value (regress)."""
        self._check_fitted()
        Xa, La, _ = self._panel(X)
        return self._decision(Xa, La)

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) class probabilities, columns in the order of ``classes_``."""
        if self._mode() != "classify":
            raise _panel_error("predict_proba is for mode='classify'")
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1 - p, p], axis=1)
        return _softmax(z)

    def predict(self, X) -> np.ndarray:
        """Labels (from ``classes_``) or values."""
        if self._mode() == "classify":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return self.decision_function(X)

    def predict_score(self, X) -> np.ndarray:
        """P(``classes_[1]``) (binary) or the value (regress): what the store's ``y_pred`` holds."""
        if self._mode() == "classify":
            return self.predict_proba(X)[:, 1]
        return self.predict(X)

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (classify) or R^2 (regress), as scikit-learn's classifiers and regressors."""
        from sklearn.metrics import accuracy_score, r2_score

        X, y = self._targets(X, y, "y")
        pred = self.predict(X)
        if self._mode() == "classify":
            return float(accuracy_score(np.asarray(y), pred, sample_weight=sample_weight))
        return float(r2_score(np.asarray(y, np.float64), pred, sample_weight=sample_weight))


def pad_steps(X: np.ndarray, T: int) -> np.ndarray:
    """X (series, steps, channels) right-padded with zeros to ``T`` steps (unchanged when it has >= T)."""
    if X.shape[1] >= T:
        return X
    return np.concatenate([X, np.zeros((X.shape[0], T - X.shape[1], X.shape[2]), X.dtype)], axis=1)
