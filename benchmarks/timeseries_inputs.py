"""The time-series models on each kind of inputs, refitted on a finished run's store at one checkpoint.

    python benchmarks/timeseries_inputs.py lnpstore-run --preset study --checkpoint 20

For every inputs (``embeddings``: the CNN's 32-dim embeddings, as the study; ``tracks``: the cells'
per-frame track measures of ``queries/track_sequences.sql``; ``both``), model (LSTM, tsfresh ->
XGBoost) and mode it fits every fold with the preset's settings (``--preset``, ``--seed``), exactly as
``lnpstore run`` would (:func:`lnpstore.models.panel.load_inputs`, the same search settings), predicts
the test cells and prints the fold ensemble's weighted F1 / RMSE (augmentations averaged per fold,
then folds, as ``queries/ensemble_predictions.sql``), next to the run's own CNN figure and the
oracle bars of issue 17 when the run was evaluated against the simulator's truth, and the fit time.
Above them, per mode, two references trained the same way (:func:`trained_readers`): a linear reader
of the track measures, and one of the simulator's true features (what a trained model could reach
with perfect measures; the report's trajectory oracle is fitted in-sample to noise-free values).

Nothing is written to the store: tsfresh's feature cache goes to a temporary folder. One line of JSON
per (inputs, model, mode) goes to ``--json`` when given. ``--set FIELD=VALUE`` changes a setting of
the preset (e.g. ``--set tsfresh_fc=efficient``) to try it without a new run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def ensemble_metric(mode: str, preds: list[tuple[pl.DataFrame, np.ndarray, np.ndarray]]) -> float:
    """The fold ensemble's metric: per fold (ids, y, score) averaged over a cell's augmentations,
    then over folds (each fold weighs the same)."""
    from lnpstore.models.evaluation import metric_value

    per_fold = [
        ids.select("cell_uid")
        .with_columns(y=pl.Series(y), s=pl.Series(np.asarray(s, np.float64)))
        .group_by("cell_uid")
        .agg(pl.col("y").mean(), pl.col("s").mean())
        for ids, y, s in preds
    ]
    ens = pl.concat(per_fold).group_by("cell_uid").agg(pl.col("y").mean(), pl.col("s").mean())
    return metric_value(mode, ens["y"].to_numpy(), ens["s"].to_numpy())


def fit_fold(kind: str, mode: str, panels: dict, cfg, cache_dir: Path):
    """One fold's model on its train / val panels, with ``lnpstore run``'s settings for ``cfg``."""
    tr, va = panels["train"], panels["val"]
    if kind == "lstm":
        from lnpstore.models.lstm import lstm_search

        from lnpstore.study.estimate import lstm_search_config

        model, _ = lstm_search(
            tr.X,
            tr.y,
            va.X,
            va.y,
            mode=mode,
            n_samples=cfg.lstm_samples,
            seed=cfg.seed,
            search=lstm_search_config(cfg),
        )
        return model
    from lnpstore.models.tsgbm import STUDY_PCA_COMPONENTS, TsfreshXGB

    return TsfreshXGB(
        mode,
        fc_parameters=cfg.tsfresh_fc,
        n_samples=cfg.tsfresh_samples,
        n_components=STUDY_PCA_COMPONENTS,
        seed=cfg.seed,
        cache_dir=cache_dir,
        channels=list(tr.channels),
        engine=cfg.tsfresh_engine,
    ).fit(tr.X, tr.y, va.X, va.y)


def run_figures(store, checkpoint: int) -> pl.DataFrame:
    """The run's own ensemble figures (kind, mode, frame, ensemble) from its metrics, if evaluated."""
    from lnpstore.models.evaluation import metrics_summary

    try:
        s = metrics_summary(store)
    except Exception:  # a store that was never evaluated has no metrics table
        return pl.DataFrame()
    return s.filter(pl.col("frame").is_in([0, checkpoint])).select("kind", "mode", "frame", "ensemble")


def _override(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` -> (field, value): the value as JSON (numbers, lists as tuples), else as text."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise SystemExit(f"--set wants FIELD=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, tuple(value) if isinstance(value, list) else value


def trained_readers(store, truth_dir: Path | None, mode: str, checkpoint: int, n_folds: int) -> dict:
    """Linear readers trained as the models are (per fold on its training cells' measured targets,
    ridge / L2 logistic with the penalty chosen by inner CV; fold ensemble on the test cells): of
    the tracker's measures (every frame's channels of ``queries/track_sequences.sql``) and, when the
    simulator's truth is there, of the trajectory oracle's true features (particle count and depth
    per frame, log area; :func:`lnpstore.simulate.expression.trajectory_features`). Unlike the
    trajectory oracle, which is fitted in-sample to the full oracle's noise-free values, these are
    what a trained model could reach from such inputs."""
    import warnings

    from lnpstore.models.panel import load_inputs
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # 1.10's new defaults

    def fit(X, y):
        reg = (
            LogisticRegressionCV(Cs=20, max_iter=2000, class_weight="balanced")
            if mode == "classify"
            else RidgeCV(alphas=np.logspace(-3, 4, 30))
        )
        return make_pipeline(StandardScaler(), reg).fit(X, y)

    def score(m, X):
        return m.predict_proba(X)[:, 1] if mode == "classify" else m.predict(X)

    truth_x = None
    if truth_dir is not None:
        from lnpstore.simulate.expression import trajectory_features
        from lnpstore.simulate.truth import load_truth, store_cells_in_truth

        tt = load_truth(truth_dir)["tracks"].with_columns(
            pl.col("field").cast(pl.Int16), pl.col("true_id").cast(pl.Int64)
        )
        matched = store_cells_in_truth(store, tt)
        x = trajectory_features(matched, tt, checkpoint)[:, 1:]  # the scaler centres: no intercept
        truth_x = dict(zip(matched["cell_uid"].to_list(), x, strict=True))
    out: dict[str, list] = {"tracks": [], "truth": []}
    for fold in range(n_folds):
        p, _ = load_inputs(store, mode=mode, fold=fold, checkpoint=checkpoint, inputs="tracks")
        tr, te = p["train"], p["test"]
        m = fit(tr.X.reshape(tr.n_cases, -1), tr.y)
        out["tracks"].append((te.ids, te.y, score(m, te.X.reshape(te.n_cases, -1))))
        if truth_x is not None:
            rows = {}
            for role in ("train", "test"):
                uids = p[role].ids["cell_uid"].to_list()
                keep = np.array([u in truth_x and np.isfinite(truth_x[u]).all() for u in uids])
                X = np.array([truth_x[u] for u, k in zip(uids, keep, strict=True) if k])
                rows[role] = (p[role].subset(keep), X)
            (trp, trX), (tep, teX) = rows["train"], rows["test"]
            m = fit(trX, trp.y)
            out["truth"].append((tep.ids, tep.y, score(m, teX)))
    return {k: ensemble_metric(mode, v) for k, v in out.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run folder (with store/) or a store folder")
    ap.add_argument("--preset", default="study", help="the settings to fit with (default %(default)s)")
    ap.add_argument("--seed", type=int, default=None, help="model seed (default: the preset's, 0)")
    ap.add_argument("--checkpoint", type=int, default=20, help="last input frame t (default 20)")
    ap.add_argument("--inputs", default="embeddings,tracks,both", help="comma-separated (default: all)")
    ap.add_argument("--models", default="tsfresh_xgb,lstm", help="comma-separated kinds (default: both)")
    ap.add_argument("--modes", default="classify,regress", help="comma-separated (default: both)")
    ap.add_argument("--folds", type=int, default=None, help="folds 0..N-1 (default: the preset's)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a RunConfig field of the preset, e.g. --set tsfresh_fc=efficient --set lstm_samples=8 "
        "(values read as JSON, else as text; repeatable)",
    )
    ap.add_argument(
        "--truth",
        default=None,
        help="the simulator's truth folder (default: RUN/plate/truth when there) for the trained reader "
        "of the true features",
    )
    ap.add_argument("--no-readers", action="store_true", help="skip the trained linear readers")
    ap.add_argument("--json", help="append one JSON line per result to this file")
    args = ap.parse_args()

    from lnpstore.models.panel import load_inputs

    from lnpstore.store.core import Store
    from lnpstore.study.pipeline import config_for

    root = Path(args.run)
    store = Store.open(root / "store" if (root / "store").is_dir() else root)
    cfg = config_for(args.preset, seed=args.seed, overrides=dict(_override(o) for o in args.set))
    n_folds = args.folds or cfg.n_folds
    own = run_figures(store, args.checkpoint)

    def own_value(kind: str, mode: str, frame: int) -> float | None:
        if own.height == 0:
            return None
        r = own.filter((pl.col("kind") == kind) & (pl.col("mode") == mode) & (pl.col("frame") == frame))
        return None if r.height == 0 else float(r["ensemble"][0])

    for mode in args.modes.split(","):
        oracle, cnn = own_value("oracle", mode, 0), own_value("cnn", mode, args.checkpoint)
        if mode == "classify":
            bar = f"bar F1 >= {oracle - 0.05:.3f}" if oracle is not None else "no oracle"
        else:
            bar = f"bar RMSE <= {oracle * 1.1:.3f}" if oracle is not None else "no oracle"
        cnn_txt = f"{cnn:.3f}" if cnn is not None else "-"
        print(f"{mode}, t = {args.checkpoint}: run's CNN {cnn_txt}, oracle {oracle}, {bar}", flush=True)
        if not args.no_readers:
            truth_dir = Path(args.truth) if args.truth else root / "plate" / "truth"
            readers = trained_readers(
                store, truth_dir if truth_dir.is_dir() else None, mode, args.checkpoint, n_folds
            )
            for name, value in readers.items():
                print(f"  trained linear reader of the {name + ' features':<15} {value:.3f}", flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        rec = {"reader": name, "mode": mode, "checkpoint": args.checkpoint, "value": value}
                        f.write(json.dumps(rec | {"oracle": oracle, "store": str(store.root)}) + "\n")
        for inputs in [i for i in args.inputs.split(",") if i]:
            for kind in [k for k in args.models.split(",") if k]:
                t0 = time.perf_counter()
                preds = []
                with tempfile.TemporaryDirectory() as tmp:
                    for fold in range(n_folds):
                        p, _ = load_inputs(
                            store, mode=mode, fold=fold, checkpoint=args.checkpoint, inputs=inputs
                        )
                        p = {r: pn.truncate(args.checkpoint) for r, pn in p.items()}
                        if kind == "tsfresh_xgb" and cfg.tsfresh_average_augs:
                            p = {r: pn.average_augs() for r, pn in p.items()}
                        model = fit_fold(kind, mode, p, cfg, Path(tmp))
                        te = p["test"]
                        preds.append((te.ids, te.y, model.predict_score(te.X)))
                value = ensemble_metric(mode, preds)
                dt = time.perf_counter() - t0
                ran = own_value(kind, mode, args.checkpoint)
                print(
                    f"  {inputs:<10} {kind:<11} {value:.3f}  (the run's {ran if ran is None else round(ran, 3)})"
                    f"  {dt:.0f} s",
                    flush=True,
                )
                if args.json:
                    rec = {
                        "inputs": inputs,
                        "kind": kind,
                        "mode": mode,
                        "checkpoint": args.checkpoint,
                        "value": value,
                        "run_value": ran,
                        "cnn": cnn,
                        "oracle": oracle,
                        "seconds": round(dt, 1),
                        "preset": args.preset,
                        "set": args.set,
                        "seed": cfg.seed,
                        "store": str(store.root),
                    }
                    with open(args.json, "a") as f:
                        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
