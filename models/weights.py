"""ImageNet weights of VGG16's convolutional blocks 1-3 (conv1_1 .. conv3_3): find, convert, verify.

The package's own layout (what every loader converts to, and what is cached) is a flat dict
``{"block{b}_conv{c}/kernel": (3, 3, in, out) float32 HWIO, "block{b}_conv{c}/bias": (out,)}`` for
the 7 layers in :data:`LAYERS`, with the input convention of Keras/caffe: channel order **BGR**, pixel
scale 0-255, mean subtracted.

Sources, in the order :func:`find_weights` searches them:

1. an explicit path argument;
2. the environment variable ``LNPSTORE_VGG16_WEIGHTS``;
3. ``~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (Keras' cache);
4. ``~/.cache/torch/hub/checkpoints/vgg16-397923af.pth`` (torchvision's cache; read only with torch);
5. ``shared/weights/`` beside the repository checkout (the team's copy; optional);
6. the package's own cache (:func:`cache_dir`: ``$LNPSTORE_CACHE_DIR`` or the platform's cache folder,
   ``~/.cache/lnpstore/`` on Linux).

When none holds a copy, :func:`ensure_weights` (called by ``load_vgg16_blocks("imagenet")``, ``lnpstore
run`` and ``lnpstore embed`` first thing) fetches Keras' notop file with pooch into the cache, checked
against Keras' published md5, with retries; ``$LNPSTORE_WEIGHTS_URL`` points elsewhere or, ``off``,
turns fetching off.

Accepted formats: a Keras HDF5 file (Keras 1/2 ``layer/weight_names`` groups, Keras 3 ``.weights.h5``
``layers/<name>/vars/0|1`` groups and full-model files with ``model_weights/``), a torchvision VGG16
state dict (``.pth`` with torch, or the same keys saved as ``.npz``: ``features.{i}.weight`` OIHW, RGB
input, 0-1 scale normalised by the ImageNet mean/std) and the package's ``.npz``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lnpstore.store.atomic import atomic_path
from lnpstore.store.errors import LnpstoreError, WeightsNotFoundError

log = logging.getLogger(__name__)

#: (name, input channels, output channels) of the 7 conv layers, in order.
LAYERS: tuple[tuple[str, int, int], ...] = (
    ("block1_conv1", 3, 64),
    ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128),
    ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256),
    ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256),
)
#: Index of each layer in torchvision's ``vgg16().features`` (ReLU and pooling layers in between).
TORCH_FEATURE_INDEX: dict[str, int] = dict(
    zip([n for n, _, _ in LAYERS], (0, 2, 5, 7, 10, 12, 14), strict=True)
)
#: torchvision's input normalisation (RGB, on a 0-1 scale).
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

KERAS_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + KERAS_FILENAME
#: md5 of the notop file as published by Keras (``keras/src/applications/vgg16.py``, ``file_hash`` of
#: ``WEIGHTS_PATH_NO_TOP``; checked against the keras 3.15.1 wheel). Keras treats a 32-hex-digit
#: ``file_hash`` as md5 and a 64-digit one as sha256.
KERAS_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
TORCH_FILENAME = "vgg16-397923af.pth"  # torchvision: the 8 hex digits are a sha256 prefix
TEAM_NPZ_FILENAME = "vgg16_imagenet_blocks1-3.npz"
TEAM_NPZ_SHA256 = "796554e811b09158b65e3133fbf0f5d8e5c4f941d7eedf1616845ccec2df1564"
#: The published hash of each file that can be fetched, by file name (pooch's ``algorithm:hex``).
PUBLISHED_HASHES: dict[str, str] = {
    KERAS_FILENAME: f"md5:{KERAS_NOTOP_MD5}",
    TEAM_NPZ_FILENAME: f"sha256:{TEAM_NPZ_SHA256}",
}
ENV_VAR = "LNPSTORE_VGG16_WEIGHTS"
CACHE_ENV_VAR = "LNPSTORE_CACHE_DIR"
#: Overrides where missing weights are fetched from; ``off`` turns fetching off.
URL_ENV_VAR = "LNPSTORE_WEIGHTS_URL"
#: Seconds to connect (name lookup included) and between two reads of a download.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
#: More attempts after a failed download (pooch waits 1 s, 2 s, ... in between).
DOWNLOAD_RETRIES = 2
RANDOM_SEED = 0

#: Published values of the original (caffe/Keras) ImageNet weights; see ../shared/README.md.
CHECK_VALUES: dict[tuple[str, tuple[int, ...]], float] = {
    ("block1_conv1/kernel", (0, 0, 0, 0)): 0.42947057,
    ("block1_conv1/bias", (25,)): 0.7446502,
    ("block1_conv2/kernel", (2, 2, 63, 63)): 0.016082443,
    ("block2_conv1/bias", (1,)): 0.06440781,
    ("block3_conv1/kernel", (0, 0, 0, 0)): 0.002486315,
    ("block3_conv3/bias", (0,)): 0.035415243,
}

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class WeightsInfo:
    """What the base's weights are and where they came from; stored with every model (JSON).

    ``sha256`` is over the converted arrays (names, shapes, float32 bytes in :data:`LAYERS` order),
    so the same weights get the same value whatever file they came from. ``verified`` is True only
    when the names, shapes and all :data:`CHECK_VALUES` match the ImageNet weights of Keras/caffe.
    """

    source: str
    format: str
    sha256: str
    verified: bool
    source_sha256: str | None = None
    input_order: str = "BGR"
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """``{"block1_conv1/kernel": (3, 3, 3, 64), ...}`` for the package layout."""
    out: dict[str, tuple[int, ...]] = {}
    for name, cin, cout in LAYERS:
        out[f"{name}/kernel"] = (3, 3, cin, cout)
        out[f"{name}/bias"] = (cout,)
    return out


def params_sha256(params: Params) -> str:
    """sha256 over names, shapes and float32 bytes, in :data:`LAYERS` order."""
    h = hashlib.sha256()
    for key in expected_shapes():
        a = np.ascontiguousarray(params[key], dtype="<f4")
        h.update(key.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_structure(params: Mapping[str, np.ndarray], source: str) -> None:
    """Raise when names or shapes differ from :func:`expected_shapes`."""
    for key, shape in expected_shapes().items():
        if key not in params:
            raise LnpstoreError(
                f"VGG16 weights from {source}: no array `{key}`; found {sorted(params)[:8]}..."
            )
        if tuple(params[key].shape) != shape:
            raise LnpstoreError(
                f"VGG16 weights from {source}: `{key}` has shape {tuple(params[key].shape)}, expected {shape} "
                "(HWIO kernel). Hint: is this VGG16 in TF/Keras dim ordering?"
            )


def check_values(params: Mapping[str, np.ndarray]) -> list[str]:
    """The :data:`CHECK_VALUES` that do not match (empty when the weights are ImageNet's)."""
    bad = []
    for (key, idx), want in CHECK_VALUES.items():
        got = float(params[key][idx])
        if not np.isclose(got, want, rtol=1e-6, atol=1e-8):
            bad.append(f"{key}{list(idx)} = {got:.8g}, published {want:.8g}")
    return bad


# -- readers --------------------------------------------------------------------------------------
def read_keras_h5(path: Path) -> Params:
    """Read the 7 layers from a Keras HDF5 weights file (Keras 1/2 or Keras 3 layout), HWIO.

    Every dataset under a group named like the layer counts: the 4-D one is the kernel and the 1-D one
    the bias, which covers ``block1_conv1/block1_conv1_W_1:0`` (Keras 1, the published file),
    ``block1_conv1/block1_conv1/kernel:0`` (Keras 2), ``layers/block1_conv1/vars/0`` (Keras 3) and
    ``model_weights/...`` (a whole saved model).
    """
    import h5py

    found: dict[str, dict[str, np.ndarray]] = {}
    names = {n for n, _, _ in LAYERS}

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        parts = name.split("/")
        layer = next((p for p in parts if p in names), None)
        if layer is None:
            return
        arr = np.asarray(obj[()], dtype=np.float32)
        kind = {4: "kernel", 1: "bias"}.get(arr.ndim)
        if kind is None:
            return
        if kind in found.setdefault(layer, {}):
            raise LnpstoreError(f"{path}: two {kind} arrays for layer `{layer}` (second at `{name}`)")
        found[layer][kind] = arr

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return {f"{layer}/{kind}": a for layer, d in found.items() for kind, a in d.items()}


def convert_torchvision(state: Mapping[str, np.ndarray]) -> Params:
    """torchvision VGG16 ``features.{i}.weight`` (OIHW, RGB, 0-1 normalised input) -> package layout.

    Kernels are transposed OIHW -> HWIO. The first layer's input channels are reversed (RGB -> BGR) and
    scaled by 1 / (255 std) so that it takes 0-255 input; torchvision's mean (0-1 scale) is folded into
    the first bias, assuming caffe-style input (0-255 minus a mean near the ImageNet mean). The fold is
    exact away from the image border; at the border zero padding differs (torch pads after
    normalisation). These are torchvision's own weights (a different training of VGG16 than
    Keras/caffe), so the ImageNet check values do not apply to them.
    """
    out: Params = {}
    for name, cin, cout in LAYERS:
        i = TORCH_FEATURE_INDEX[name]
        w = np.asarray(state[f"features.{i}.weight"], dtype=np.float32)
        b = np.asarray(state[f"features.{i}.bias"], dtype=np.float32)
        if w.shape != (cout, cin, 3, 3):
            raise LnpstoreError(
                f"torchvision features.{i}.weight has shape {w.shape}, expected {(cout, cin, 3, 3)}"
            )
        k = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if name == "block1_conv1":
            std = np.asarray(TORCH_STD_RGB, np.float32)
            mean = np.asarray(TORCH_MEAN_RGB, np.float32)
            # torch input t_c = (x_c / 255 - mean_c) / std_c ; with x in 0-255 (caffe mean subtracted
            # by the caller, whose mean ~ 255 * mean_c) t_c ~ x'_c / (255 std_c) + (mu_c/255 - mean_c)/std_c
            caffe_mean_rgb = np.asarray((123.68, 116.779, 103.939), np.float32)
            offset = (caffe_mean_rgb / 255.0 - mean) / std  # per RGB channel, in torch units
            b = b + np.einsum("hwio,i->o", k, offset)
            k = k / (255.0 * std)[None, None, :, None]
            k = k[:, :, ::-1, :]  # RGB -> BGR input slots
        out[f"{name}/kernel"] = np.ascontiguousarray(k, dtype=np.float32)
        out[f"{name}/bias"] = np.ascontiguousarray(b, dtype=np.float32)
    return out


def _read_torch_pth(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # noqa: PLC0415 - optional
    except ModuleNotFoundError:
        raise LnpstoreError(
            f"{path} is a torch checkpoint but torch is not installed. Hint: install torch, or save the "
            "state dict as .npz (`np.savez(out, **{k: v.numpy() for k, v in sd.items()})`)"
        ) from None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def read_any(path: Path) -> tuple[Params, str]:
    """Read a weights file in any accepted format; returns (package-layout params, format name)."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".keras"):
        return read_keras_h5(path), "keras-h5"
    if suffix in (".pth", ".pt"):
        return convert_torchvision(_read_torch_pth(path)), "torchvision-pth"
    if suffix == ".npz":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if "features.0.weight" in arrays:
            return convert_torchvision(arrays), "torchvision-npz"
        return {
            k: np.asarray(v, np.float32) for k, v in arrays.items() if k in expected_shapes()
        }, "lnpstore-npz"
    raise LnpstoreError(f"{path}: unknown weights format `{suffix}`; expected .h5, .pth or .npz")


# -- search ---------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The package's own cache: ``$LNPSTORE_CACHE_DIR``, or where the platform keeps caches
    (``pooch.os_cache("lnpstore")``: ``~/.cache/lnpstore`` on Linux, ``~/Library/Caches/lnpstore`` on
    macOS, ``%LOCALAPPDATA%\\lnpstore\\Cache`` on Windows)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("lnpstore"))


def search_locations() -> list[Path]:
    """Candidate files in search order (after an explicit path and the env var)."""
    home = Path.home()
    locs = [
        home / ".keras" / "models" / KERAS_FILENAME,
        home / ".cache" / "torch" / "hub" / "checkpoints" / TORCH_FILENAME,
    ]
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
    if shared.is_dir():
        locs.append(shared / TEAM_NPZ_FILENAME)
        locs.append(shared / KERAS_FILENAME)
    cd = cache_dir()
    locs += [cd / TEAM_NPZ_FILENAME, cd / KERAS_FILENAME]
    return locs


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file to use, by the search order in the module docstring.

    Raises :class:`WeightsNotFoundError` (saying where to put a copy) when there is none. A torch
    ``.pth`` is skipped when torch is not installed.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"VGG16 weights file {p} does not exist")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"${ENV_VAR} points to {p}, which does not exist")
        return p
    tried = []
    for p in search_locations():
        tried.append(str(p))
        if p.is_file():
            if p.suffix == ".pth":
                try:
                    import torch  # noqa: F401
                except ModuleNotFoundError:
                    log.info("skipping %s: torch is not installed", p)
                    continue
            return p
    raise WeightsNotFoundError(_not_found_message(tried))


def _not_found_message(tried: list[str], fetch_error: str | None = None) -> str:
    """What to say when no copy was found (and, when given, why fetching one failed)."""
    head = "no copy of the ImageNet VGG16 weights found"
    if fetch_error:
        head += f", and fetching them failed: {fetch_error}"
    return (
        f"{head}. Looked at {', '.join(tried)}. Hint: with a network they are fetched on first use; "
        f"otherwise put Keras' {KERAS_FILENAME} (from {KERAS_URL}) in ~/.keras/models/ or {cache_dir()}/, "
        f"or set ${ENV_VAR} to a .h5/.pth/.npz file, or pass --weights random (weights='random') for an "
        "untrained base"
    )


# -- loading --------------------------------------------------------------------------------------
def random_params(seed: int = RANDOM_SEED) -> Params:
    """He-normal kernels (std sqrt(2 / fan_in)), zero biases; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out: Params = {}
    for name, cin, cout in LAYERS:
        out[f"{name}/kernel"] = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2.0 / (9 * cin))).astype(
            np.float32
        )
        out[f"{name}/bias"] = np.zeros(cout, np.float32)
    return out


def save_npz(params: Params, dest: Path) -> Path:
    """Write params atomically as the package's ``.npz``."""
    with atomic_path(dest, keep_suffix=True) as tmp:
        # numpy's stub lets a ** mapping fill savez's allow_pickle: bool
        np.savez(tmp, **{k: params[k] for k in expected_shapes()})  # type: ignore[arg-type]
    return dest


def load_vgg16_blocks(weights: str | os.PathLike = "imagenet") -> tuple[Params, WeightsInfo]:
    """The 7 conv layers' weights in the package layout, and what they are.

    ``weights``: ``"imagenet"`` (search, see :func:`find_weights`), ``"random"`` (fixed-seed He init,
    logged as a warning) or a path. A file in another format is converted once and the result cached in
    :func:`cache_dir` under the source file's sha256, so later loads read the cached ``.npz``.
    """
    if str(weights) == "random":
        params = random_params()
        log.warning(
            "VGG16 base uses RANDOM weights (He init, seed %d), not ImageNet: features will not match the "
            "study. Pass weights='imagenet' or a path for the real base.",
            RANDOM_SEED,
        )
        info = WeightsInfo(
            "random",
            f"random-he-normal-seed{RANDOM_SEED}",
            params_sha256(params),
            False,
            None,
            "BGR",
            "untrained base",
        )
        return params, info
    path = ensure_weights(weights)
    assert path is not None
    src_sha = file_hash(path)
    cached = cache_dir() / f"vgg16_blocks1-3_from-{src_sha[:16]}.npz"
    fmt: str
    if cached.is_file() and path.suffix.lower() != ".npz":
        params, _ = read_any(cached)
        fmt = _format_of(path)
        log.info("VGG16 weights: %s (converted copy %s)", path, cached)
    else:
        params, fmt = read_any(path)
        check_structure(params, str(path))
        if fmt != "lnpstore-npz":
            try:
                save_npz(params, cached)
            except OSError as exc:  # a read-only home is not an error
                log.info("could not cache converted weights at %s: %s", cached, exc)
    check_structure(params, str(path))
    bad = check_values(params)
    detail = "names, shapes and ImageNet check values match"
    if fmt.startswith("torchvision"):
        detail = (
            "torchvision's VGG16 (its own training): names and shapes checked; ImageNet check values differ"
        )
    elif bad:
        detail = "check values differ: " + "; ".join(bad)
        log.warning("VGG16 weights at %s are not the ImageNet weights: %s", path, detail)
    if src_sha == TEAM_NPZ_SHA256:
        detail += " (the team's npz, sha256 as published)"
    info = WeightsInfo(str(path), fmt, params_sha256(params), not bad, src_sha, "BGR", detail)
    return params, info


def _format_of(path: Path) -> str:
    s = path.suffix.lower()
    return {".h5": "keras-h5", ".hdf5": "keras-h5", ".pth": "torchvision-pth", ".pt": "torchvision-pth"}.get(
        s, "npz"
    )


def weights_url() -> str | None:
    """Where a missing ImageNet copy is fetched from: ``$LNPSTORE_WEIGHTS_URL`` when set (``off``
    or empty: never fetch), otherwise Keras' official location :data:`KERAS_URL`."""
    env = os.environ.get(URL_ENV_VAR)
    if env is None:
        return KERAS_URL
    return None if env.strip().lower() in ("", "off", "none", "0") else env.strip()


def _check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`OSError` unless the URL's host resolves and accepts a connection within
    ``timeout_s`` (name lookup included, which socket timeouts do not cover)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s + 0.5)
    if not result:
        raise OSError(f"no answer from {parts.hostname}:{port} within {timeout_s:.0f} s")
    if result[0] is not None:
        raise OSError(f"cannot reach {parts.hostname}:{port}: {result[0]}")


def fetch_weights(
    url: str | None = None,
    dest: str | os.PathLike | None = None,
    *,
    known_hash: str | None = "published",
    retries: int = DOWNLOAD_RETRIES,
    show_progress: bool = True,
) -> Path:
    """Download a weights file with pooch: a progress bar, the hash checked, ``retries`` more attempts
    on a network error or a mismatch, the file written only when its hash matches.

    ``url``: default :func:`weights_url`; its file name is kept. ``known_hash``: ``"md5:..."`` or
    ``"sha256:..."``, None (no check) or ``"published"``: :data:`PUBLISHED_HASHES` for the URL's file
    name (Keras' notop ``.h5``, or the team's ``.npz`` on a mirror). ``dest``: a file (with a suffix)
    or a folder (default :func:`cache_dir`, where :func:`find_weights` looks). A file already there with the right hash is
    not fetched again. Fails within seconds when the host cannot be reached (checked before
    downloading). Raises :class:`WeightsNotFoundError`, saying why.
    """
    import pooch
    import requests

    from lnpstore.runtime.progress import bar, quiet

    url = url or weights_url()
    if url is None:
        raise WeightsNotFoundError(
            f"downloads are turned off (${URL_ENV_VAR}={os.environ.get(URL_ENV_VAR)!r})"
        )
    name = Path(urllib.parse.urlsplit(url).path).name or KERAS_FILENAME
    if known_hash == "published":
        known_hash = PUBLISHED_HASHES.get(name)
        if known_hash is None:
            raise WeightsNotFoundError(
                f"no published hash for {name!r} (from {url}); known files: {', '.join(PUBLISHED_HASHES)}. "
                "Hint: pass known_hash='sha256:...', or download it yourself and pass its path"
            )
    d = Path(dest).expanduser() if dest is not None else cache_dir()
    target = d / name if (d.is_dir() or not d.suffix) else d
    try:
        _check_reachable(url)
    except OSError as exc:
        raise WeightsNotFoundError(f"cannot download {url}: {exc}") from None
    show_progress = show_progress and not quiet()  # a disabled bar has no truth value for pooch
    progressbar = bar(desc=f"download {target.name}", unit="B", unit_scale=True) if show_progress else False
    downloader = pooch.HTTPDownloader(
        progressbar=progressbar,
        timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    )
    fetcher = pooch.create(
        path=target.parent,
        base_url="",
        registry={target.name: known_hash},
        urls={target.name: url},
        retry_if_failed=retries,
    )
    plog = pooch.get_logger()
    level = plog.level
    plog.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    log.info("downloading %s -> %s", url, target)
    try:
        return Path(fetcher.fetch(target.name, downloader=downloader))
    except ValueError as exc:  # pooch: hash mismatch (the file is discarded)
        raise WeightsNotFoundError(f"download from {url}: {exc}; file discarded") from None
    except (requests.RequestException, OSError) as exc:
        raise WeightsNotFoundError(
            f"download from {url} failed after {1 + retries} attempt(s): {exc}"
        ) from None
    finally:
        plog.setLevel(level)


def ensure_weights(weights: str | os.PathLike = "imagenet", *, show_progress: bool = True) -> Path | None:
    """The weights file a run will use, fetched on first use; None for ``"random"``.

    For ``"imagenet"``: :func:`find_weights`, else :func:`fetch_weights` into :func:`cache_dir`
    (Keras' notop file, md5 checked). Called by ``lnpstore run`` and ``lnpstore embed`` before any
    other work, so a machine with neither a copy nor a network stops within seconds with a
    :class:`WeightsNotFoundError` that says what to do.
    """
    if str(weights) == "random":
        return None
    if str(weights) != "imagenet":
        return find_weights(weights)
    try:
        return find_weights()
    except WeightsNotFoundError:
        url = weights_url()
        if url is None:
            raise
        try:
            return fetch_weights(url, show_progress=show_progress)
        except WeightsNotFoundError as failed:
            tried = [str(p) for p in search_locations()]
            raise WeightsNotFoundError(_not_found_message(tried, str(failed))) from None


def download_keras_weights(
    url: str = KERAS_URL, dest: str | os.PathLike | None = None, *, md5: str | None = KERAS_NOTOP_MD5
) -> Path:
    """Download Keras' notop VGG16 file and check its md5 (:func:`fetch_weights` with ``md5``)."""
    d = Path(dest) if dest is not None else cache_dir()
    target = d / KERAS_FILENAME if (d.is_dir() or not d.suffix) else d
    return fetch_weights(url, target, known_hash=f"md5:{md5}" if md5 else None)
