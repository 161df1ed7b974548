"""Profiles out: a tracked tiny plate's profiles go through pycytominer's aggregate and normalize, and
anndata reads the h5ad; the CLI writes both."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from lnpstore.cli.main import main
from lnpstore.interop.profiles import (
    TRACK_FEATURES,
    embedding_columns,
    export_profiles,
    feature_columns,
)
from lnpstore.store.errors import LnpstoreError
from lnpstore.store.schema import EMBEDDING_DIM

MODEL = "cnn-classify-f0-t0-0123abcd"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny plate (3 wells, one of them the control; 6 frames, 240 x 240 px), ingested, tracked and
    its cells table built, with embeddings of one model written for every tracked node (a seeded random 32-vector each)."""
    os.environ["LNPSTORE_QUIET"] = "1"
    from lnpstore.instrument.ingest import ingest_plate
    from lnpstore.simulate.simulator import SimulationSettings, simulate_plate
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    root = tmp_path_factory.mktemp("profiles")
    settings = SimulationSettings.tiny(0, n_frames=6, field_width_px=240, field_height_px=240, workers=1)
    sim = simulate_plate(root / "sim", settings, show_progress=False)
    st = Store.create(root / "store")
    ingest_plate(st, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
    track_plate(st, settings.plate, show_progress=False)
    from lnpstore.study.targets import build_cells

    build_cells(st, settings.plate, t_in=3, n_folds=2)  # targets and split: Metadata_Label, Metadata_Split
    nodes = st.read("tracks").select("cell_uid", "frame")
    assert nodes.height > 0
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(nodes.height, EMBEDDING_DIM)).astype(np.float32)
    st.write(
        "embeddings",
        nodes.with_columns(
            model_id=pl.lit(MODEL),
            aug=pl.lit(0, pl.Int8),
            embedding=pl.Series(emb, dtype=pl.Array(pl.Float32, EMBEDDING_DIM)),
        ).select("model_id", "cell_uid", "frame", "aug", "embedding"),
    )
    return st


def test_cell_frame_profiles_hold_the_tracks_and_embeddings(tmp_path, store):
    out, df = export_profiles(store, tmp_path / "p.parquet", grain="cell_frame")
    back = pl.read_parquet(out)
    assert back.equals(df)
    tracks = store.read("tracks")
    assert df.height == tracks.height
    assert feature_columns(df) == list(TRACK_FEATURES.values()) + embedding_columns()
    row = df.row(df.height // 2, named=True)
    node = tracks.filter(
        (pl.col("cell_uid") == row["Metadata_CellUID"]) & (pl.col("frame") == row["Metadata_Frame"])
    ).row(0, named=True)
    assert row["Cells_AreaShape_Area"] == node["area_px"]
    assert row["Cells_Intensity_MeanIntensity_GFP"] == node["mean_gfp"]
    assert (row["Metadata_Plate"], row["Metadata_Well"], row["Metadata_Site"]) == (
        node["plate"],
        node["well"],
        node["field"],
    )
    emb = (
        store.read("embeddings")
        .filter((pl.col("cell_uid") == node["cell_uid"]) & (pl.col("frame") == node["frame"]))
        .get_column("embedding")
        .to_list()[0]
    )
    assert [row[c] for c in embedding_columns()] == pytest.approx(emb)
    wells = store.read("wells")
    dose = dict(zip(wells["well"], wells["dose_ng"], strict=True))
    assert all(dose[w] == d for w, d in df.select("Metadata_Well", "Metadata_dose_ng").iter_rows())
    assert df.get_column("Metadata_EmbeddingModel").unique().to_list() == [MODEL]
    cells = store.read("cells").select("cell_uid", "split", "label")
    got = df.select("Metadata_CellUID", "Metadata_Split", "Metadata_Label").unique().sort("Metadata_CellUID")
    want = got.join(cells, left_on="Metadata_CellUID", right_on="cell_uid", how="left")
    assert cells.height > 0 and want["Metadata_Split"].to_list() == want["split"].to_list()
    assert want["Metadata_Label"].to_list() == want["label"].to_list()


def test_pycytominer_aggregates_and_normalizes_the_parquet(tmp_path, store):
    from pycytominer import aggregate, normalize
    from pycytominer.cyto_utils import infer_cp_features

    out, df = export_profiles(store, tmp_path / "cells.parquet", grain="cell")
    assert df.get_column("Metadata_CellUID").is_unique().all()
    assert df.height == store.read("tracks").get_column("cell_uid").n_unique()
    assert df["Metadata_NFrames"].max() == 6  # some cells are followed through every frame
    one = df.filter(pl.col("Metadata_NFrames") == 6).row(0, named=True)
    nodes = store.read("tracks").filter(pl.col("cell_uid") == one["Metadata_CellUID"])
    assert one["Cells_AreaShape_Area"] == pytest.approx(nodes["area_px"].mean())
    cells = pl.read_parquet(out).to_pandas()
    assert infer_cp_features(cells) == feature_columns(df)
    assert set(infer_cp_features(cells, metadata=True)) == {
        c for c in df.columns if c.startswith("Metadata_")
    }

    wells = aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"], features="infer", operation="median")
    assert len(wells) == df.get_column("Metadata_Well").n_unique()
    expected = df.group_by("Metadata_Well").agg(pl.col("Cells_AreaShape_Area").median()).sort("Metadata_Well")
    got = wells.sort_values("Metadata_Well")["Cells_AreaShape_Area"].to_numpy()
    np.testing.assert_allclose(got, expected.get_column("Cells_AreaShape_Area").to_numpy())

    norm = normalize(
        cells,
        features="infer",
        meta_features="infer",
        samples="Metadata_is_control == True",
        method="standardize",
    )
    controls = norm[norm["Metadata_is_control"]]
    assert len(controls) > 1
    # standardized on the control cells: their features have mean 0 and (population) sd 1
    feat = "Cells_Embedding_00"
    assert controls[feat].mean() == pytest.approx(0.0, abs=1e-6)
    assert controls[feat].std(ddof=0) == pytest.approx(1.0, rel=1e-6)


def test_anndata_reads_the_h5ad(tmp_path, store):
    import anndata as ad

    for grain in ("cell", "cell_frame"):
        out, df = export_profiles(store, tmp_path / f"{grain}.h5ad", format="h5ad", grain=grain)
        a = ad.read_h5ad(out)
        assert a.shape == (df.height, len(feature_columns(df)))
        assert list(a.var_names) == feature_columns(df)
        np.testing.assert_allclose(
            a.X, df.select(feature_columns(df)).to_numpy().astype(np.float32), equal_nan=True
        )
        assert list(a.obs["Metadata_Well"].astype(str)) == df.get_column("Metadata_Well").to_list()
        assert list(a.obs["Metadata_Site"]) == df.get_column("Metadata_Site").to_list()
        assert a.obs_names.is_unique
        assert a.uns["lnpstore"]["grain"] == grain


def test_cli_and_errors(tmp_path, store, capsys):
    out = tmp_path / "cli.parquet"
    assert main(["export-profiles", str(store.root), str(out), "--grain", "cell_frame"]) == 0
    assert "cell_frame" in capsys.readouterr().out
    assert pl.read_parquet(out).height == store.read("tracks").height
    assert main(["export-profiles", str(store.root), str(out), "--model", "cnn-nope"]) == 2
    err = capsys.readouterr().err
    assert "cnn-nope" in err and MODEL in err
    with pytest.raises(LnpstoreError, match="is a folder"):
        export_profiles(store, tmp_path, format="parquet")
