"""LSTM on panels (cases x frames x channels), with flax.linen + optax, and a fast random search.

Three pieces: the network (:class:`LSTMNet`), the training loop (:class:`_Trainer`, which trains a
batch of candidates that share an architecture *shape* at once) and the configs (frozen dataclasses
:class:`LSTMConfig`, :class:`TrainConfig`, :class:`SearchConfig`).

Dropout follows Keras' LSTM: ``dropout`` is a mask on the layer inputs and ``recurrent_dropout`` a
mask on the hidden state ``h``, each drawn once per sequence and fixed over time (frames). Both rates
are *inputs* of the network, not constants, so candidates that differ only in rates and seeds share
one compiled program and are trained side by side with ``jax.vmap``.

Speed-ups of :func:`lstm_search` over a plain per-candidate loop (each measured by
``benchmarks/timeseries.py``): compile once per shape (units, layers, bidirectional, dense), ``vmap``
over candidates of a shape (``SearchConfig.vmap_width``), whole epochs fused into one compiled loop
(``fused``), and successive halving (``halving``: after every ``rung_epochs`` epochs, only the best
``1/eta`` of the candidates go on).

Compiles are shared across searches: the jitted functions live in a module cache keyed by the shape
and the batch size, and take everything else as data -- the training and validation rows (one array
padded to a bucketed size, :func:`padded_size`, with weight-0 padding rows; the number of batches is a
loop bound, not a shape), the mode (a flag selecting BCE or MSE), the learning rate, the epoch count,
and the number of real frames (sequences padded to ``t_pad`` frames; the LSTM stops updating after
frame t). So the folds, modes and checkpoints of a stage run reuse one program per (shape, width);
``TRACES`` counts the traces. :mod:`lnpstore.models.jaxcache` keeps compiles across processes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

Mode = Literal["classify", "regress"]

UNITS = (32, 64, 128, 256)
LAYERS = (1, 2)
RATES = (0.1, 0.2, 0.5)


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class LSTMConfig:
    """One architecture: ``units`` per direction, 1-2 ``layers``, optional ``dense`` (units, relu)
    layer before the output, input ``dropout`` and ``recurrent_dropout`` rates in [0, 1)."""

    units: int = 64
    layers: int = 1
    bidirectional: bool = False
    dense: bool = False
    dropout: float = 0.2
    recurrent_dropout: float = 0.2

    @property
    def shape(self) -> tuple[int, int, bool, bool]:
        """What fixes the compiled program (rates do not)."""
        return (self.units, self.layers, self.bidirectional, self.dense)


@dataclass(frozen=True)
class TrainConfig:
    """Adam with learning rate ``lr``, ``epochs`` passes of mini-batches of ``batch_size`` cases."""

    lr: float = 1e-4
    epochs: int = 20
    batch_size: int = 32


@dataclass(frozen=True)
class SearchConfig:
    """Random search: selection training ``select``, retraining of the winner ``final`` (started
    from the winner's best weights, best epoch kept; ``final.epochs = 0`` skips it) and the speed-ups.

    ``pad_frames``: the time-series stage pads every checkpoint's sequences to its longest checkpoint
    (masked), so one compiled program serves all checkpoints (False: one per checkpoint, less work
    per epoch on large data)."""

    select: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4, epochs=20))
    final: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=30))
    vmap_width: int = 8
    fused: bool = True
    halving: bool = True
    rung_epochs: int = 5
    eta: int = 2
    cache_compiles: bool = True
    pad_frames: bool = True
    units: tuple[int, ...] = UNITS  # the units choices sampled (the demo preset narrows them)


# ------------------------------------------------------------------------------------------ network
def _lstm_layer(x, wi, b, wh, h_mask, reverse: bool, t_len=None):
    """Run one LSTM direction over ``x`` (B, T, C) (inputs already masked); returns h (B, T, H).

    ``wi`` (C, 4H), ``b`` (4H,), ``wh`` (H, 4H), ``h_mask`` (B, H) fixed over frames; gates i, f, g, o.
    ``t_len`` (traced int or None): only frames ``< t_len`` update the state, later (padding) frames
    keep it, so the forward output at the last frame is the state after frame ``t_len`` and the
    backward scan starts at frame ``t_len``. One program then serves every checkpoint.
    """
    import jax
    import jax.numpy as jnp

    bsz, n_t = x.shape[0], x.shape[1]
    hdim = wh.shape[0]
    xs = jnp.swapaxes(x, 0, 1)

    def step(carry, inp):
        h, c = carry
        x_t, k = inp
        z = x_t @ wi + b + (h * h_mask) @ wh
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c2 = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h2 = jax.nn.sigmoid(o) * jnp.tanh(c2)
        if t_len is not None:
            live = k < t_len
            h2, c2 = jnp.where(live, h2, h), jnp.where(live, c2, c)
        return (h2, c2), h2

    zeros = jnp.zeros((bsz, hdim), x.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), (xs, jnp.arange(n_t)), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1)


def _make_net_class():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    def _mask(key, rate, shape):
        keep = 1.0 - rate
        return jax.random.bernoulli(key, keep, shape).astype(jnp.float32) / keep

    def _unit_forget_bias(key, shape, dtype=jnp.float32):
        h = shape[0] // 4
        return jnp.zeros(shape, dtype).at[h : 2 * h].set(1.0)

    class LSTMNet(nn.Module):
        """LSTM over (B, T, C) inputs; returns (B,) logits (classify) or values (regress).

        ``rates`` is a (2,) array: input dropout and recurrent dropout, used when ``train``.
        ``t_len`` (optional int, may be traced): frames ``>= t_len`` are padding and ignored.
        """

        units: int
        layers: int = 1
        bidirectional: bool = False
        dense: bool = False

        @nn.compact
        def __call__(self, x, rates, train: bool = False, t_len=None):
            bsz = x.shape[0]
            dirs = ("f", "b") if self.bidirectional else ("f",)
            h = x
            for layer in range(self.layers):
                outs = []
                for d in dirs:
                    cin = h.shape[-1]
                    wi = self.param(
                        f"l{layer}{d}_wi", nn.initializers.glorot_uniform(), (cin, 4 * self.units)
                    )
                    wh = self.param(
                        f"l{layer}{d}_wh", nn.initializers.orthogonal(), (self.units, 4 * self.units)
                    )
                    b = self.param(f"l{layer}{d}_b", _unit_forget_bias, (4 * self.units,))
                    if train:
                        k_in, k_h = jax.random.split(self.make_rng("dropout"))
                        m_in = _mask(k_in, rates[0], (bsz, 1, cin))
                        m_h = _mask(k_h, rates[1], (bsz, self.units))
                    else:
                        m_in = jnp.ones((bsz, 1, cin), x.dtype)
                        m_h = jnp.ones((bsz, self.units), x.dtype)
                    outs.append(_lstm_layer(h * m_in, wi, b, wh, m_h, reverse=(d == "b"), t_len=t_len))
                if layer < self.layers - 1:
                    h = jnp.concatenate(outs, axis=-1)
                else:
                    # forward: state after the last (real) frame; backward: state after the first frame
                    last = [outs[0][:, -1, :]] + ([outs[1][:, 0, :]] if self.bidirectional else [])
                    h = jnp.concatenate(last, axis=-1)
            if self.dense:
                h = nn.relu(nn.Dense(self.units, name="dense")(h))
            return nn.Dense(1, name="out")(h)[:, 0]

    return LSTMNet


_NET_CLASS = None


def lstm_net(cfg: LSTMConfig):
    """The flax.linen module of an architecture."""
    global _NET_CLASS
    if _NET_CLASS is None:
        _NET_CLASS = _make_net_class()
    return _NET_CLASS(units=cfg.units, layers=cfg.layers, bidirectional=cfg.bidirectional, dense=cfg.dense)


# ------------------------------------------------------------------------------------------ training
def class_weights(y: np.ndarray, mode: Mode) -> np.ndarray:
    """Per-case loss weights: 'balanced' class weights n / (2 n_c) for classify, ones for regress."""
    y = np.asarray(y, dtype=np.float64)
    if mode != "classify":
        return np.ones_like(y, dtype=np.float32)
    n1 = float((y > 0.5).sum())
    n0 = float(len(y) - n1)
    w1 = len(y) / (2 * n1) if n1 else 0.0
    w0 = len(y) / (2 * n0) if n0 else 0.0
    return np.where(y > 0.5, w1, w0).astype(np.float32)


def padded_size(n: int, batch_size: int, *, min_rows: int = 256) -> int:
    """Rows a set of ``n`` cases is padded to: a power-of-2 number of whole batches, at least
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


@dataclass
class _Data:
    """Device arrays of one fit, every shape fixed by buckets (not by the number of cases).

    ``arrays``: X (N, T, C) holds the training rows 0..n-1, then the validation rows n..n+nv-1, then
    zero padding (frames >= t are zero padding too); Y the targets; W the training weights (0 on
    validation and padding rows), Wv the validation weights (0 elsewhere); n, nv, t (real frames), cls
    (1.0 classify). One padded size for both sets: fewer bucket boundaries between folds.
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
) -> _Data:
    import jax.numpy as jnp

    n = len(X)
    bs = max(1, batch_size)
    w = class_weights(y, mode) if w_train is None else w_train
    # validation uses the training set's class weights
    n1 = float((np.asarray(y) > 0.5).sum())
    if mode == "classify" and 0 < n1 < n:
        wv = np.where(np.asarray(yv) > 0.5, n / (2 * n1), n / (2 * (n - n1))).astype(np.float32)
    else:
        wv = np.ones(len(yv), np.float32)
    nv = len(Xv)
    N = padded_size(n + math.ceil(nv / bs) * bs, bs)  # room for whole validation batches after row n
    t = X.shape[1]
    zn, zv = np.zeros(n, np.float32), np.zeros(nv, np.float32)
    arrays = {
        "X": _pad_rows(
            _pad_frames(np.concatenate([np.asarray(X, np.float32), np.asarray(Xv, np.float32)]), t_pad), N
        ),
        "Y": _pad_rows(np.concatenate([np.asarray(y, np.float32), np.asarray(yv, np.float32)]), N),
        "W": _pad_rows(np.concatenate([np.asarray(w, np.float32), zv]), N),
        "Wv": _pad_rows(np.concatenate([zn, wv]), N),
        "n": np.int32(n),
        "nv": np.int32(nv),
        "t": np.int32(t),
        "cls": np.float32(mode == "classify"),
    }
    return _Data({k: jnp.asarray(v) for k, v in arrays.items()}, n, bs)


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
    """The jitted functions of one architecture shape and batch size, vmapped over candidates.

    Nothing about the data, the mode, the learning rate, the epoch count or the checkpoint is baked
    in: they are arguments, so one instance (cached in ``_FNS``) serves every fold, mode, checkpoint
    (frames padded to one length) and search of a process; jax recompiles only for new array shapes
    (a new candidate width or padded size).
    """

    def __init__(self, shape_cfg: LSTMConfig, batch_size: int):
        import jax
        import jax.numpy as jnp
        import optax

        net = lstm_net(shape_cfg)
        bs = batch_size
        self.tx = tx = optax.scale_by_adam()  # Adam; the (dynamic) learning rate is applied below

        def per_case(out, yb, cls):  # the mode is data (cls), not a constant: one program for both
            return jnp.where(cls > 0.5, optax.sigmoid_binary_cross_entropy(out, yb), (out - yb) ** 2)

        def loss(params, rates, xb, yb, wb, key, train, t, cls):
            out = net.apply({"params": params}, xb, rates, train=train, t_len=t, rngs={"dropout": key})
            return jnp.sum(wb * per_case(out, yb, cls)) / jnp.maximum(jnp.sum(wb), 1e-8)

        def init(key, rates, d):
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
                "key": k_run,
                "rates": rates,
            }

        def n_batches(d):
            return (d["n"] + bs - 1) // bs

        def step(params, opt, rates, lr, key, b, perm, d):
            idx = jax.lax.dynamic_slice(perm, (b * bs,), (bs,))
            g = jax.grad(loss)(
                params, rates, d["X"][idx], d["Y"][idx], d["W"][idx], key, True, d["t"], d["cls"]
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
                out = net.apply({"params": params}, xb, rates, train=False, t_len=d["t"])
                return acc + jnp.stack([jnp.sum(wb * per_case(out, yb, d["cls"])), jnp.sum(wb)])

            tot = jax.lax.fori_loop(0, (d["nv"] + bs - 1) // bs, body, jnp.zeros(2, jnp.float32))
            return tot[0] / jnp.maximum(tot[1], 1e-8)

        def epoch_keys(key, d):
            # a random order of the real rows first, padding rows last: batches 0..n_batches-1
            key, k_perm, k_drop = jax.random.split(key, 3)
            rows = d["X"].shape[0]
            u = jnp.where(jnp.arange(rows) < d["n"], jax.random.uniform(k_perm, (rows,)), 2.0)
            return key, jnp.argsort(u), k_drop

        def end_epoch(s, params, opt, key, d):
            vl = val(params, s["rates"], d)
            epoch = s["epoch"] + 1
            better = vl < s["best_loss"]
            best_params = jax.tree_util.tree_map(
                lambda a, b: jnp.where(better, a, b), params, s["best_params"]
            )
            s = {
                **s,
                "params": params,
                "opt": opt,
                "key": key,
                "epoch": epoch,
                "best_params": best_params,
                "best_loss": jnp.where(better, vl, s["best_loss"]),
                "best_epoch": jnp.where(better, epoch, s["best_epoch"]),
            }
            return s, vl

        def one_epoch(s, d, lr):
            key, perm, k_drop = epoch_keys(s["key"], d)

            def body(b, carry):
                params, opt = carry
                return step(params, opt, s["rates"], lr, jax.random.fold_in(k_drop, b), b, perm, d)

            params, opt = jax.lax.fori_loop(0, n_batches(d), body, (s["params"], s["opt"]))
            return end_epoch(s, params, opt, key, d)

        def run(s, d, lr, n_epochs, restart):
            _traced("run")

            def reset(s):  # warm start (retraining): fresh Adam, the current params are epoch 0's best
                return {
                    **s,
                    "opt": tx.init(s["params"]),
                    "best_params": s["params"],
                    "best_loss": val(s["params"], s["rates"], d),
                    "best_epoch": jnp.zeros_like(s["best_epoch"]),
                    "epoch": jnp.zeros_like(s["epoch"]),
                }

            s = jax.lax.cond(restart, reset, lambda s: s, s)

            def body(e, carry):
                s, vls = carry
                s, vl = one_epoch(s, d, lr)
                return s, vls.at[e].set(vl)

            return jax.lax.fori_loop(0, n_epochs, body, (s, jnp.full((_EPOCH_CHUNK,), jnp.nan, jnp.float32)))

        def val_only(s, d):
            _traced("val")
            return val(s["params"], s["rates"], d)

        def step_traced(*a):
            _traced("step")
            return step(*a)

        def end_traced(*a):
            _traced("end")
            return end_epoch(*a)

        self.init = jax.jit(jax.vmap(init, in_axes=(0, 0, None)))
        self.val_only = jax.jit(jax.vmap(val_only, in_axes=(0, None)))
        self.run = jax.jit(jax.vmap(run, in_axes=(0, None, None, None, None)))
        # unfused path: one jitted call per mini-batch (the plain-loop baseline)
        self.epoch_keys = jax.jit(jax.vmap(epoch_keys, in_axes=(0, None)))
        self.step = jax.jit(jax.vmap(step_traced, in_axes=(0, 0, 0, None, 0, None, 0, None)))
        self.end = jax.jit(jax.vmap(end_traced, in_axes=(0, 0, 0, 0, None)))


def _fns(shape_cfg: LSTMConfig, batch_size: int, *, cached: bool = True) -> _Fns:
    if not cached:
        return _Fns(shape_cfg, batch_size)
    key = (shape_cfg.shape, batch_size)
    if key not in _FNS:
        _FNS[key] = _Fns(shape_cfg, batch_size)
    return _FNS[key]


class _Trainer:
    """Trains ``width`` candidates of one architecture shape at once (vmap), on one :class:`_Data`.

    State per candidate: params, Adam state, best params, best loss, best epoch, epoch, rng key, rates.
    The compiled functions come from the module cache (``cached``) or are built afresh.
    """

    def __init__(
        self,
        shape_cfg: LSTMConfig,
        mode: Mode,
        lr: float,
        data: _Data,
        *,
        fused: bool = True,
        cached: bool = True,
    ):
        self.fns = _fns(shape_cfg, data.batch_size, cached=cached)
        self.mode = mode
        self.lr = np.float32(lr)
        self.data = data
        self.fused = fused

    def init(self, keys, rates):
        """Stacked state of candidates with PRNG ``keys`` (width, 2) and ``rates`` (width, 2)."""
        return self.fns.init(keys, rates, self.data.arrays)

    def fresh_optimizer(self, params):
        import jax

        return jax.vmap(self.fns.tx.init)(params)

    def initial_val(self, state):
        """Validation loss of the current params (width,), e.g. before a warm-started retraining."""
        return self.fns.val_only(state, self.data.arrays)

    def train(self, state, n_epochs: int, *, restart: bool = False):
        """``n_epochs`` more epochs; returns (state, val losses (n_epochs, width)).

        ``restart``: first reset the Adam state and make the current params the best (epoch 0, with
        their validation loss), for retraining from the search's weights.
        """
        import jax.numpy as jnp

        d = self.data.arrays
        vls = []
        if self.fused:
            done = 0
            while done < n_epochs or (restart and done == 0):
                k = min(_EPOCH_CHUNK, n_epochs - done)
                state, v = self.fns.run(state, d, self.lr, np.int32(k), np.bool_(restart and done == 0))
                vls.append(jnp.swapaxes(v, 0, 1)[:k])
                done += max(k, 1)
            return state, (jnp.concatenate(vls) if vls else jnp.zeros((0, len(state["epoch"]))))
        if restart:
            state = {
                **state,
                "opt": self.fresh_optimizer(state["params"]),
                "best_params": state["params"],
                "best_loss": self.initial_val(state),
                "best_epoch": np.zeros_like(state["best_epoch"]),
                "epoch": np.zeros_like(state["epoch"]),
            }
        f = self.fns
        for _ in range(n_epochs):
            key, perm, k_drop = f.epoch_keys(state["key"], d)
            params, opt = state["params"], state["opt"]
            for b in range(self.data.n_batches):
                dk = _fold_in_each(k_drop, b)
                params, opt = f.step(params, opt, state["rates"], self.lr, dk, np.int32(b), perm, d)
            state, vl = f.end(state, params, opt, key, d)
            vls.append(vl)
        return state, jnp.stack(vls) if vls else jnp.zeros((0, len(state["epoch"])))


def _fold_in_each(keys, b: int):
    import jax

    return jax.vmap(lambda k: jax.random.fold_in(k, b))(keys)


# ------------------------------------------------------------------------------------------ model
def _standardizer(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.reshape(-1, X.shape[-1]).mean(0)
    std = X.reshape(-1, X.shape[-1]).std(0)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


class LSTMModel:
    """An LSTM classifier (``mode='classify'``, class-weighted BCE) or regressor (MSE) on panels.

    ``fit(X, y, X_val, y_val)`` trains ``arch`` for ``train.epochs`` epochs and keeps the epoch with
    the lowest validation loss. Inputs are standardised per channel with the training set's mean and
    standard deviation. X: (cases, frames, channels) float array.
    """

    def __init__(
        self,
        mode: Mode = "classify",
        *,
        arch: LSTMConfig | None = None,
        train: TrainConfig | None = None,
        seed: int = 0,
    ):
        if mode not in ("classify", "regress"):
            raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")
        self.mode: Mode = mode
        self.arch = arch or LSTMConfig()
        self.train_config = train or TrainConfig()
        self.seed = seed
        self.params: Any = None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.best_epoch_: int = 0
        self.val_loss_: float = float("nan")
        self.history_: list[float] = []

    # sklearn-style
    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> LSTMModel:
        import jax

        _check_panel(X, y, "X")
        _check_panel(X_val, y_val, "X_val")
        self.mean_, self.std_ = _standardizer(np.asarray(X, np.float32))
        data = _prepare(self._scale(X), y, self._scale(X_val), y_val, self.mode, self.train_config.batch_size)
        tr = _Trainer(self.arch, self.mode, self.train_config.lr, data)
        keys = np.asarray(jax.random.PRNGKey(self.seed))[None]
        rates = np.array([[self.arch.dropout, self.arch.recurrent_dropout]], np.float32)
        state, vls = tr.train(tr.init(keys, rates), self.train_config.epochs)
        self._take(jax.device_get(state), 0)
        self.history_ = [float(v) for v in np.asarray(vls)[:, 0]]
        return self

    def _take(self, state, i: int) -> None:
        import jax

        self.params = jax.tree_util.tree_map(lambda a: np.asarray(a[i]), state["best_params"])
        self.best_epoch_ = int(state["best_epoch"][i])
        self.val_loss_ = float(state["best_loss"][i])

    def _scale(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.std_ is not None
        return ((np.asarray(X, np.float32) - self.mean_) / self.std_).astype(np.float32)

    def decision_function(self, X: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        """Raw outputs (n,): logits (classify) or values (regress).

        Rows are padded to bucketed sizes and frames to ``t_pad_`` (masked), so predictions at every
        checkpoint and fold reuse one compiled program per architecture shape.
        """
        import jax.numpy as jnp

        if self.params is None:
            raise RuntimeError("this LSTMModel is not fitted yet. Hint: call fit(X, y, X_val, y_val) first")
        apply = _apply_fn(self.arch)
        Xs = self._scale(X)
        t = np.int32(Xs.shape[1])
        Xs = _pad_frames(Xs, getattr(self, "t_pad_", None))
        out = []
        for i in range(0, len(Xs), batch_size):
            chunk = Xs[i : i + batch_size]
            Xp = _pad_rows(chunk, padded_size(len(chunk), 64))
            out.append(np.asarray(apply(self.params, jnp.asarray(Xp), t))[: len(chunk)])
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 2) class probabilities (classify only)."""
        if self.mode != "classify":
            raise ValueError("predict_proba is for mode='classify'")
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels 0/1 (classify) or values (regress)."""
        if self.mode == "classify":
            return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)
        return self.decision_function(X)

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        """P(label 1) (classify) or the value (regress): what the store's ``y_pred`` holds."""
        return self.predict_proba(X)[:, 1] if self.mode == "classify" else self.predict(X)

    # persistence
    def config(self) -> dict:
        return {
            "mode": self.mode,
            "arch": asdict(self.arch),
            "train": asdict(self.train_config),
            "seed": self.seed,
            "best_epoch": self.best_epoch_,
            "val_loss": self.val_loss_,
        }

    def save(self, path: str | Path) -> None:
        """Weights as flax msgpack at ``path``; config and scaler as JSON at ``path + '.json'``."""
        from flax import serialization

        from lnpstore.store.atomic import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(serialization.to_bytes(self.params), path)
        meta = {**self.config(), "mean": self.mean_.tolist(), "std": self.std_.tolist()}  # type: ignore[union-attr]
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
            arch=LSTMConfig(**meta["arch"]),
            train=TrainConfig(**meta["train"]),
            seed=meta["seed"],
        )
        m.mean_ = np.asarray(meta["mean"], np.float32)
        m.std_ = np.asarray(meta["std"], np.float32)
        m.best_epoch_, m.val_loss_ = meta["best_epoch"], meta["val_loss"]
        template = lstm_net(m.arch).init(jax.random.PRNGKey(0), jnp.zeros((1, 2, len(m.mean_))), jnp.zeros(2))
        m.params = serialization.from_bytes(template["params"], path.read_bytes())
        return m


def _apply_fn(arch: LSTMConfig):
    """The jitted forward pass of an architecture shape (cached: one compile per shape and size)."""
    import jax
    import jax.numpy as jnp

    key = arch.shape
    if key not in _APPLY:
        net = lstm_net(arch)

        def apply(p, x, t):
            _traced("apply")
            return net.apply({"params": p}, x, jnp.zeros(2), train=False, t_len=t)

        _APPLY[key] = jax.jit(apply)
    return _APPLY[key]


class LSTMClassifier(LSTMModel):
    """:class:`LSTMModel` with ``mode='classify'``."""

    def __init__(self, **kw: Any):
        super().__init__("classify", **kw)


class LSTMRegressor(LSTMModel):
    """:class:`LSTMModel` with ``mode='regress'``."""

    def __init__(self, **kw: Any):
        super().__init__("regress", **kw)


def _check_panel(X: np.ndarray, y: np.ndarray, name: str) -> None:
    if np.ndim(X) != 3:
        raise ValueError(f"`{name}` must be (cases, frames, channels), got shape {np.shape(X)}")
    if len(X) != len(y):
        raise ValueError(f"`{name}` has {len(X)} cases but its target has {len(y)} values")
    if len(X) == 0:
        raise ValueError(f"`{name}` has no cases")


# ------------------------------------------------------------------------------------------ search
def sample_configs(n_samples: int, seed: int, units: tuple[int, ...] = UNITS) -> list[LSTMConfig]:
    """``n_samples`` architectures drawn uniformly from the search space (numpy Generator(seed));
    ``units`` narrows the units choices (the study's are 32/64/128/256)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_samples):
        out.append(
            LSTMConfig(
                units=int(rng.choice(units)),
                layers=int(rng.choice(LAYERS)),
                bidirectional=bool(rng.integers(2)),
                dense=bool(rng.integers(2)),
                dropout=float(rng.choice(RATES)),
                recurrent_dropout=float(rng.choice(RATES)),
            )
        )
    return out


def lstm_search(
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    mode: Mode,
    n_samples: int = 200,
    seed: int = 0,
    search: SearchConfig | None = None,
    configs: list[LSTMConfig] | None = None,
    progress: Callable[[int], None] | None = None,
    t_pad: int | None = None,
) -> tuple[LSTMModel, pl.DataFrame]:
    """Random search over architectures; returns the retrained best model and one row per trial.

    Candidates are ranked by their best validation loss within ``search.select.epochs`` epochs (lr
    ``search.select.lr``); with ``search.halving`` only the best ``1/eta`` go on after each rung of
    ``rung_epochs`` epochs (``stopped_early`` in the trials). The winner is then trained on with
    ``search.final`` (lr 1e-5, 30 epochs) starting from its best weights; the best epoch is kept
    (epoch 0 = the search weights). ``progress(n)`` is called with the epochs done per call.

    Compiled programs depend only on the architecture shape, the batch size, the candidate width (a
    power of 2 up to ``vmap_width``) and bucketed sizes (:func:`padded_size`); ``t_pad`` pads the
    frames to that length (masked), so checkpoints t <= t_pad share them too. They are cached in the
    module and reused by later searches (other folds, modes, checkpoints) of the process.
    """
    import jax

    sc = search or SearchConfig()
    _check_panel(X, y, "X")
    _check_panel(X_val, y_val, "X_val")
    cfgs = configs if configs is not None else sample_configs(n_samples, seed, units=sc.units)
    n = len(cfgs)
    mean, std = _standardizer(np.asarray(X, np.float32))
    Xs = ((np.asarray(X, np.float32) - mean) / std).astype(np.float32)
    Xvs = ((np.asarray(X_val, np.float32) - mean) / std).astype(np.float32)
    data = _prepare(Xs, y, Xvs, y_val, mode, sc.select.batch_size, t_pad=t_pad)
    base = jax.random.PRNGKey(seed)
    keys = np.stack([np.asarray(jax.random.fold_in(base, i)) for i in range(n)])
    rates = np.array([[c.dropout, c.recurrent_dropout] for c in cfgs], np.float32)

    total = sc.select.epochs
    rung = sc.rung_epochs if sc.halving else total
    rungs = list(range(rung, total, rung)) + [total]
    width = max(1, sc.vmap_width)

    best_loss = np.full(n, np.inf)
    best_epoch = np.zeros(n, np.int64)
    trained = np.zeros(n, np.int64)
    alive = np.ones(n, bool)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(c.shape if sc.cache_compiles else ("cand", i), []).append(i)
    trainers: dict[tuple, _Trainer] = {}

    def width_of(c: LSTMConfig, n_todo: int) -> int:
        # XLA's CPU runtime (jaxlib 0.10.2) deadlocks on vmapped 2-layer LSTMs whose second layer reads
        # >= 256 features; those shapes are trained one candidate at a time.
        wide = c.units * (2 if c.bidirectional else 1) >= 256
        if c.layers == 2 and wide:
            return 1
        # a power of 2 (<= vmap_width): few distinct widths, so few compiles across searches
        w = 1
        while w < min(width, n_todo):
            w *= 2
        return min(w, width)

    states: dict[int, Any] = {}  # candidate -> its (unstacked) state
    gwidth: dict[tuple, int] = {}

    def trainer(gkey: tuple, i: int) -> _Trainer:
        if gkey not in trainers:
            trainers[gkey] = _Trainer(
                cfgs[i], mode, sc.select.lr, data, fused=sc.fused, cached=sc.cache_compiles
            )
        return trainers[gkey]

    done = 0
    for r_end in rungs:
        for gkey, members in groups.items():
            todo = [i for i in members if alive[i] and trained[i] < r_end]
            if not todo:
                continue
            tr = trainer(gkey, members[0])
            # the group keeps its first width through the rungs (padded): no compile per rung
            w = gwidth.setdefault(gkey, width_of(cfgs[members[0]], len(todo)))
            for c0 in range(0, len(todo), w):
                chunk = todo[c0 : c0 + w]
                idx = chunk + [chunk[-1]] * (w - len(chunk))  # pad: fixed width, one compile
                fresh = [i for i in idx if i not in states]
                if fresh:
                    st = tr.init(keys[idx], rates[idx])
                else:
                    st = jax.tree_util.tree_map(lambda *a: np.stack(a), *[states[i] for i in idx])
                st, _ = tr.train(st, r_end - int(trained[chunk[0]]))
                st = jax.device_get(st)
                for j, i in enumerate(chunk):
                    states[i] = jax.tree_util.tree_map(lambda a, j=j: a[j], st)
                    best_loss[i] = float(st["best_loss"][j])
                    best_epoch[i] = int(st["best_epoch"][j])
                    trained[i] = r_end
                if progress is not None:
                    progress(len(chunk))
                done += len(chunk)
        if sc.halving and r_end < total:
            idx_alive = np.flatnonzero(alive)
            keep = max(1, math.ceil(len(idx_alive) / sc.eta))
            order = idx_alive[np.argsort(best_loss[idx_alive], kind="stable")]
            alive[order[keep:]] = False
            for i in order[keep:]:
                states.pop(int(i), None)  # free memory of dropped candidates

    losses = np.where(np.isfinite(best_loss), best_loss, np.inf)
    full = np.flatnonzero(trained == total)
    winner = int(full[np.argmin(losses[full])])
    trials = pl.DataFrame(
        {
            "trial": np.arange(n, dtype=np.int32),
            **{k: [getattr(c, k) for c in cfgs] for k in ("units", "layers", "bidirectional", "dense")},
            "dropout": [c.dropout for c in cfgs],
            "recurrent_dropout": [c.recurrent_dropout for c in cfgs],
            "val_loss": best_loss,
            "best_epoch": best_epoch,
            "epochs_trained": trained,
            "stopped_early": trained < total,
            "seed": [seed] * n,
            "selected": np.arange(n) == winner,
        }
    )

    model = LSTMModel(mode, arch=cfgs[winner], train=sc.final, seed=seed)
    model.mean_, model.std_ = mean, std
    model.t_pad_ = t_pad  # type: ignore[attr-defined]
    # retrain at the width the winner's group was trained at (padded copies): an already compiled program
    w_final = next(w for g, w in gwidth.items() if winner in groups[g])
    st = jax.tree_util.tree_map(lambda a: np.stack([np.asarray(a)] * w_final), states[winner])
    search_best = float(best_loss[winner])
    if sc.final.epochs > 0:
        final_data = (
            data
            if sc.final.batch_size == sc.select.batch_size
            else _prepare(Xs, y, Xvs, y_val, mode, sc.final.batch_size, t_pad=t_pad)
        )
        tr = _Trainer(cfgs[winner], mode, sc.final.lr, final_data, fused=sc.fused, cached=sc.cache_compiles)
        st, vls = tr.train({**st, "params": st["best_params"]}, sc.final.epochs, restart=True)
        model.history_ = [float(v) for v in np.asarray(vls)[:, 0]]
    model._take(jax.device_get(st), 0)
    model.search_val_loss_ = search_best  # type: ignore[attr-defined]
    model.search_best_epoch_ = int(best_epoch[winner])  # type: ignore[attr-defined]
    return model, trials


def trial_configs(trials: pl.DataFrame) -> list[str]:
    """The trials' hyper-parameters as JSON strings (for the store's ``search.config``)."""
    cols = ["units", "layers", "bidirectional", "dense", "dropout", "recurrent_dropout", "epochs_trained"]
    return [json.dumps(r) for r in trials.select(cols).to_dicts()]


__all__ = [
    "LSTMClassifier",
    "LSTMConfig",
    "LSTMModel",
    "LSTMRegressor",
    "SearchConfig",
    "TrainConfig",
    "class_weights",
    "clear_compiled",
    "lstm_net",
    "padded_size",
    "lstm_search",
    "sample_configs",
    "trial_configs",
]
