"""Shared fixtures for the fast unit tests.

Everything here is tiny and generated in the test: a small model config, sine
tones and noise written to audio files, PIL images, and a random-weight
voice-control checkpoint. No network, no ``../shared`` data: the tests pass in a
bare clone.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything can import gradio
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np
import pytest
import torch

from mbm.config import EncoderConfig, FusionConfig, ImageConfig, ModelConfig

TINY_IMAGE_SIZE = 32  # 3 CNN stages halve it 3 times -> a 4x4 grid = 16 image tokens
TINY_HEADS = {"device": 7, "word": 20}


def tiny_model_config(vocab_size: int = 20, heads: dict[str, int] | None = None,
                      pooling: str = "tokens") -> ModelConfig:
    """A ~10K-parameter model with the real preprocessing (16 kHz, 40 mels, 1 s) and 32 px images."""
    return ModelConfig(heads=dict(heads or TINY_HEADS),
                       encoder=EncoderConfig(dim=16, image_channels=(8, 8, 8), audio_channels=(8, 8, 8),
                                             vocab_size=vocab_size),
                       fusion=FusionConfig(pooling=pooling),
                       image=ImageConfig(size=TINY_IMAGE_SIZE))


@pytest.fixture
def tiny_config():
    """Factory: ``tiny_config(vocab_size=20, heads=None) -> ModelConfig``."""
    return tiny_model_config


@pytest.fixture(params=["tokens", "evidence"])  # the poolings of the shipped models
def tiny_model(request):
    """A seeded tiny MultimodalModel in train mode, once per fusion pooling (mbm.fusion)."""
    from mbm.model import MultimodalModel

    torch.manual_seed(0)
    return MultimodalModel(tiny_model_config(pooling=request.param))


@pytest.fixture
def tiny_inputs():
    """A batch of 3 with every modality; the text rows have 4, 1 and 2 real tokens (0 = padding)."""
    torch.manual_seed(1)
    cfg = tiny_model_config()
    return {
        "audio": torch.rand(3, cfg.audio.n_mels, cfg.audio.num_frames),  # (B, n_mels, F) in [0, 1]
        "image": torch.rand(3, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) - 0.5,  # (B, 3, S, S) in [-0.5, 0.5]
        "text": torch.tensor([[3, 4, 5, 6], [7, 0, 0, 0], [8, 9, 0, 0]]),  # (B, L)
    }


# --- generated audio -----------------------------------------------------------------------------

def tone(sample_rate: int, seconds: float, freq: float = 440.0, amp: float = 0.3, channels: int = 1,
         seed: int = 0) -> np.ndarray:
    """A sine tone with a little noise, float32 of shape (frames,) or (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c / (channels - 1)) for c in range(channels)], axis=1)
    return x.astype(np.float32)


AUDIO_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
                 "mp3": ("MP3", "MPEG_LAYER_III")}


def audio_bytes(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encode samples with soundfile into ``fmt`` (wav, flac, ogg, mp3) in memory."""
    import soundfile as sf

    major, subtype = AUDIO_FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format=major, subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def make_tone():
    """``make_tone(sample_rate, seconds, freq=440, amp=0.3, channels=1, seed=0) -> ndarray``."""
    return tone


@pytest.fixture
def encode_audio():
    """``encode_audio(samples, sample_rate, fmt="wav") -> bytes`` (wav, flac, ogg, mp3)."""
    return audio_bytes


@pytest.fixture
def write_audio(tmp_path):
    """Factory: ``write_audio(samples, sample_rate, fmt="wav", name=None) -> Path`` in tmp_path."""
    def write(samples: np.ndarray, sample_rate: int, fmt: str = "wav", name: str | None = None) -> Path:
        path = tmp_path / (name or f"clip_{sample_rate}.{fmt}")
        path.write_bytes(audio_bytes(samples, sample_rate, fmt))
        return path
    return write


# --- generated images ----------------------------------------------------------------------------

def textured_image(width: int = 48, height: int = 40, mode: str = "RGB", seed: int = 0):
    """A PIL image with random texture (never a flat colour) in the given mode."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rgb = Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8), "RGB")
    if mode == "I;16":
        img = Image.fromarray((rng.random((height, width)) * 65535).astype(np.uint16))  # mode I;16
        assert img.mode == "I;16", img.mode
        return img
    return rgb.convert(mode)


def image_bytes(img, fmt: str = "PNG", **save_args) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()


@pytest.fixture
def make_image():
    """``make_image(width=48, height=40, mode="RGB", seed=0) -> PIL.Image`` with random texture."""
    return textured_image


@pytest.fixture
def encode_image():
    """``encode_image(img, fmt="PNG", **save_args) -> bytes``."""
    return image_bytes


# --- a tiny voice-control checkpoint -------------------------------------------------------------

def build_voice_checkpoint(seed: int = 0):
    """A random-weight voice-control Checkpoint laid out exactly like ``mbm.train`` writes it."""
    from mbm.checkpoint import Checkpoint
    from mbm.model import MultimodalModel
    from mbm.preprocess import build_vocab
    from mbm.scenarios.voice_control.spec import ACTIONS, DEVICES, WORDS, action_index_matrix, training_vocabulary

    vocab = build_vocab(training_vocabulary())
    cfg = tiny_model_config(vocab_size=len(vocab), heads={"device": len(DEVICES), "word": len(WORDS)})
    torch.manual_seed(seed)
    model = MultimodalModel(cfg)
    with torch.no_grad():  # a non-zero query so attention is not uniform at init, as after training
        model.fusion.query.normal_()
    return Checkpoint(scenario="voice_control", config=cfg, labels={"device": list(DEVICES), "word": list(WORDS)},
                      vocab=vocab, extra={"actions": list(ACTIONS), "action_index": action_index_matrix()},
                      state_dict=model.state_dict())


@pytest.fixture(scope="session")
def voice_checkpoint_path(tmp_path_factory) -> Path:
    from mbm.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "voice_control.pt"
    save_checkpoint(build_voice_checkpoint(), path)
    return path


@pytest.fixture(scope="session")
def voice_predictor(voice_checkpoint_path):
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    return VoiceControlPredictor.from_checkpoint(voice_checkpoint_path)


# --- the app, for tests/test_app.py ----------------------------------------------------------------

@pytest.fixture(scope="session")
def generated_inputs(tmp_path_factory) -> dict[str, Path]:
    """Files a user could upload: a spoken-command-like tone, a small photo of a lamp (the shipped
    example, 96 x 80 PNG), a textured picture of no device, a text file named .jpg."""
    from PIL import Image

    from mbm.paths import VOICE_CONTROL_ASSETS

    folder = tmp_path_factory.mktemp("inputs")
    paths = {"audio": folder / "command.wav", "image": folder / "photo.png", "not_image": folder / "notes.jpg",
             "no_device": folder / "texture.png"}
    paths["audio"].write_bytes(audio_bytes(tone(16000, 1.0), 16000, "wav"))
    Image.open(VOICE_CONTROL_ASSETS / "lamp.jpg").convert("RGB").resize((96, 80)).save(paths["image"])
    paths["no_device"].write_bytes(image_bytes(textured_image(96, 80)))
    paths["not_image"].write_text("this is a text file, not a photo\n")
    return paths


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log_dir: Path, **env_vars: str):
    """``python app.py`` on a free local port with ``env_vars`` set; yields its URL, always stops it."""
    import signal
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", **env_vars)
    log = Path(log_dir) / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer on {url} within 180 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def app_gallery_dir(tmp_path_factory) -> Path:
    """The portrait gallery folder (``MBM_GALLERY_DIR``) of the ``app_url`` server: empty at the start."""
    return tmp_path_factory.mktemp("gallery")


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, app_gallery_dir):
    """``python app.py`` on a free local port, its gallery in a temporary folder; yields its URL."""
    with running_app(tmp_path_factory.mktemp("app"), MBM_GALLERY_DIR=str(app_gallery_dir)) as url:
        yield url


@pytest.fixture(scope="session")
def launch_app():
    """``launch_app(log_dir, **env) -> context manager yielding a URL``: another ``python app.py``."""
    return running_app


@pytest.fixture
def two_faces_png(tmp_path) -> Path:
    """Two committed Yale faces side by side in one photo (several-faces cases)."""
    from PIL import Image

    faces = ROOT / "assets" / "portrait" / "faces" / "yale"
    a = Image.open(faces / "subject01.sad.png").convert("RGB")
    b = Image.open(faces / "subject11.happy.png").convert("RGB")
    both = Image.new("RGB", (a.width + b.width, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    both.save(tmp_path / "two.png")
    return tmp_path / "two.png"
