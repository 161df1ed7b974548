"""Both panel models on public time-series datasets, with their official train/test splits.

The data are the .ts files bundled in the aeon 1.6.0 wheel (not vendored here)::

    pip download aeon==1.6.0 --no-deps -d /tmp/aeon
    unzip -q /tmp/aeon/aeon-*.whl 'aeon/datasets/data/*' -d /tmp/aeon
    python benchmarks/timeseries_public.py /tmp/aeon/aeon/datasets/data

Per dataset and model it prints the test score (accuracy, or RMSE for regression), the published
reference, the bar of issue 17 and the wall time (fit + predict, s):

- tsfresh -> select -> PCA -> XGBoost (:class:`lnpstore.models.tsgbm.TsfreshXGB`): within 0.03 of the
  published TSFresh pipeline's accuracy (GunPoint 0.953, ArrowHead 0.691, OSULeaf 0.868);
- the LSTM (:class:`lnpstore.models.lstm.LSTMEstimator`, random search): at least 1-NN-DTW's accuracy
  (GunPoint 0.907, ArrowHead 0.703, OSULeaf 0.591);
- CardanoSentiment (regression): RMSE below predicting the training mean.

BasicMotions has no published figure here (the bar: it runs multi-class and multivariate without
glue). Both models get the raw series and labels: no reshaping and no label encoding by the caller.
The defaults are the estimators' own (the LSTM: ``PANEL_SEARCH``, an FCN branch of 64 filters beside
each LSTM, series pooled to at most 64 steps, each window's mean, minimum and maximum; tsfresh: no
PCA). ``--lstm-max-steps N`` is the LSTM's ``max_steps`` (0 = all steps), ``--lstm-pool-stats mean``
its windows' mean only; ``--lstm-fcns`` / ``--lstm-convs`` the FCN branches / convolution front ends
its search draws from (``--lstm-fcns 0 --lstm-convs 0``: the study's plain LSTM); ``--pca 32`` the
study's PCA before XGBoost.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CLASSIFICATION = ("GunPoint", "ArrowHead", "BasicMotions", "OSULeaf")
REGRESSION = ("CardanoSentiment",)
#: Published accuracies (default train/test split): TSFresh pipeline and 1-NN with DTW.
REFERENCE = {
    "GunPoint": {"tsfresh": 0.953, "1nn_dtw": 0.907},
    "ArrowHead": {"tsfresh": 0.691, "1nn_dtw": 0.703},
    "OSULeaf": {"tsfresh": 0.868, "1nn_dtw": 0.591},
}


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """A .ts file -> (series, each (n_steps, n_channels) float32; targets; is regression)."""
    series, targets = [], []
    regression = False
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@targetlabel true"):
                regression = True
            if low == "@data":
                in_data = True
            continue
        *dims, target = line.split(":")
        chans = [np.array([np.nan if v == "?" else float(v) for v in d.split(",")], np.float32) for d in dims]
        T = max(len(c) for c in chans)
        chans = [np.pad(c, (0, T - len(c)), constant_values=np.nan) for c in chans]
        series.append(np.stack(chans, axis=1))
        targets.append(target.strip())
    y = np.array([float(t) for t in targets]) if regression else np.array(targets)
    return series, y, regression


def as_array(series: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """An (n, T, C) array when every series has the same length, else the list (padded by the model)."""
    if len({s.shape for s in series}) == 1:
        return np.stack(series)
    return series


def run_one(name: str, kind: str, data_dir: Path, a: argparse.Namespace) -> dict:
    Xtr_s, ytr, regression = read_ts(data_dir / name / f"{name}_TRAIN.ts")
    Xte_s, yte, _ = read_ts(data_dir / name / f"{name}_TEST.ts")
    Xtr, Xte = as_array(Xtr_s), as_array(Xte_s)
    t0 = time.perf_counter()
    if kind == "tsfresh":
        from lnpstore.models.tsgbm import TsfreshXGB

        m = TsfreshXGB(
            "regress" if regression else "classify",
            fc_parameters=a.fc,
            n_samples=a.xgb_samples,
            n_components=a.pca,
            seed=a.seed,
            n_jobs=a.jobs,
        )
    else:
        from lnpstore.models.lstm import PANEL_SEARCH, LSTMEstimator

        sc = PANEL_SEARCH.replace(
            select=PANEL_SEARCH.select.replace(epochs=a.lstm_epochs, patience=a.lstm_patience),
            units=tuple(a.lstm_units),
            convs=tuple(a.lstm_convs),
            fcns=tuple(a.lstm_fcns),
        )
        m = LSTMEstimator(
            "regress" if regression else "classify",
            n_samples=a.lstm_samples,
            search=sc,
            max_steps=a.lstm_max_steps or None,
            pool_stats=tuple(a.lstm_pool_stats),
            n_bags=a.lstm_bags,
            seed=a.seed,
        )
    m.fit(Xtr, ytr)
    pred = m.predict(Xte)
    dt = time.perf_counter() - t0
    row: dict = {
        "dataset": name,
        "model": kind,
        "n_train": len(ytr),
        "n_test": len(yte),
        "steps": int(max(s.shape[0] for s in Xtr_s)),
        "channels": int(Xtr_s[0].shape[1]),
        "time_s": round(dt, 1),
    }
    if regression:
        rmse = float(np.sqrt(np.mean((pred - yte) ** 2)))
        base = float(np.sqrt(np.mean((ytr.mean() - yte) ** 2)))
        row |= {
            "metric": "rmse",
            "score": round(rmse, 4),
            "reference": round(base, 4),
            "reference_is": "training mean",
            "passes": rmse < base,
        }
    else:
        acc = float(np.mean(pred == yte))
        ref = REFERENCE.get(name, {})
        bar = ref.get("tsfresh", np.nan) - 0.03 if kind == "tsfresh" else ref.get("1nn_dtw", np.nan)
        row |= {
            "metric": "accuracy",
            "score": round(acc, 4),
            "reference": ref.get("tsfresh" if kind == "tsfresh" else "1nn_dtw"),
            "reference_is": "published TSFresh" if kind == "tsfresh" else "1-NN-DTW",
            "passes": bool(acc >= bar) if np.isfinite(bar) else None,
            "n_classes": len(np.unique(ytr)),
        }
    if kind == "tsfresh":
        row["selection"] = (
            f"{m.selection_path_} ({m.n_relevant_} relevant, {len(m.selected_)} kept, PCA {m.pca_.n_components_})"
        )
    else:
        t = m.trials_
        w = t.filter("selected").row(0, named=True) if t is not None else {}
        row["selected"] = {
            k: w.get(k)
            for k in (
                "units",
                "layers",
                "bidirectional",
                "dense",
                "conv",
                "fcn",
                "lr",
                "batch_size",
                "best_epoch",
                "epochs_trained",
            )
        }
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path, help="aeon/datasets/data of the aeon 1.6.0 wheel")
    p.add_argument("--datasets", default=",".join(CLASSIFICATION + REGRESSION))
    p.add_argument("--models", default="tsfresh,lstm")
    p.add_argument("--fc", default="efficient", help="tsfresh calculators (efficient, fast, minimal)")
    p.add_argument("--xgb-samples", type=int, default=20)
    p.add_argument(
        "--pca",
        type=int,
        default=0,
        help="PCA components of the tsfresh model (0: none, its default; study: 32)",
    )
    p.add_argument("--lstm-samples", type=int, default=16)
    p.add_argument("--lstm-epochs", type=int, default=200)
    p.add_argument("--lstm-patience", type=int, default=20)
    p.add_argument("--lstm-units", type=lambda s: [int(x) for x in s.split(",")], default=[32, 64, 128, 256])
    p.add_argument(
        "--lstm-max-steps", type=int, default=64, help="LSTM input: at most this many steps (0: all)"
    )
    p.add_argument(
        "--lstm-pool-stats",
        type=lambda s: s.split(","),
        default=["mean", "min", "max"],
        help="what each pooled window keeps per channel (default: mean,min,max; mean: the mean only)",
    )
    p.add_argument("--lstm-convs", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument(
        "--lstm-fcns",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64],
        help="filters of the FCN branch the search draws from (0: none, the plain LSTM)",
    )
    p.add_argument(
        "--lstm-bags",
        type=int,
        default=None,
        help="LSTM n_bags: the winner retrained on this many folds (1: none; default: the estimator's, "
        "5 for regression, 1 for classification)",
    )
    p.add_argument("--jobs", type=int, default=0, help="tsfresh worker processes (0: serial)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    rows = []
    for name in [d for d in a.datasets.split(",") if d]:
        for kind in [k for k in a.models.split(",") if k]:
            row = run_one(name, kind, a.data_dir, a)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        f"{'dataset':18s} {'model':8s} {'metric':9s} {'score':>7s} {'reference':>10s} {'(of)':18s} {'bar met':8s} {'time s':>7s}"
    )
    for r in rows:
        print(
            f"{r['dataset']:18s} {r['model']:8s} {r['metric']:9s} {r['score']:7.3f} "
            f"{(r['reference'] if r['reference'] is not None else float('nan')):10.3f} {r['reference_is']:18s} "
            f"{str(r['passes']):8s} {r['time_s']:7.1f}"
        )
    if a.json is not None:
        from lnpstore.store.atomic import atomic_write_text

        atomic_write_text(json.dumps(rows, indent=2), a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
