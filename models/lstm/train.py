"""The training loop: candidates of one architecture shape trained side by side, and a fitted model.

:class:`_Trainer` trains a batch of candidates that share an architecture *shape* (and batch size)
at once with ``jax.vmap``: everything else is data -- the training and validation rows (one array
padded to a bucketed size, :func:`padded_size`, with weight-0 padding rows; the number of batches is a
loop bound, not a shape), each row's length in steps (series right-padded and masked), the mode (a
flag selecting BCE or MSE; softmax cross-entropy when the net has several outputs), each candidate's
learning rate and dropout rates, the epoch count and the early-stopping patience. Whole epochs run in
one compiled loop (``_EPOCH_CHUNK`` epochs per call). The jitted functions live in a module cache keyed
by the shape, the number of outputs and the batch size; ``TRACES`` counts the traces.

Early stopping: after every epoch the validation loss is computed; the best parameters are kept
(restored at the end) and a candidate whose loss has not improved for ``patience`` epochs stops (its
state is frozen; a call returns early once every candidate of the batch has stopped).

:class:`LSTMModel` is one fitted network: inputs standardised per channel on the training rows only
(stored with the model), class-weighted loss for classification.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lnpstore.models.lstm.net import LSTMConfig, lstm_net

from lnpstore.runtime.settings import Field, Settings, settings

Mode = Literal["classify", "regress"]


@settings
class TrainConfig(Settings):
    """Adam with learning rate ``lr``, up to ``epochs`` passes of mini-batches of ``batch_size`` series,
    stopped after ``patience`` epochs without a better validation loss (the best epoch is kept)."""

    lr: float = Field(1e-3, gt=0, description="Adam step size")
    epochs: int = Field(200, ge=0, description="maximum number of epochs")
    batch_size: int = Field(32, ge=1, description="series per mini-batch")
    patience: int = Field(
        20, ge=0, description="epochs without a better validation loss before stopping (0: never stop early)"
    )


# ------------------------------------------------------------------------------------------ data
def class_weights(y: np.ndarray, mode: Mode, n_classes: int = 2) -> np.ndarray:
    """Per-series loss weights: 'balanced' class weights n / (K n_c) for classify (K = ``n_classes``,
    at least 2; ``y`` holds class indices 0..K-1), ones for regress."""
    y = np.asarray(y, dtype=np.float64)
    if mode != "classify":
        return np.ones_like(y, dtype=np.float32)
    return _class_weight_table(y, n_classes)[_class_index(y)].astype(np.float32)


def _class_index(y: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(y, np.float64)).astype(np.int64)


def _class_weight_table(y: np.ndarray, n_classes: int) -> np.ndarray:
    k = max(2, int(n_classes))
    counts = np.bincount(_class_index(y), minlength=k)[:k].astype(np.float64)
    return np.where(counts > 0, len(y) / (k * np.maximum(counts, 1.0)), 0.0)


def padded_size(n: int, batch_size: int, *, min_rows: int = 256) -> int:
    """Rows a set of ``n`` series is padded to: a power-of-2 number of whole batches, at least
    ``min_rows`` rows, so that folds of different sizes share one compiled program.

    Padding costs memory only: training and validation loop over the real rows' batches (a loop
    bound, not a shape), and padding rows weigh 0.
    """
    nb = max(1, math.ceil(max(n, min_rows) / batch_size))
    return (1 << (nb - 1).bit_length()) * batch_size


def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(a)
    return np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)]) if n > len(a) else a


def _pad_frames(X: np.ndarray, t_pad: int | None) -> np.ndarray:
    if t_pad is None or t_pad <= X.shape[1]:
        return X
    return np.concatenate([X, np.zeros((X.shape[0], t_pad - X.shape[1], X.shape[2]), X.dtype)], axis=1)


def _lengths(X: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Each row's length in steps (all ``X.shape[1]`` when not given)."""
    if lengths is None:
        return np.full(len(X), X.shape[1], np.int32)
    lengths = np.asarray(lengths, np.int32)
    if lengths.shape != (len(X),) or (lengths < 1).any() or (lengths > X.shape[1]).any():
        raise ValueError(f"`lengths` must be {len(X)} values in 1..{X.shape[1]} (steps), got {lengths!r}")
    return lengths


@dataclass
class _Data:
    """Device arrays of one fit, every shape fixed by buckets (not by the number of series).

    ``arrays``: X (N, T, C) holds the training rows 0..n-1, then the validation rows n..n+nv-1, then
    zero padding (steps >= a row's length are zero padding too); L (N,) the rows' lengths; Y the
    targets (class indices for classify); W the training weights (0 on validation and padding rows),
    Wv the validation weights (0 elsewhere); n, nv, cls (1.0 classify).
    """

    arrays: dict
    n: int
    batch_size: int

    @property
    def n_batches(self) -> int:
        return max(1, math.ceil(self.n / self.batch_size))


def _prepare(
    X,
    y,
    Xv,
    yv,
    mode: Mode,
    batch_size: int,
    w_train: np.ndarray | None = None,
    *,
    t_pad: int | None = None,
    lengths: np.ndarray | None = None,
    lengths_val: np.ndarray | None = None,
    n_classes: int = 2,
) -> _Data:
    import jax.numpy as jnp

    n = len(X)
    bs = max(1, batch_size)
    w = class_weights(y, mode, n_classes) if w_train is None else w_train
    if mode == "classify":  # validation uses the training set's class weights
        wv = _class_weight_table(np.asarray(y), n_classes)[_class_index(yv)].astype(np.float32)
    else:
        wv = np.ones(len(yv), np.float32)
    nv = len(Xv)
    N = padded_size(n + math.ceil(nv / bs) * bs, bs)  # room for whole validation batches after row n
    zn, zv = np.zeros(n, np.float32), np.zeros(nv, np.float32)
    L = np.concatenate([_lengths(X, lengths), _lengths(Xv, lengths_val)])
    arrays = {
        "X": _pad_rows(
            _pad_frames(np.concatenate([np.asarray(X, np.float32), np.asarray(Xv, np.float32)]), t_pad), N
        ),
        "L": _pad_rows(L, N),
        "Y": _pad_rows(np.concatenate([np.asarray(y, np.float32), np.asarray(yv, np.float32)]), N),
        "W": _pad_rows(np.concatenate([np.asarray(w, np.float32), zv]), N),
        "Wv": _pad_rows(np.concatenate([zn, wv]), N),
        "n": np.int32(n),
        "nv": np.int32(nv),
        "cls": np.float32(mode == "classify"),
    }
    return _Data({k: jnp.asarray(v) for k, v in arrays.items()}, n, bs)


# ------------------------------------------------------------------------------------------ compiled
# How often each compiled function was traced (a trace precedes each compile): for tests/benchmarks.
TRACES: dict[str, int] = {}
_EPOCH_CHUNK = 10  # epochs per call of the fused program (any epoch count reuses it)
_FNS: dict[tuple, _Fns] = {}
_APPLY: dict[tuple, Any] = {}


def _traced(name: str) -> None:
    TRACES[name] = TRACES.get(name, 0) + 1


def clear_compiled() -> None:
    """Forget the module's compiled functions (and JAX's in-memory caches): the next fits recompile."""
    import jax

    _FNS.clear()
    _APPLY.clear()
    jax.clear_caches()


class _Fns:
    """The jitted functions of one architecture shape, output count and batch size, vmapped over
    candidates. Nothing about the data, the mode, the learning rate, the epoch count, the patience or
    the lengths is baked in: they are arguments, so one instance (cached in ``_FNS``) serves every fold,
    mode, checkpoint and search of a process; jax recompiles only for new array shapes.
    """

    def __init__(self, shape_cfg: LSTMConfig, batch_size: int, n_out: int = 1):
        import jax
        import jax.numpy as jnp
        import optax

        net = lstm_net(shape_cfg, n_out)
        bs = batch_size
        self.tx = tx = optax.scale_by_adam()  # Adam; the (per-candidate) learning rate is applied below

        def per_case(out, yb, cls):  # the mode is data (cls), not a constant: one program for both
            if n_out > 1:
                return optax.softmax_cross_entropy_with_integer_labels(out, yb.astype(jnp.int32))
            return jnp.where(cls > 0.5, optax.sigmoid_binary_cross_entropy(out, yb), (out - yb) ** 2)

        def loss(params, rates, xb, yb, wb, lb, key, train, cls):
            out = net.apply({"params": params}, xb, rates, train=train, lengths=lb, rngs={"dropout": key})
            return jnp.sum(wb * per_case(out, yb, cls)) / jnp.maximum(jnp.sum(wb), 1e-8)

        def init(key, rates, lr, d):
            _traced("init")
            k_init, k_run = jax.random.split(key)
            params = net.init({"params": k_init}, d["X"][:2], rates)["params"]
            return {
                "params": params,
                "opt": tx.init(params),
                "best_params": params,
                "best_loss": jnp.asarray(jnp.inf, jnp.float32),
                "best_epoch": jnp.asarray(0, jnp.int32),
                "epoch": jnp.asarray(0, jnp.int32),
                "since": jnp.asarray(0, jnp.int32),
                "stopped": jnp.asarray(False),
                "key": k_run,
                "rates": rates,
                "lr": jnp.asarray(lr, jnp.float32),
            }

        def n_batches(d):
            return (d["n"] + bs - 1) // bs

        def step(params, opt, rates, lr, key, b, perm, d):
            idx = jax.lax.dynamic_slice(perm, (b * bs,), (bs,))
            g = jax.grad(loss)(
                params, rates, d["X"][idx], d["Y"][idx], d["W"][idx], d["L"][idx], key, True, d["cls"]
            )
            upd, opt = tx.update(g, opt, params)
            upd = jax.tree_util.tree_map(lambda u: -lr * u, upd)
            return optax.apply_updates(params, upd), opt

        def val(params, rates, d):
            # validation rows n..n+nv-1, in batches of bs (padding rows weigh 0)
            n_t, n_c = d["X"].shape[1:]

            def body(b, acc):
                start = d["n"] + b * bs
                xb = jax.lax.dynamic_slice(d["X"], (start, 0, 0), (bs, n_t, n_c))
                yb = jax.lax.dynamic_slice(d["Y"], (start,), (bs,))
                wb = jax.lax.dynamic_slice(d["Wv"], (start,), (bs,))
                lb = jax.lax.dynamic_slice(d["L"], (start,), (bs,))
                out = net.apply({"params": params}, xb, rates, train=False, lengths=lb)
                return acc + jnp.stack([jnp.sum(wb * per_case(out, yb, d["cls"])), jnp.sum(wb)])

            tot = jax.lax.fori_loop(0, (d["nv"] + bs - 1) // bs, body, jnp.zeros(2, jnp.float32))
            return tot[0] / jnp.maximum(tot[1], 1e-8)

        def epoch_keys(key, d):
            # a random order of the real rows first, padding rows last: batches 0..n_batches-1
            key, k_perm, k_drop = jax.random.split(key, 3)
            rows = d["X"].shape[0]
            u = jnp.where(jnp.arange(rows) < d["n"], jax.random.uniform(k_perm, (rows,)), 2.0)
            return key, jnp.argsort(u), k_drop

        def end_epoch(s, params, opt, key, d, patience):
            """Validate; keep the best params; a stopped candidate keeps its whole state (frozen)."""
            live = jnp.logical_not(s["stopped"])
            vl = val(params, s["rates"], d)
            better = live & (vl < s["best_loss"])
            keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), new, old)  # noqa: E731
            epoch = s["epoch"] + live.astype(jnp.int32)
            since = jnp.where(better, 0, s["since"] + live.astype(jnp.int32))
            s = {
                **s,
                "params": keep(params, s["params"]),
                "opt": keep(opt, s["opt"]),
                "key": jnp.where(live, key, s["key"]),
                "epoch": epoch,
                "best_params": jax.tree_util.tree_map(
                    lambda a, b: jnp.where(better, a, b), params, s["best_params"]
                ),
                "best_loss": jnp.where(better, vl, s["best_loss"]),
                "best_epoch": jnp.where(better, epoch, s["best_epoch"]),
                "since": since,
                "stopped": s["stopped"] | ((patience > 0) & (since >= patience)),
            }
            return s, jnp.where(live, vl, jnp.nan)

        def one_epoch(s, d, patience):
            key, perm, k_drop = epoch_keys(s["key"], d)

            def body(b, carry):
                params, opt = carry
                return step(params, opt, s["rates"], s["lr"], jax.random.fold_in(k_drop, b), b, perm, d)

            params, opt = jax.lax.fori_loop(0, n_batches(d), body, (s["params"], s["opt"]))
            return end_epoch(s, params, opt, key, d, patience)

        def reset(s, d):  # warm start (retraining): fresh Adam, the current params are epoch 0's best
            return {
                **s,
                "opt": tx.init(s["params"]),
                "best_params": s["params"],
                "best_loss": val(s["params"], s["rates"], d),
                "best_epoch": jnp.zeros_like(s["best_epoch"]),
                "epoch": jnp.zeros_like(s["epoch"]),
                "since": jnp.zeros_like(s["since"]),
                "stopped": jnp.zeros_like(s["stopped"]),
            }

        def run(s, d, n_epochs, restart, patience):
            _traced("run")
            s = jax.lax.cond(restart, lambda s: reset(s, d), lambda s: s, s)

            def body(e, carry):
                s, vls = carry
                s, vl = one_epoch(s, d, patience)
                return s, vls.at[e].set(vl)

            return jax.lax.fori_loop(0, n_epochs, body, (s, jnp.full((_EPOCH_CHUNK,), jnp.nan, jnp.float32)))

        def reset_traced(s, d):
            _traced("val")
            return reset(s, d)

        def step_traced(*a):
            _traced("step")
            return step(*a)

        def end_traced(*a):
            _traced("end")
            return end_epoch(*a)

        self.init = jax.jit(jax.vmap(init, in_axes=(0, 0, 0, None)))
        self.reset = jax.jit(jax.vmap(reset_traced, in_axes=(0, None)))
        self.run = jax.jit(jax.vmap(run, in_axes=(0, None, None, None, None)))
        # unfused path: one jitted call per mini-batch (the plain-loop baseline)
        self.epoch_keys = jax.jit(jax.vmap(epoch_keys, in_axes=(0, None)))
        self.step = jax.jit(jax.vmap(step_traced, in_axes=(0, 0, 0, 0, 0, None, 0, None)))
        self.end = jax.jit(jax.vmap(end_traced, in_axes=(0, 0, 0, 0, None, None)))


def _fns(shape_cfg: LSTMConfig, batch_size: int, n_out: int = 1, *, cached: bool = True) -> _Fns:
    if not cached:
        return _Fns(shape_cfg, batch_size, n_out)
    key = (shape_cfg.shape, n_out, batch_size)
    if key not in _FNS:
        _FNS[key] = _Fns(shape_cfg, batch_size, n_out)
    return _FNS[key]


class _Trainer:
    """Trains ``width`` candidates of one architecture shape at once (vmap), on one :class:`_Data`.

    State per candidate: params, Adam state, best params, best loss, best epoch, epoch, epochs since
    the best, stopped flag, rng key, dropout rates, learning rate.
    """

    def __init__(
        self,
        shape_cfg: LSTMConfig,
        mode: Mode,
        data: _Data,
        *,
        n_out: int = 1,
        patience: int = 0,
        fused: bool = True,
        cached: bool = True,
    ):
        self.fns = _fns(shape_cfg, data.batch_size, n_out, cached=cached)
        self.mode = mode
        self.data = data
        self.patience = np.int32(patience)
        self.fused = fused

    def init(self, keys, rates, lrs):
        """Stacked state of candidates with PRNG ``keys`` (width, 2), ``rates`` (width, 2), ``lrs`` (width,)."""
        return self.fns.init(keys, rates, np.asarray(lrs, np.float32), self.data.arrays)

    def train(self, state, n_epochs: int, *, restart: bool = False):
        """Up to ``n_epochs`` more epochs; returns (state, val losses (epochs run, width), NaN once a
        candidate has stopped). Returns early when every candidate has stopped (patience).

        ``restart``: first reset the Adam state and make the current params the best (epoch 0, with
        their validation loss), for retraining from the search's weights.
        """
        import jax
        import jax.numpy as jnp

        d = self.data.arrays
        vls = []
        width = len(np.asarray(state["epoch"]))
        if self.fused:
            done = 0
            while done < n_epochs or (restart and done == 0):
                k = min(_EPOCH_CHUNK, n_epochs - done)
                state, v = self.fns.run(state, d, np.int32(k), np.bool_(restart and done == 0), self.patience)
                vls.append(jnp.swapaxes(v, 0, 1)[:k])
                done += max(k, 1)
                if self.patience > 0 and done < n_epochs and bool(np.all(jax.device_get(state["stopped"]))):
                    break
            return state, (jnp.concatenate(vls) if vls else jnp.zeros((0, width)))
        f = self.fns
        if restart:
            state = f.reset(state, d)
        for _ in range(n_epochs):
            key, perm, k_drop = f.epoch_keys(state["key"], d)
            params, opt = state["params"], state["opt"]
            for b in range(self.data.n_batches):
                dk = _fold_in_each(k_drop, b)
                params, opt = f.step(params, opt, state["rates"], state["lr"], dk, np.int32(b), perm, d)
            state, vl = f.end(state, params, opt, key, d, self.patience)
            vls.append(vl)
            if self.patience > 0 and bool(np.all(jax.device_get(state["stopped"]))):
                break
        return state, jnp.stack(vls) if vls else jnp.zeros((0, width))


def _fold_in_each(keys, b: int):
    import jax

    return jax.vmap(lambda k: jax.random.fold_in(k, b))(keys)


def _apply_fn(arch: LSTMConfig, n_out: int = 1):
    """The jitted forward pass of an architecture shape (cached: one compile per shape and size)."""
    import jax
    import jax.numpy as jnp

    key = (arch.shape, n_out)
    if key not in _APPLY:
        net = lstm_net(arch, n_out)

        def apply(p, x, lengths):
            _traced("apply")
            return net.apply({"params": p}, x, jnp.zeros(2), train=False, lengths=lengths)

        _APPLY[key] = jax.jit(apply)
    return _APPLY[key]


# ------------------------------------------------------------------------------------------ model
def standardizer(X: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (C,) over the real steps of ``X`` (N, T, C) only
    (steps >= a row's length are padding); a constant channel gets std 1."""
    X = np.asarray(X, np.float64)
    L = _lengths(X, lengths)
    real = np.arange(X.shape[1])[None, :] < L[:, None]
    vals = X[real]  # (real steps, C)
    mean = vals.mean(0)
    std = vals.std(0)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def _check_panel(X: np.ndarray, y: np.ndarray, name: str) -> None:
    if np.ndim(X) != 3:
        raise ValueError(f"`{name}` must be (series, steps, channels), got shape {np.shape(X)}")
    if len(X) != len(y):
        raise ValueError(f"`{name}` has {len(X)} series but its target has {len(y)} values")
    if len(X) == 0:
        raise ValueError(f"`{name}` has no series")


class LSTMModel:
    """One LSTM classifier (``mode='classify'``, class-weighted BCE, or softmax cross-entropy when
    ``n_classes`` > 2) or regressor (MSE) on panels: the low-level model the search and the panel
    estimators (:mod:`lnpstore.models.lstm.estimator`) return.

    ``fit(X, y, X_val, y_val)`` trains ``arch`` for up to ``train.epochs`` epochs (early stopping with
    ``train.patience``) and keeps the epoch with the lowest validation loss. Inputs are standardised
    per channel with the training rows' mean and standard deviation (``mean_``, ``std_``, saved with
    the model). X: (series, steps, channels) float array; ``y``: 0/1 (binary), class index 0..K-1, or
    the value (regress).
    """

    # set by the search (lnpstore.models.lstm.search) on the model it returns
    search_val_loss_: float
    search_best_epoch_: int

    def __init__(
        self,
        mode: Mode = "classify",
        *,
        arch: LSTMConfig | None = None,
        train: TrainConfig | None = None,
        seed: int = 0,
        n_classes: int = 2,
    ):
        if mode not in ("classify", "regress"):
            raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")
        self.mode: Mode = mode
        self.arch = arch or LSTMConfig()
        self.train_config = train or TrainConfig()
        self.seed = seed
        self.n_classes = int(n_classes) if mode == "classify" else 1
        self.params: Any = None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.best_epoch_: int = 0
        self.val_loss_: float = float("nan")
        self.history_: list[float] = []
        self.t_pad_: int | None = None

    @property
    def n_out(self) -> int:
        """Network outputs: 1 (binary logit or value) or the number of classes."""
        return self.n_classes if self.mode == "classify" and self.n_classes > 2 else 1

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        lengths: np.ndarray | None = None,
        lengths_val: np.ndarray | None = None,
    ) -> LSTMModel:
        """Train on (X, y), validate on (X_val, y_val) every epoch; ``lengths`` in steps per series."""
        import jax

        _check_panel(X, y, "X")
        _check_panel(X_val, y_val, "X_val")
        self.mean_, self.std_ = standardizer(X, lengths)
        tc = self.train_config
        data = _prepare(
            self._scale(X),
            y,
            self._scale(X_val),
            y_val,
            self.mode,
            tc.batch_size,
            lengths=lengths,
            lengths_val=lengths_val,
            n_classes=self.n_classes,
        )
        tr = _Trainer(self.arch, self.mode, data, n_out=self.n_out, patience=tc.patience)
        keys = np.asarray(jax.random.PRNGKey(self.seed))[None]
        rates = np.array([[self.arch.dropout, self.arch.recurrent_dropout]], np.float32)
        state, vls = tr.train(tr.init(keys, rates, [tc.lr]), tc.epochs)
        self._take(jax.device_get(state), 0)
        self.history_ = [float(v) for v in np.asarray(vls)[:, 0] if np.isfinite(v)]
        return self

    def _take(self, state, i: int) -> None:
        import jax

        self.params = jax.tree_util.tree_map(lambda a: np.asarray(a[i]), state["best_params"])
        self.best_epoch_ = int(state["best_epoch"][i])
        self.val_loss_ = float(state["best_loss"][i])
        self.epochs_trained_ = int(state["epoch"][i])

    def _scale(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.std_ is not None
        return ((np.asarray(X, np.float32) - self.mean_) / self.std_).astype(np.float32)

    def decision_function(
        self, X: np.ndarray, *, lengths: np.ndarray | None = None, batch_size: int = 4096
    ) -> np.ndarray:
        """Raw outputs: (n,) logits (binary) or values (regress), (n, K) logits (K > 2 classes).

        Rows are padded to bucketed sizes and steps to ``t_pad_`` (masked), so predictions at every
        checkpoint and fold reuse one compiled program per architecture shape.
        """
        import jax.numpy as jnp

        if self.params is None:
            raise RuntimeError("this LSTMModel is not fitted yet. Hint: call fit(X, y, X_val, y_val) first")
        apply = _apply_fn(self.arch, self.n_out)
        L = _lengths(np.asarray(X), lengths)
        Xs = _pad_frames(self._scale(X), self.t_pad_)
        out = []
        for i in range(0, len(Xs), batch_size):
            chunk = Xs[i : i + batch_size]
            m = padded_size(len(chunk), 64)
            Xp, Lp = _pad_rows(chunk, m), _pad_rows(L[i : i + batch_size], m)
            out.append(np.asarray(apply(self.params, jnp.asarray(Xp), jnp.asarray(Lp)))[: len(chunk)])
        if not out:
            return np.zeros((0,) if self.n_out == 1 else (0, self.n_out))
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, X: np.ndarray, *, lengths: np.ndarray | None = None) -> np.ndarray:
        """(n, K) class probabilities (classify only; K = 2 for binary)."""
        if self.mode != "classify":
            raise ValueError("predict_proba is for mode='classify'")
        z = self.decision_function(X, lengths=lengths)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1 - p, p], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray, *, lengths: np.ndarray | None = None) -> np.ndarray:
        """Class indices (classify) or values (regress)."""
        if self.mode == "classify":
            return np.argmax(self.predict_proba(X, lengths=lengths), axis=1).astype(np.int64)
        return self.decision_function(X, lengths=lengths)

    def predict_score(self, X: np.ndarray, *, lengths: np.ndarray | None = None) -> np.ndarray:
        """P(label 1) (binary) or the value (regress): what the store's ``y_pred`` holds."""
        if self.mode == "classify":
            return self.predict_proba(X, lengths=lengths)[:, 1]
        return self.predict(X, lengths=lengths)

    # persistence
    def config(self) -> dict:
        return {
            "mode": self.mode,
            "arch": self.arch.to_dict(),
            "train": self.train_config.to_dict(),
            "seed": self.seed,
            "n_classes": self.n_classes,
            "best_epoch": self.best_epoch_,
            "val_loss": self.val_loss_,
        }

    def save(self, path: str | Path) -> None:
        """Weights as flax msgpack at ``path``; config and scaler as JSON at ``path + '.json'``."""
        from flax import serialization

        from lnpstore.store.atomic import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(serialization.to_bytes(self.params), path)
        meta = {**self.config(), "mean": self.mean_.tolist(), "std": self.std_.tolist(), "t_pad": self.t_pad_}  # type: ignore[union-attr]
        atomic_write_bytes(json.dumps(meta).encode(), path.with_name(path.name + ".json"))

    @classmethod
    def load(cls, path: str | Path) -> LSTMModel:
        import jax
        import jax.numpy as jnp
        from flax import serialization

        path = Path(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        m = cls(
            meta["mode"],
            arch=LSTMConfig.from_dict(meta["arch"]),
            train=TrainConfig.from_dict(meta["train"]),
            seed=meta["seed"],
            n_classes=meta.get("n_classes", 2),
        )
        m.mean_ = np.asarray(meta["mean"], np.float32)
        m.std_ = np.asarray(meta["std"], np.float32)
        m.t_pad_ = meta.get("t_pad")
        m.best_epoch_, m.val_loss_ = meta["best_epoch"], meta["val_loss"]
        template = lstm_net(m.arch, m.n_out).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 2, len(m.mean_))), jnp.zeros(2)
        )
        m.params = serialization.from_bytes(template["params"], path.read_bytes())
        return m


__all__ = [
    "LSTMModel",
    "TRACES",
    "TrainConfig",
    "class_weights",
    "clear_compiled",
    "padded_size",
    "standardizer",
]
