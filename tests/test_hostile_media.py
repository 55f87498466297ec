"""Hostile files cost a bounded amount and never read server files.

1. An HLS playlist (or FFmpeg concat list, or a file: reference) uploaded as "audio" made the FFmpeg
   fallback open the server file it named. Now the container is sniffed from magic bytes, only an
   allow-list is decoded, FFmpeg reads stdin only, and references are refused with a clear message.
2. A flat 10000x10000 PNG (315 KB) cost ~950 MB, a 16-bit one +3 GB (float64 copies). Now the pixel
   count is checked before decoding and high-depth images are converted without float64 copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mbm.config import ImageConfig
from mbm.errors import InputError
from mbm.preprocess import read_audio, read_image
from mbm.safe_media import ffmpeg_command, sniff_audio

ROOT = Path(__file__).resolve().parent.parent
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="FFmpeg not installed")


@pytest.fixture
def server_wav(tmp_path, write_audio, make_tone):
    """A sound file elsewhere on the 'server' that a playlist could name (MP3: FFmpeg's HLS reads it)."""
    wav = write_audio(make_tone(16000, 1.0, freq=300), 16000, "wav", name="secret.wav")
    mp3 = tmp_path / "secret.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), str(mp3)], check=True)
    return mp3


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["hls", "hls_file_url", "concat", "file_ref", "pls"])
def test_playlists_and_references_are_refused_not_followed(tmp_path, server_wav, kind):
    text = {"hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{server_wav}\n#EXT-X-ENDLIST\n",
            "hls_file_url": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1,\nfile:{server_wav}\n#EXT-X-ENDLIST\n",
            "concat": f"ffconcat version 1.0\nfile '{server_wav}'\n",
            "file_ref": f"file:{server_wav}\n",
            "pls": f"[playlist]\nFile1={server_wav}\nNumberOfEntries=1\n"}[kind]
    upload = tmp_path / "p.wav"  # named like a sound file, as an upload would be
    upload.write_text(text)
    with pytest.raises(InputError, match="playlist") as e:  # before: the answer was secret.wav's samples
        read_audio(str(upload))
    assert str(server_wav) not in str(e.value)
    with pytest.raises(InputError, match="playlist"):
        read_audio(upload.read_bytes())


@needs_ffmpeg
def test_ffmpeg_gets_the_bytes_on_stdin_with_only_the_pipe_protocol(tmp_path, write_audio, make_tone,
                                                                    monkeypatch):
    wav = write_audio(make_tone(16000, 1.0, freq=500), 16000, "wav")
    webm = tmp_path / "clip.bin"  # the name says nothing; the magic bytes do
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "libopus", "-f", "webm",
                    str(webm)], check=True)
    calls = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        calls.append((list(cmd), kwargs))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    samples, rate = read_audio(str(webm))
    assert rate == 16000 and 0.9 * 16000 < len(samples) < 1.1 * 16000
    (cmd, kwargs), = calls
    assert cmd[cmd.index("-i") + 1] == "pipe:0" and str(webm) not in cmd
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "pipe"
    assert cmd[cmd.index("-i") - 2:cmd.index("-i")] == ["-f", "matroska"]  # explicit demuxer
    assert kwargs["input"][:4] == b"\x1aE\xdf\xa3"


def test_the_ffmpeg_command_never_names_a_file():
    for demuxer in ("matroska", "mov", "mp3"):
        cmd = ffmpeg_command(demuxer)
        assert "pipe:0" in cmd and "-protocol_whitelist" in cmd and not any("/" in c for c in cmd)


@pytest.mark.parametrize("head,kind", [(b"RIFF\0\0\0\0WAVEfmt ", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"),
                                       (b"ID3\x04", "mp3"), (b"\xff\xfb\x90", "mp3"), (b"\x1aE\xdf\xa3", "matroska"),
                                       (b"\0\0\0\x20ftypM4A ", "mp4"), (b"#EXTM3U\n", None), (b"ffconcat", None),
                                       (b"<?xml version", None), (b"GIF89a", None)])
def test_audio_containers_are_recognised_from_magic_bytes(head, kind):
    assert sniff_audio(head + bytes(16)) == kind


def test_oversized_audio_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.wav"
    with open(big, "wb") as f:
        f.truncate(30 * 1024 * 1024)  # sparse: 30 MB on paper
    with pytest.raises(InputError, match="limit"):
        read_audio(str(big))


# --- images ------------------------------------------------------------------------------------------

PEAK = textwrap.dedent("""
    import resource, sys
    from mbm.config import ImageConfig
    from mbm.errors import InputError
    from mbm.preprocess import read_image
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        img = read_image(sys.argv[1], ImageConfig(size=256))
        outcome = f"ok {img.width}x{img.height}"
    except InputError as e:
        outcome = f"refused {e}"
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024, outcome)
""")


def _peak_mb(path: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", PEAK, str(path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    mb, outcome = proc.stdout.strip().split(" ", 1)
    return int(mb), outcome


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    Image.new("L", (10_000, 10_000), 200).save(folder / "flat.png", optimize=False)  # ~100 KB
    Image.new("I;16", (10_000, 10_000), 40_000).save(folder / "flat16.png")
    grad = Image.fromarray(np.tile(np.linspace(0, 65535, 6000).astype(np.uint16), (4000, 1)))
    grad.save(folder / "grad16_24mp.png")  # 24 MP, under the decode bound: decoded, cheaply
    return folder


def test_10000x10000_png_is_refused_before_decoding(bombs):
    assert (bombs / "flat.png").stat().st_size < 1_000_000
    mb, outcome = _peak_mb(bombs / "flat.png")
    assert outcome.startswith("refused") and "too large" in outcome, outcome  # before: decoded, ~950 MB
    assert mb < 60, f"refusing cost {mb} MB"


def test_16bit_10000x10000_png_is_refused_before_decoding(bombs):
    mb, outcome = _peak_mb(bombs / "flat16.png")
    assert outcome.startswith("refused") and "too large" in outcome, outcome
    assert mb < 60, f"refusing cost {mb} MB"


def test_16bit_png_under_the_bound_is_converted_without_float64_copies(bombs):
    mb, outcome = _peak_mb(bombs / "grad16_24mp.png")
    assert outcome.startswith("ok"), outcome
    w, h = map(int, outcome.split()[1].split("x"))
    assert w * h <= 4_000_000  # shrunk early to the working size
    # 24 MP x 2 bytes decoded + a uint16 copy + the uint8 result ~ 130 MB; float64 copies cost > 500 MB.
    assert mb < 300, f"16-bit conversion cost {mb} MB"


def test_float64_array_is_converted_in_float32_blocks():
    arr = np.linspace(-1, 1, 300 * 200 * 3).reshape(300, 200, 3)  # float64
    img = read_image(arr, ImageConfig(size=32))
    pixels = np.asarray(img)
    assert pixels.dtype == np.uint8 and pixels.min() == 0 and pixels.max() == 255


def test_huge_array_is_refused():
    arr = np.zeros((1, 1), np.uint8)
    big = np.lib.stride_tricks.as_strided(arr, shape=(10_000, 10_000), strides=(0, 0))  # no memory
    with pytest.raises(InputError, match="too large"):
        read_image(big, ImageConfig(size=32))


def test_large_jpeg_is_still_accepted_at_reduced_size(encode_image):
    gradient = np.tile(np.linspace(0, 255, 8000).astype(np.uint8), (6000, 1))  # 48 MP camera photo
    data = encode_image(Image.fromarray(gradient), "JPEG", quality=30)
    img = read_image(data, ImageConfig(size=256))
    assert img.width * img.height <= 4_000_000
