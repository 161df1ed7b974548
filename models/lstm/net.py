"""The network: an LSTM over (batch, steps, channels) inputs in flax.linen, and its architecture config.

Dropout follows Keras' LSTM: ``dropout`` is a mask on the layer inputs and ``recurrent_dropout`` a
mask on the hidden state ``h``, each drawn once per sequence and fixed over time (steps). Both rates
are *inputs* of the network, not constants, so candidates that differ only in rates, learning rates
and seeds share one compiled program and can be trained side by side with ``jax.vmap``.

Series of unequal length are right-padded and masked: each row has its own length (in steps); steps
at or after it do not update the state, so the forward output at the last step is the state after the
row's last real step and the backward direction starts at that step.
"""

from __future__ import annotations

from typing import Any, Literal

from lnpstore.runtime.settings import Field, Settings, settings

#: The study's architecture space (units per direction, layers, dropout rates).
UNITS = (32, 64, 128, 256)
LAYERS = (1, 2)
RATES = (0.1, 0.2, 0.5)
#: Filters of the optional convolution front end a search can draw (SearchConfig.convs; 0: none, the
#: study's network, and the default). Measured on ArrowHead (36 training series, pooled to 32 steps, the
#: test split as validation): a plain bidirectional LSTM (64 units) reached 0.66 accuracy, the same with
#: 32 filters of width 8 before it 0.75; a search restricted to convs 32/64 scored 0.640 against 0.509
#: for 0/32/64 (benchmarks/timeseries_public.py). Not the default: with convs 0/32/64 and max_steps 64
#: GunPoint fell to 0.767 (from >= 0.907 with the plain network on all 150 steps).
CONVS = (0, 32, 64)


@settings
class LSTMConfig(Settings):
    """One architecture (what fixes the compiled program, plus the two dropout rates)."""

    units: int = Field(64, ge=1, description="LSTM units per direction")
    layers: int = Field(1, ge=1, le=2, description="stacked LSTM layers (1 or 2)")
    bidirectional: bool = Field(False, description="a backward LSTM next to the forward one")
    dense: bool = Field(False, description="a dense (units, relu) layer before the output")
    conv: int = Field(
        0,
        ge=0,
        description="filters of a 1-D convolution (kernel conv_kernel, relu) before the LSTM (0: none)",
    )
    conv_kernel: int = Field(8, ge=1, description="kernel width of the convolution front end (steps)")
    fcn: int = Field(
        0,
        ge=0,
        description="filters of a fully convolutional branch beside the LSTM (LSTM-FCN: convolutions of "
        "fcn, 2 fcn and fcn filters, widths 8/5/3, layer norm, relu, mean over steps; 0: none)",
    )
    readout: Literal["last", "mean"] = Field(
        "last",
        description="what the output reads: the state after the last step ('last', the study's) or the "
        "mean of the last layer's states over the real steps ('mean')",
    )
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="input dropout rate, fixed over steps")
    recurrent_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout rate on h, fixed over steps")

    @property
    def shape(self) -> tuple[int, int, bool, bool, int, int, int, str]:
        """What fixes the compiled program (rates do not): every field but the dropout rates."""
        return (
            self.units,
            self.layers,
            self.bidirectional,
            self.dense,
            self.conv,
            self.conv_kernel,
            self.fcn,
            self.readout,
        )


def _lstm_layer(x, wi, b, wh, h_mask, reverse: bool, lengths=None):
    """Run one LSTM direction over ``x`` (B, T, C) (inputs already masked); returns h (B, T, H).

    ``wi`` (C, 4H), ``b`` (4H,), ``wh`` (H, 4H), ``h_mask`` (B, H) fixed over steps; gates i, f, g, o.
    ``lengths`` (B,) int (may be traced) or None: only steps ``< lengths[row]`` update the row's state,
    later (padding) steps keep it. One program then serves every length.
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
        if lengths is not None:
            live = (k < lengths)[:, None]
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

    def _live_steps(a, lengths):
        """(B, T, 1) mask of ``a`` (B, T, C): 1 on the real steps of each row, 0 on padding."""
        n_t = a.shape[1]
        live = jnp.ones(a.shape[:2]) if lengths is None else (jnp.arange(n_t)[None, :] < lengths[:, None])
        return live.astype(a.dtype)[:, :, None]

    def _unit_forget_bias(key, shape, dtype=jnp.float32):
        h = shape[0] // 4
        return jnp.zeros(shape, dtype).at[h : 2 * h].set(1.0)

    class LSTMNet(nn.Module):
        """LSTM over (B, T, C) inputs; returns (B,) logits or values (``n_out`` 1) or (B, n_out) logits.

        ``rates`` is a (2,) array: input dropout and recurrent dropout, used when ``train``.
        ``lengths`` (B,) int or a scalar (may be traced): steps ``>= lengths`` are padding and ignored.
        """

        units: int
        layers: int = 1
        bidirectional: bool = False
        dense: bool = False
        conv: int = 0
        conv_kernel: int = 8
        fcn: int = 0
        readout: str = "last"
        n_out: int = 1

        @nn.compact
        def __call__(self, x, rates, train: bool = False, lengths=None):
            bsz = x.shape[0]
            if lengths is not None:
                lengths = jnp.broadcast_to(jnp.asarray(lengths), (bsz,))
            dirs = ("f", "b") if self.bidirectional else ("f",)
            h = x
            if self.conv:  # local shape features first (the LSTM-FCN idea); 'SAME' keeps the steps
                h = nn.relu(nn.Conv(self.conv, (self.conv_kernel,), padding="SAME", name="conv")(h))
                h = h * _live_steps(h, lengths)  # padding steps stay zero
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
                    outs.append(_lstm_layer(h * m_in, wi, b, wh, m_h, reverse=(d == "b"), lengths=lengths))
                if layer < self.layers - 1:
                    h = jnp.concatenate(outs, axis=-1)
                elif self.readout == "mean":  # mean over the real steps of every direction's states
                    hs = jnp.concatenate(outs, axis=-1)
                    live = _live_steps(hs, lengths)
                    h = (hs * live).sum(axis=1) / jnp.maximum(live.sum(axis=1), 1.0)
                else:
                    # forward: state after the last (real) step; backward: state after the first step
                    last = [outs[0][:, -1, :]] + ([outs[1][:, 0, :]] if self.bidirectional else [])
                    h = jnp.concatenate(last, axis=-1)
            if self.fcn:  # the FCN branch (Wang et al. 2017) beside the LSTM, as in LSTM-FCN
                live = _live_steps(x, lengths)
                g = x
                for j, (filters, width) in enumerate(((self.fcn, 8), (2 * self.fcn, 5), (self.fcn, 3))):
                    g = nn.Conv(filters, (width,), padding="SAME", name=f"fcn{j}")(g * live)
                    g = nn.relu(nn.LayerNorm(name=f"fcn{j}_norm")(g))
                g = (g * live).sum(axis=1) / jnp.maximum(live.sum(axis=1), 1.0)
                h = jnp.concatenate([h, g], axis=-1)
            if self.dense:
                h = nn.relu(nn.Dense(self.units, name="dense")(h))
            out = nn.Dense(self.n_out, name="out")(h)
            return out[:, 0] if self.n_out == 1 else out

    return LSTMNet


_NET_CLASS: Any = None


def lstm_net(cfg: LSTMConfig, n_out: int = 1):
    """The flax.linen module of an architecture with ``n_out`` outputs (1: binary logit or value)."""
    global _NET_CLASS
    if _NET_CLASS is None:
        _NET_CLASS = _make_net_class()
    return _NET_CLASS(
        units=cfg.units,
        layers=cfg.layers,
        bidirectional=cfg.bidirectional,
        dense=cfg.dense,
        conv=cfg.conv,
        conv_kernel=cfg.conv_kernel,
        fcn=cfg.fcn,
        readout=cfg.readout,
        n_out=n_out,
    )


__all__ = ["CONVS", "LAYERS", "LSTMConfig", "RATES", "UNITS", "lstm_net"]
