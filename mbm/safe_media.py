"""Decoding files from strangers at a bounded cost.

Audio: the container is recognised from its first bytes (never from the file name) and only an
allow-list is decoded. WAV, FLAC, OGG, AIFF and MP3 go to libsndfile; WebM/Matroska and MP4/M4A go to
FFmpeg, which gets the bytes on stdin with an explicit demuxer (``-f``), ``-protocol_whitelist pipe``
(no file, network or concat protocols at all), one thread, a time limit and a memory limit. Anything
else is refused, playlists (HLS ``#EXTM3U``, ``.pls``, DASH/SMIL XML), FFmpeg concat lists and
``file:``/URL references with their own message: such a "sound file" would make FFmpeg open whatever
it names on the server.

Images: see :func:`open_image` (pixel bound before decoding, reduced-size JPEG decoding, early
shrinking, 16-bit and float modes converted without float64 copies).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from mbm.errors import InputError
from mbm.limits import (
    FFMPEG_MEMORY_BYTES,
    FFMPEG_TIMEOUT_S,
    MAX_AUDIO_DECODE_SECONDS,
    MAX_DECODE_PIXELS,
    MAX_UPLOAD_BYTES,
    WORK_PIXELS,
    size_text,
)

LIBSNDFILE_FORMATS = ("wav", "flac", "ogg", "aiff", "mp3")
FFMPEG_DEMUXERS = {"matroska": "matroska", "mp4": "mov"}  # sniffed container -> FFmpeg's -f
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
SUPPORTED_AUDIO = "WAV, FLAC, OGG, MP3, AIFF, WebM or M4A"
_REFERENCE = re.compile(rb"#EXTM3U|#EXT-X-|\[playlist\]|ffconcat|<\?xml|<smil|<MPD|<asx|"
                        rb"(?:file|https?|ftp|rtmp|rtsp|concat|subfile|crypto|data|tcp|udp|pipe):", re.IGNORECASE)


def read_capped(source, what: str = "file", limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of a path / bytes / file object, refused (not read) when over ``limit``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError:
            raise InputError(f"{what} not found: {path.name}") from None
        if not path.is_file():
            raise InputError(f"{what} not found: {path.name}")
        if size > limit:
            raise InputError(f"the {what} is {size_text(size)}; the limit is {size_text(limit)}")
        data = path.read_bytes()
    elif hasattr(source, "read"):
        data = source.read(limit + 1)
    else:
        raise InputError(f"the {what} must be a file path or bytes, not {type(source).__name__}")
    if len(data) > limit:
        raise InputError(f"the {what} is larger than {size_text(limit)}, the limit")
    return data


def sniff_audio(head: bytes) -> str | None:
    """The audio container from its magic bytes: wav, flac, ogg, aiff, mp3, matroska, mp4; else None."""
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"  # an ID3 tag, or an MPEG audio frame sync with a valid layer
    return None


def _refusal(data: bytes) -> InputError:
    head = data[:4096]
    if _REFERENCE.search(head):
        return InputError("this file is a playlist, a list of other files or a reference to a file or URL, "
                          "not a recording; playlists, concat lists and file:/URL references are refused. "
                          f"Upload the sound itself ({SUPPORTED_AUDIO}).")
    return InputError(f"could not decode the audio: it is not a sound file in a supported format "
                      f"({SUPPORTED_AUDIO}) or it is damaged")


def read_audio(source, max_seconds: float = MAX_AUDIO_DECODE_SECONDS) -> tuple[np.ndarray, int]:
    """A path / bytes clip (through :func:`decode_audio`) or a ``(sample_rate, array)`` tuple ->
    ``(samples float32 (frames, channels), sample_rate)``. Imports no torch: the speech child uses it."""
    if isinstance(source, tuple) and len(source) == 2:
        sr, data = source
        return pcm_to_float(np.asarray(data)), int(sr)
    return decode_audio(source, max_seconds)


def pcm_to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1], always 2-D (frames, channels)."""
    if data.ndim == 1:
        data = data[:, None]
    elif data.ndim == 2 and data.shape[0] < data.shape[1] and data.shape[0] <= 8:
        data = data.T  # (channels, frames) -> (frames, channels)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data.astype(np.float32, copy=False)


def mono_at(samples: np.ndarray, sample_rate: int, rate: int, what: str = "the audio") -> np.ndarray:
    """Decoded samples -> the mono float32 signal at ``rate`` that every model here reads: the one path from a
    file's samples to a model's (the word model, the speaker encoder, PocketSphinx, the evaluations).

    ``samples`` are (frames[, channels]) float or integer PCM at ``sample_rate``; channels are averaged and
    the rate converted by soxr (its default, very high quality).

    Raises:
        InputError: no samples, NaN/inf samples, or a rate outside 4–384 kHz, each naming ``what``.
    """
    samples = pcm_to_float(np.asarray(samples))
    if samples.size == 0:
        raise InputError(f"{what} is empty (zero length); record or upload it again")
    if not np.all(np.isfinite(samples)):
        raise InputError(f"{what} holds invalid (NaN/inf) samples")
    if not 4000 <= sample_rate <= 384000:
        raise InputError(f"unsupported sample rate {sample_rate} Hz")
    mono = samples.mean(axis=1)
    if sample_rate != rate:
        import soxr

        mono = soxr.resample(mono, sample_rate, rate)
    return mono.astype(np.float32, copy=False)


def decode_audio(source, max_seconds: float = MAX_AUDIO_DECODE_SECONDS) -> tuple[np.ndarray, int]:
    """A path / bytes clip -> ``(samples float32 (frames, channels), sample_rate)``, safely.

    Raises:
        InputError: missing, too large, not an allowed container, a playlist / reference, damaged.
    """
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "audio"
    data = read_capped(source, "audio file")
    kind = sniff_audio(data[:64])
    if kind is None:
        raise _refusal(data)
    if kind in LIBSNDFILE_FORMATS:
        import soundfile as sf

        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                sr = f.samplerate
                if not 1000 <= sr <= 384000 or not 1 <= f.channels <= 64:
                    raise InputError(f"unsupported audio: {sr} Hz, {f.channels} channels")
                samples = f.read(frames=int(max_seconds * sr) + 1, dtype="float32", always_2d=True)
            return samples, sr
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            if kind != "mp3":  # some MP3 variants libsndfile refuses; FFmpeg reads them
                raise InputError(f"could not decode the audio file '{name}': it is damaged or not a "
                                 f"{kind.upper()} file") from None
    return _ffmpeg(data, FFMPEG_DEMUXERS.get(kind, kind), name, max_seconds)


def _limit_child() -> None:  # runs in the FFmpeg child before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (FFMPEG_MEMORY_BYTES, FFMPEG_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (int(FFMPEG_TIMEOUT_S), int(FFMPEG_TIMEOUT_S) + 1))


def ffmpeg_command(demuxer: str, max_seconds: float = MAX_AUDIO_DECODE_SECONDS, rate: int = 16000) -> list[str]:
    """The FFmpeg command line: input on stdin with an explicit demuxer, only the pipe protocol."""
    return ["ffmpeg", "-hide_banner", "-v", "error", "-threads", "1", "-protocol_whitelist", "pipe",
            "-f", demuxer, "-i", "pipe:0", "-t", str(max_seconds), "-vn", "-sn", "-dn",
            "-f", "f32le", "-ac", "1", "-ar", str(rate), "pipe:1"]


def _ffmpeg(data: bytes, demuxer: str, name: str, max_seconds: float) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise InputError(f"cannot read '{name}': this format needs FFmpeg, which is not installed here. "
                         "Upload WAV, FLAC, OGG or MP3 instead.")
    try:
        proc = subprocess.run(ffmpeg_command(demuxer, max_seconds), input=data, capture_output=True, check=False,
                              timeout=FFMPEG_TIMEOUT_S, preexec_fn=_limit_child if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        raise InputError(f"decoding '{name}' took too long; upload a WAV file") from None
    if proc.returncode != 0 or not proc.stdout:
        raise InputError(f"could not decode the audio file '{name}': it is not a sound file or it is damaged")
    return np.frombuffer(proc.stdout, dtype=np.float32)[:, None].copy(), 16000


# --- images ------------------------------------------------------------------------------------------

def to_uint8(arr: np.ndarray, rows: int = 512) -> np.ndarray:
    """Any numeric (H, W[, C]) array -> uint8 by min-max, in float32 row blocks (never a float64 copy)."""
    arr = np.asarray(arr)
    finite = arr if np.issubdtype(arr.dtype, np.integer) else np.where(np.isfinite(arr), arr, np.nan)
    lo, hi = float(np.nanmin(finite)), float(np.nanmax(finite))
    if not np.isfinite(lo):
        lo = hi = 0.0
    scale = np.float32(255.0 / (hi - lo) if hi > lo else 0.0)
    out = np.empty(arr.shape, np.uint8)
    for r in range(0, arr.shape[0], rows):
        block = arr[r:r + rows].astype(np.float32)
        block -= np.float32(lo)
        block *= scale
        np.nan_to_num(block, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(block, 0, 255, out=block)
        out[r:r + rows] = block
    return out


def open_image(source, max_header_pixels: int, draft_side: int):
    """Open an image file (path / bytes) and decode it at a bounded cost; returns a loaded PIL image.

    - the header's size is checked before any pixel is decoded: over ``max_header_pixels`` is refused;
    - a JPEG is decoded at reduced size (``draft``, 1/2..1/8) when it is larger than needed;
    - any other format (PNG, 16-bit PNG, TIFF, WebP...) over :data:`MAX_DECODE_PIXELS` is refused;
    - the decoded image is shrunk (``reduce``, then ``thumbnail``) to at most :data:`WORK_PIXELS`.
    """
    from PIL import Image, UnidentifiedImageError

    data = read_capped(source, "image")
    Image.MAX_IMAGE_PIXELS = max(max_header_pixels, MAX_DECODE_PIXELS)
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_header_pixels:
            raise InputError(f"the image is too large ({w}x{h}); the limit is "
                             f"{max_header_pixels // 1_000_000} megapixels")
        if img.format in ("JPEG", "MPO"):
            img.draft("RGB" if img.mode in ("RGB", "YCbCr", "CMYK") else img.mode, (draft_side, draft_side))
        if img.size[0] * img.size[1] > MAX_DECODE_PIXELS:
            raise InputError(f"the image is too large to decode ({w}x{h}, {img.format}); the limit is "
                             f"{MAX_DECODE_PIXELS // 1_000_000} megapixels (JPEG photos up to "
                             f"{max_header_pixels // 1_000_000} MP are fine)")
        img.load()
    except Image.DecompressionBombError as e:
        raise InputError(f"the image is too large to open safely ({e})") from None
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputError("could not read the image: the file is not an image or it is damaged") from None
    if img.mode in HIGH_DEPTH_MODES:  # 16-bit / 32-bit / float -> 8-bit first: cheap, and reduce() takes it
        info = img.info
        img = Image.fromarray(to_uint8(np.asarray(img)))
        img.info.update({k: v for k, v in info.items() if k == "exif"})
    return shrink(img)


def shrink(img, work_pixels: int = WORK_PIXELS):
    """A decoded PIL image shrunk to at most ``work_pixels`` (integer ``reduce`` first: cheap)."""
    from PIL import Image

    w, h = img.size
    if w * h <= work_pixels:
        return img
    factor = int((w * h / work_pixels) ** 0.5)
    if factor >= 2 and img.mode not in ("P", "1"):
        try:
            img = img.reduce(factor)
        except (ValueError, NotImplementedError):
            pass
    if img.size[0] * img.size[1] > work_pixels:
        scale = (work_pixels / (img.size[0] * img.size[1])) ** 0.5
        size = (max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale)))
        if img.mode in ("P", "1"):
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        img = img.resize(size, Image.Resampling.BILINEAR)
    return img
