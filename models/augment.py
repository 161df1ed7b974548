"""The 8 dihedral augmentations (the group D4 of the square) as pure jnp functions.

Augmentation ``k`` (0..7) of an image with spatial axes (H, W) = (-3, -2) (channels last): rotate by
``k % 4`` quarter turns counter-clockwise, then, for ``k >= 4``, flip left-right. ``k = 0`` is the
identity. Square images keep their shape under all 8.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

N_AUGS = 8
NAMES: tuple[str, ...] = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "rot90+flip",
    "rot180+flip",
    "rot270+flip",
)


def dihedral(x: jax.Array, k: int) -> jax.Array:
    """Augmentation ``k`` (a Python int 0..7) of ``x`` (..., H, W, C)."""
    if not 0 <= k < N_AUGS:
        raise ValueError(f"augmentation index must be 0..7, not {k}")
    y = jnp.rot90(x, k % 4, axes=(-3, -2))
    return jnp.flip(y, axis=-2) if k >= 4 else y


def all_dihedral(x: jax.Array, n: int = N_AUGS) -> jax.Array:
    """The first ``n`` augmentations stacked on a new leading axis: (n, ..., H, W, C)."""
    return jnp.stack([dihedral(x, k) for k in range(n)])


def dihedral_traced(x: jax.Array, k: jax.Array) -> jax.Array:
    """Augmentation ``k`` for a traced integer (one image (H, W, C), square); use under vmap."""
    return jax.lax.switch(k, [lambda a, i=i: dihedral(a, i) for i in range(N_AUGS)], x)


def random_dihedral(key: jax.Array, x: jax.Array) -> jax.Array:
    """A random augmentation per sample of a square batch (B, H, W, C)."""
    ks = jax.random.randint(key, (x.shape[0],), 0, N_AUGS)
    return jax.vmap(dihedral_traced)(x, ks)
