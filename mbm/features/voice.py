"""Speaker embeddings: the speaker encoder of ``Resemblyzer`` (Resemble AI, Apache-2.0; a GE2E-trained 3-layer
LSTM on 40 mel bands, 256-d embedding). Its weights ship in ``checkpoints/speaker_encoder.pt`` (licence and
NOTICE beside it); the network is the small module below, so the package and its webrtcvad dependency are not
needed. Used by the portrait scenario and by the retrieval evaluation's voice check.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from mbm.features.face import package_file
from mbm.paths import CHECKPOINTS
from mbm.preprocess import InputError, mel_transform, read_audio
from mbm.safe_media import mono_at

VOICE_DIM = 256
VOICE_RATE = 16000
VOICE_FRAMES = 160  # frames per partial window (1.6 s), as the encoder was trained
MAX_VOICE_SECONDS = 8.0


class SpeakerEncoder(nn.Module):
    """Resemblyzer's speaker encoder: LSTM(40 -> 256, 3 layers) -> Linear -> ReLU -> L2 norm."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, VOICE_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:  # (B, frames, 40) -> (B, 256)
        _, (hidden, _) = self.lstm(mels)
        e = torch.relu(self.linear(hidden[-1]))
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)


# Resemblyzer 0.1.4's weights, only the tensors inference uses (Apache-2.0; checkpoints/speaker_encoder.NOTICE).
# Shipped in the repository because Resemblyzer's declared dependencies do not install on Python 3.11 and a
# Space installs only requirements.txt.
SPEAKER_ENCODER = CHECKPOINTS / "speaker_encoder.pt"


@lru_cache(maxsize=1)
def speaker_encoder() -> SpeakerEncoder:
    if SPEAKER_ENCODER.is_file():
        state = torch.load(SPEAKER_ENCODER, map_location="cpu", weights_only=True)
    else:  # a checkout without the shipped file: an installed Resemblyzer package has the same weights
        state = torch.load(package_file("resemblyzer", "pretrained.pt"), map_location="cpu",
                           weights_only=True)["model_state"]
    enc = SpeakerEncoder()
    enc.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return enc.eval()


def voice_waveform(source) -> np.ndarray:
    """A path / bytes / (rate, array) clip -> mono 16 kHz float32, volume-normalised, edges trimmed.

    Raises:
        InputError: empty, silent or undecodable audio.
    """
    mono = mono_at(*read_audio(source), VOICE_RATE, what="the voice clip")[: int(MAX_VOICE_SECONDS * VOICE_RATE)]
    frame = 320  # 20 ms
    n = len(mono) // frame
    if n == 0:
        raise InputError("the voice clip is too short; record at least half a second")
    rms = np.sqrt((mono[: n * frame].reshape(n, frame) ** 2).mean(1))
    if rms.max() < 1e-3:
        raise InputError("the voice clip is silent; record again closer to the microphone")
    loud = np.flatnonzero(rms > rms.max() * 0.05)
    mono = mono[loud[0] * frame:(loud[-1] + 1) * frame]
    target = 10 ** (-30 / 20)  # -30 dBFS, as the encoder was trained
    return (mono * target / max(float(np.sqrt((mono ** 2).mean())), 1e-6)).astype(np.float32)


def _mel(wave: np.ndarray) -> np.ndarray:
    mel = mel_transform(VOICE_RATE, n_fft=400, win=None, hop=160, n_mels=40, librosa_filters=True)
    with torch.no_grad():
        return mel(torch.from_numpy(wave)).numpy().T  # (frames, 40), power mel (not log), as the encoder expects


def embed_voices(waves: list[np.ndarray]) -> np.ndarray:
    """Waveforms (from :func:`voice_waveform`) -> (N, 256) L2-normalised speaker embeddings.

    Each clip is cut into 1.6 s windows (step 0.8 s, the last zero-padded); the
    window embeddings are averaged and re-normalised, in one batch.
    """
    if not waves:
        return np.zeros((0, VOICE_DIM), np.float32)
    windows, owner = [], []
    for i, w in enumerate(waves):
        mel = _mel(w)
        starts = range(0, max(1, len(mel) - VOICE_FRAMES // 2), VOICE_FRAMES // 2)
        for s in starts:
            part = mel[s:s + VOICE_FRAMES]
            if len(part) < VOICE_FRAMES:
                part = np.pad(part, ((0, VOICE_FRAMES - len(part)), (0, 0)))
            windows.append(part)
            owner.append(i)
    enc = speaker_encoder()
    with torch.no_grad():
        parts = torch.cat([enc(torch.from_numpy(np.stack(windows[j:j + 256])))
                           for j in range(0, len(windows), 256)]).numpy()
    out = np.zeros((len(waves), VOICE_DIM), np.float32)
    np.add.at(out, np.asarray(owner), parts)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-8)
