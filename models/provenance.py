"""Provenance helpers shared by the model stages: ids, versions, timestamps, atomic files, curves."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lnpstore._version import __version__
from lnpstore.store import schema as S
from lnpstore.store.atomic import atomic_path


def model_id(kind: str, mode: str, fold: int, checkpoint: int | None, payload: Any) -> str:
    """``'{kind}-{mode}-f{fold}-t{checkpoint}-{hash8}'`` (``tNA`` without a checkpoint); the hash is over
    ``payload`` (config, seed, data version) as sorted JSON, so the same inputs give the same id."""
    h = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]
    t = "NA" if checkpoint is None else str(int(checkpoint))
    return f"{kind}-{mode}-f{int(fold)}-t{t}-{h}"


def versions() -> dict[str, str]:
    return {"package_version": __version__, "schema_version": S.SCHEMA_VERSION}


def now() -> datetime:
    return datetime.now(UTC)


def plot_curves(
    train: list[float], val: list[float], best_epoch: int, path: Path, *, title: str = ""
) -> Path:
    """Training and validation loss per epoch as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ep = range(1, len(train) + 1)
    ax.plot(ep, train, label="train")
    ax.plot(ep, val, label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", ls="--", lw=0.8, label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(path, keep_suffix=True) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path
