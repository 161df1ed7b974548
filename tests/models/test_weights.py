"""VGG16 weights: each file format, conventions (HWIO/OIHW, BGR/RGB), checks, search, download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from lnpstore.models import weights as W

from lnpstore.store.errors import LnpstoreError, WeightsNotFoundError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / W.TEAM_NPZ_FILENAME


def closed_port_url(name: str = W.KERAS_FILENAME) -> str:
    """An http URL on localhost where nothing listens (the connection is refused: no network)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No real ~/.keras, torch or lnpstore cache, no env var, no network; the shared folder hidden."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(W.URL_ENV_VAR, closed_port_url())
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    real = W.search_locations
    monkeypatch.setattr(W, "search_locations", lambda: [p for p in real() if "shared" not in p.parts])


def rand_params(seed: int = 1) -> W.Params:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) * 0.1 for k, s in W.expected_shapes().items()}


def conv_same_hwio(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct 'SAME' cross-correlation, x (H, W, I), k (3, 3, I, O) -> (H, W, O), in float64."""
    h, w, _ = x.shape
    xp = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, k.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += xp[dy : dy + h, dx : dx + w, :] @ k[dy, dx].astype(np.float64)
    return out + b


def first_layer(params: W.Params, x_bgr: np.ndarray) -> np.ndarray:
    """block1_conv1 (before ReLU) through the Flax extractor's own conv on (H, W, 3) input."""
    import flax.linen as nn
    import jax.numpy as jnp

    conv = nn.Conv(64, (3, 3), padding="SAME")
    p = {
        "params": {
            "kernel": jnp.asarray(params["block1_conv1/kernel"]),
            "bias": jnp.asarray(params["block1_conv1/bias"]),
        }
    }
    return np.asarray(conv.apply(p, jnp.asarray(x_bgr[None], jnp.float32)))[0]


def test_own_npz_roundtrip(tmp_path):
    p = rand_params()
    f = W.save_npz(p, tmp_path / "w.npz")
    got, info = W.load_vgg16_blocks(f)
    assert info.format == "lnpstore-npz" and not info.verified and "check values differ" in info.detail
    assert info.sha256 == W.params_sha256(p) and info.source_sha256 == W.file_hash(f)
    for k in p:
        np.testing.assert_array_equal(got[k], p[k])


@pytest.mark.parametrize("layout", ["keras1", "keras2", "keras3"])
def test_keras_h5_layouts(tmp_path, layout):
    p = rand_params()
    f = tmp_path / "w.h5"
    with h5py.File(f, "w") as h:
        h.attrs["layer_names"] = [n.encode() for n, _, _ in W.LAYERS]
        for name, _, _ in W.LAYERS:
            k, b = p[f"{name}/kernel"], p[f"{name}/bias"]
            if layout == "keras1":  # the published notop file
                g = h.create_group(name)
                g.create_dataset(f"{name}_W_1:0", data=k)
                g.create_dataset(f"{name}_b_1:0", data=b)
            elif layout == "keras2":
                g = h.create_group(f"{name}/{name}")
                g.create_dataset("kernel:0", data=k)
                g.create_dataset("bias:0", data=b)
            else:
                g = h.create_group(f"layers/{name}/vars")
                g.create_dataset("0", data=k)
                g.create_dataset("1", data=b)
    got, info = W.load_vgg16_blocks(f)
    assert info.format == "keras-h5"
    for k in p:
        np.testing.assert_array_equal(got[k], p[k])
    # converted once and cached under the source's sha256
    cached = Path(W.cache_dir()) / f"vgg16_blocks1-3_from-{info.source_sha256[:16]}.npz"
    assert cached.is_file()
    again, info2 = W.load_vgg16_blocks(f)
    assert info2.sha256 == info.sha256


def test_hwio_bgr_convention_against_direct_convolution(tmp_path):
    """Keras layout: kernel[dy, dx, in, out] applied to BGR input, checked against numpy."""
    p = rand_params(3)
    got, _ = W.load_vgg16_blocks(W.save_npz(p, tmp_path / "w.npz"))
    x = np.random.default_rng(0).uniform(-100, 100, (9, 11, 3)).astype(np.float32)
    ref = conv_same_hwio(x, p["block1_conv1/kernel"], p["block1_conv1/bias"])
    np.testing.assert_allclose(first_layer(got, x), ref, rtol=1e-4, atol=1e-3)


def test_torchvision_npz_oihw_rgb(tmp_path):
    """torchvision state dict (OIHW, RGB, 0-1 normalised): converted activations equal torch's, interior."""
    rng = np.random.default_rng(5)
    sd = {}
    for name, cin, cout in W.LAYERS:
        i = W.TORCH_FEATURE_INDEX[name]
        sd[f"features.{i}.weight"] = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.1
        sd[f"features.{i}.bias"] = rng.standard_normal(cout).astype(np.float32) * 0.1
    sd["classifier.0.weight"] = np.zeros((2, 2), np.float32)  # extra keys are ignored
    f = tmp_path / "vgg16_torch.npz"
    np.savez(f, **sd)
    got, info = W.load_vgg16_blocks(f)
    assert info.format == "torchvision-npz" and not info.verified and info.input_order == "BGR"
    # an RGB 0-255 image, as torch would see it ...
    img_rgb = rng.uniform(0, 255, (10, 12, 3))
    t = (img_rgb / 255.0 - np.array(W.TORCH_MEAN_RGB)) / np.array(W.TORCH_STD_RGB)
    w_oihw = sd["features.0.weight"]
    ref = conv_same_hwio(t, w_oihw.transpose(2, 3, 1, 0), sd["features.0.bias"])
    # ... and the same image as the package feeds it: BGR, minus the caffe mean
    caffe_bgr = np.array((103.939, 116.779, 123.68))
    x_bgr = img_rgb[:, :, ::-1] - caffe_bgr
    ours = first_layer(got, x_bgr.astype(np.float32))
    np.testing.assert_allclose(ours[1:-1, 1:-1], ref[1:-1, 1:-1], rtol=1e-4, atol=1e-3)


def test_wrong_shapes_rejected(tmp_path):
    p = rand_params()
    p["block2_conv1/kernel"] = p["block2_conv1/kernel"].transpose(3, 2, 0, 1)  # OIHW by mistake
    with pytest.raises(LnpstoreError, match="block2_conv1/kernel.*expected"):
        W.load_vgg16_blocks(W.save_npz(p, tmp_path / "w.npz"))


def test_not_found_and_random(monkeypatch, caplog):
    with pytest.raises(WeightsNotFoundError, match="~/.keras/models/"):
        W.load_vgg16_blocks("imagenet")
    params, info = W.load_vgg16_blocks("random")
    assert info.source == "random" and not info.verified and "RANDOM" in caplog.text
    assert W.params_sha256(W.load_vgg16_blocks("random")[0]) == info.sha256  # fixed seed
    std = params["block3_conv1/kernel"].std()
    assert abs(std - np.sqrt(2 / (9 * 128))) < 0.01


def test_search_order(tmp_path, monkeypatch):
    keras = Path.home() / ".keras" / "models" / W.KERAS_FILENAME
    mine = W.cache_dir() / W.TEAM_NPZ_FILENAME
    W.save_npz(rand_params(1), mine)
    assert W.find_weights() == mine
    keras.parent.mkdir(parents=True)
    keras.write_bytes(b"x")
    assert W.find_weights() == keras
    env = W.save_npz(rand_params(2), tmp_path / "env.npz")
    monkeypatch.setenv(W.ENV_VAR, str(env))
    assert W.find_weights() == env
    assert W.find_weights(mine) == mine


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on localhost serving ``tmp_path / "srv"``; yields (folder, base URL, hits)."""
    root = tmp_path / "srv"
    root.mkdir()
    hits: list[str] = []

    class Handler(_Quiet):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_fetch_checks_the_hash_and_caches(served, tmp_path):
    root, base, hits = served
    (root / "remote.h5").write_bytes(b"pretend weights" * 1000)
    good = "md5:" + hashlib.md5((root / "remote.h5").read_bytes()).hexdigest()
    out = W.fetch_weights(f"{base}/remote.h5", tmp_path / "dl", known_hash=good, show_progress=True)
    assert out == tmp_path / "dl" / "remote.h5" and out.read_bytes() == b"pretend weights" * 1000
    again = W.fetch_weights(f"{base}/remote.h5", tmp_path / "dl", known_hash=good)
    assert again == out and len(hits) == 1  # a cached file with the right hash is not fetched again
    # a mismatch: retried, then an error naming the hash; nothing left at the destination
    with pytest.raises(WeightsNotFoundError, match="(?i)hash"):
        W.fetch_weights(f"{base}/remote.h5", tmp_path / "dl2", known_hash="md5:" + "0" * 32, retries=1)
    assert len(hits) == 3
    assert not (tmp_path / "dl2" / "remote.h5").exists()
    # Keras' published md5 for the default file name: this file is not Keras' file
    (root / W.KERAS_FILENAME).write_bytes(b"not vgg")
    with pytest.raises(WeightsNotFoundError, match=W.KERAS_NOTOP_MD5):
        W.download_keras_weights(f"{base}/{W.KERAS_FILENAME}", tmp_path / "dl3", md5=W.KERAS_NOTOP_MD5)
    assert not (tmp_path / "dl3" / W.KERAS_FILENAME).exists()
    with pytest.raises(WeightsNotFoundError, match="no published hash"):
        W.fetch_weights(f"{base}/remote.h5", tmp_path / "dl4")


def test_no_network_fails_fast_with_the_message(tmp_path):
    """Neither a copy nor a reachable server: an error naming both, and no file written."""
    with pytest.raises(WeightsNotFoundError) as err:
        W.ensure_weights("imagenet")
    msg = str(err.value)
    assert msg.startswith(
        "no copy of the ImageNet VGG16 weights found, and fetching them failed: cannot download"
    )
    assert "--weights random" in msg
    assert not W.cache_dir().exists() or not any(W.cache_dir().iterdir())
    assert W.ensure_weights("random") is None


def test_fetching_turned_off(monkeypatch):
    monkeypatch.setenv(W.URL_ENV_VAR, "off")
    with pytest.raises(WeightsNotFoundError, match="no copy of the ImageNet"):
        W.ensure_weights("imagenet")


@pytest.mark.skipif(not SHARED.is_file(), reason=f"the team's ImageNet weights are not at {SHARED}")
def test_first_use_fetches_verifies_and_caches(served, monkeypatch):
    """A mirror of the team's npz: fetched on first use (sha256 as published), verified, then found."""
    root, base, hits = served
    shutil.copy(SHARED, root / W.TEAM_NPZ_FILENAME)
    monkeypatch.setenv(W.URL_ENV_VAR, f"{base}/{W.TEAM_NPZ_FILENAME}")
    params, info = W.load_vgg16_blocks("imagenet")
    assert info.verified and info.source_sha256 == W.TEAM_NPZ_SHA256
    assert Path(info.source) == W.cache_dir() / W.TEAM_NPZ_FILENAME and len(hits) == 1
    W.load_vgg16_blocks("imagenet")
    assert len(hits) == 1  # found in the cache the second time


@pytest.mark.skipif(not SHARED.is_file(), reason=f"the team's ImageNet weights are not at {SHARED}")
def test_real_imagenet_weights_verified():
    params, info = W.load_vgg16_blocks(SHARED)
    assert info.verified, info.detail
    assert info.source_sha256 == W.TEAM_NPZ_SHA256
    assert W.check_values(params) == []
