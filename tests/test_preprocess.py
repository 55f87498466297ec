"""Preprocessing of every kind of input a user can give: audio rates/formats, image modes, odd texts."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from mbm.config import AudioConfig, ImageConfig, TextConfig
from mbm.preprocess import (
    MAX_AUDIO_SECONDS,
    MAX_TEXT_CHARS,
    MIN_IMAGE_SIDE,
    PAD,
    UNK,
    InputError,
    build_vocab,
    encode_text,
    fit_window,
    log_mel,
    prepare_audio,
    prepare_image,
    read_audio,
    read_image,
    tokenize,
)
from mbm.scenarios.voice_control.spec import training_vocabulary

ACFG = AudioConfig()
ICFG = ImageConfig(size=32)
RATES = (8000, 16000, 44100, 48000, 96000)
MP3_RATES = (8000, 16000, 44100, 48000)  # MPEG audio has no 96 kHz


def dominant_hz(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sample_rate)[spectrum.argmax()])


def check_clip(clip, sample_rate: int, channels: int = 1) -> None:
    assert clip.mel.shape == (ACFG.n_mels, ACFG.num_frames)
    assert clip.mel.dtype == torch.float32
    assert float(clip.mel.min()) >= 0.0 and float(clip.mel.max()) <= 1.0
    assert float(clip.mel.max()) == pytest.approx(1.0), "min-max scaling must reach 1 at the peak"
    assert clip.waveform.shape == (ACFG.num_samples,)
    assert not clip.silent
    assert ("resampled" in " ".join(clip.notes)) == (sample_rate != ACFG.sample_rate), clip.notes
    assert any("mixed 2 channels" in n for n in clip.notes) == (channels == 2), clip.notes


# --- audio: rates, formats, channels -------------------------------------------------------------

@pytest.mark.parametrize("fmt,rate", [("wav", r) for r in RATES] + [("flac", r) for r in RATES]
                         + [("ogg", r) for r in RATES] + [("mp3", r) for r in MP3_RATES])
def test_audio_file_at_every_rate_and_format_stereo(write_audio, make_tone, fmt, rate):
    path = write_audio(make_tone(rate, 0.8, freq=440, channels=2), rate, fmt)
    samples, sr = read_audio(str(path))
    assert sr == rate and samples.ndim == 2 and samples.shape[1] == 2
    clip = prepare_audio(samples, sr, ACFG)
    check_clip(clip, rate, channels=2)
    # Resampled to the model's rate without changing the pitch.
    assert dominant_hz(clip.waveform, ACFG.sample_rate) == pytest.approx(440, abs=8)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_audio_bytes_decode_like_files(make_tone, encode_audio, fmt):
    clip = prepare_audio(*read_audio(encode_audio(make_tone(16000, 1.0), 16000, fmt)), ACFG)
    check_clip(clip, 16000)


def test_microphone_tuple_with_int16_samples_matches_float(make_tone):
    x = make_tone(48000, 1.0, channels=2)  # (frames, 2) float
    pcm = (x * 32767).astype(np.int16)
    a = prepare_audio(*read_audio((48000, pcm)), ACFG)
    b = prepare_audio(*read_audio((48000, x)), ACFG)
    check_clip(a, 48000, channels=2)
    assert np.allclose(a.waveform, b.waveform, atol=1e-3)


def test_channels_first_array_is_understood(make_tone):
    x = make_tone(16000, 1.0, channels=2)
    a, _ = fit_window(x.T, 16000, ACFG)  # (2, frames)
    b, _ = fit_window(x, 16000, ACFG)  # (frames, 2)
    assert np.allclose(a, b)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="FFmpeg not installed")
def test_webm_upload_is_decoded_with_ffmpeg(tmp_path, write_audio, make_tone):
    wav = write_audio(make_tone(48000, 1.0, freq=500), 48000, "wav")
    webm = tmp_path / "clip.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "libopus", str(webm)],
                   check=True, timeout=60)
    clip = prepare_audio(*read_audio(str(webm)), ACFG)
    assert clip.mel.shape == (ACFG.n_mels, ACFG.num_frames) and not clip.silent
    assert dominant_hz(clip.waveform, ACFG.sample_rate) == pytest.approx(500, abs=8)


def test_webm_without_ffmpeg_says_what_is_missing(tmp_path, monkeypatch):
    path = tmp_path / "clip.webm"
    path.write_bytes(b"\x1aE\xdf\xa3" + bytes(200))  # an EBML header libsndfile cannot read
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="FFmpeg"):
        read_audio(str(path))


# --- audio: unusable and odd clips ---------------------------------------------------------------

@pytest.mark.parametrize("samples", [np.zeros(0, np.float32), np.zeros((0, 2), np.float32)],
                         ids=["mono", "stereo"])
def test_zero_length_audio_is_an_input_error(samples):
    with pytest.raises(InputError, match="empty"):
        prepare_audio(samples, 16000, ACFG)


def test_zero_length_wav_file_is_an_input_error(write_audio):
    path = write_audio(np.zeros(0, np.float32), 16000, "wav")
    with pytest.raises(InputError, match="empty"):
        prepare_audio(*read_audio(str(path)), ACFG)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_audio_is_an_input_error(make_tone, bad):
    x = make_tone(16000, 1.0)
    x[100] = bad
    with pytest.raises(InputError, match="NaN"):
        prepare_audio(x, 16000, ACFG)


def test_absurd_sample_rate_is_an_input_error(make_tone):
    with pytest.raises(InputError, match="sample rate"):
        prepare_audio(make_tone(16000, 1.0), 100, ACFG)


def test_garbage_audio_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="could not decode"):
        read_audio(b"definitely not a sound file" * 10)
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF" + bytes(64))
    with pytest.raises(InputError):
        read_audio(str(path))
    with pytest.raises(InputError, match="nothere.wav"):
        read_audio(str(tmp_path / "nothere.wav"))


@pytest.mark.parametrize("samples", [np.zeros(16000, np.float32),
                                     (1e-5 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)],
                         ids=["digital_zero", "faint_hiss"])
def test_silence_is_flagged(samples):
    clip = prepare_audio(samples, 16000, ACFG)
    assert clip.silent
    assert "the recording is silent" in clip.notes
    assert torch.isfinite(clip.mel).all() and float(clip.mel.min()) >= 0 and float(clip.mel.max()) <= 1


def test_quiet_speech_level_tone_is_not_silent(make_tone):
    assert not prepare_audio(make_tone(16000, 1.0, amp=0.01), 16000, ACFG).silent


def test_clipped_audio_is_used(make_tone):
    x = np.clip(make_tone(16000, 1.0, amp=5.0), -1.0, 1.0)
    clip = prepare_audio(x, 16000, ACFG)
    check_clip(clip, 16000)
    assert np.abs(clip.waveform).max() <= 1.0


def test_short_clip_is_padded_around_the_centre(make_tone):
    clip = prepare_audio(make_tone(16000, 0.2), 16000, ACFG)
    assert clip.waveform.shape == (ACFG.num_samples,)
    energy = clip.waveform ** 2
    n = len(energy)
    assert energy[: n // 4].sum() == 0 and energy[-n // 4:].sum() == 0
    assert energy[n // 2 - 1000: n // 2 + 1000].sum() > 0


def test_long_clip_keeps_the_loudest_window(make_tone):
    """A 0.3 s burst at 5 s inside 10 s of near-silence, at 44.1 kHz."""
    sr = 44100
    x = (1e-4 * np.random.default_rng(0).standard_normal(sr * 10)).astype(np.float32)
    start, stop = int(5.0 * sr), int(5.3 * sr)
    x[start:stop] += make_tone(sr, 0.3, freq=300, amp=0.5)
    clip = prepare_audio(x, sr, ACFG)
    burst = [n for n in clip.notes if n.startswith("kept the loudest")]
    assert burst, clip.notes
    kept_from = float(burst[0].split("from ")[1].split(" s")[0])
    assert 4.3 - 0.01 <= kept_from <= 5.0 + 0.01, burst  # the window [from, from + 1 s] holds the burst
    # Nearly all of the burst's energy is inside the window (at the model's rate).
    burst_energy = float((make_tone(ACFG.sample_rate, 0.3, freq=300, amp=0.5).astype(np.float64) ** 2).sum())
    assert float((clip.waveform.astype(np.float64) ** 2).sum()) == pytest.approx(burst_energy, rel=0.05)
    assert dominant_hz(clip.waveform, ACFG.sample_rate) == pytest.approx(300, abs=8)


def test_ten_minute_file_is_cut_with_a_note_without_decoding_it_all(write_audio, make_tone):
    sr = 8000
    path = write_audio(make_tone(sr, 600.0, amp=0.2), sr, "wav", name="ten_minutes.wav")
    samples, rate = read_audio(str(path))
    # Only the first MAX_AUDIO_SECONDS are ever decoded: the cost does not grow with the upload.
    assert samples.shape[0] <= MAX_AUDIO_SECONDS * rate + 1
    clip = prepare_audio(samples, rate, ACFG)
    assert any(f"longer than {MAX_AUDIO_SECONDS:.0f} s" in n for n in clip.notes), clip.notes
    assert clip.mel.shape == (ACFG.n_mels, ACFG.num_frames)


def test_ten_minute_array_is_cut_with_a_note(make_tone):
    window, notes = fit_window(make_tone(16000, 600.0), 16000, ACFG)
    assert window.shape == (ACFG.num_samples,)
    assert any("only the start was used" in n for n in notes), notes


def test_log_mel_ignores_gain_and_batches(make_tone):
    x = torch.from_numpy(make_tone(16000, 1.0))[None]  # (1, N)
    mels = log_mel(torch.cat([x, 0.05 * x]), ACFG)  # (2, n_mels, F)
    assert mels.shape == (2, ACFG.n_mels, ACFG.num_frames)
    assert torch.allclose(mels[0], mels[1], atol=1e-3)


# --- images ------------------------------------------------------------------------------------------

def check_image(prepared, size: int = ICFG.size) -> None:
    assert prepared.pixels.shape == (3, size, size)
    assert prepared.pixels.dtype == torch.float32
    assert float(prepared.pixels.min()) >= -0.5 and float(prepared.pixels.max()) <= 0.5
    assert prepared.shown.shape == (size, size, 3) and prepared.shown.dtype == np.uint8


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"),
                                      ("P", "PNG"), ("1", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"),
                                      ("RGB", "WEBP"), ("RGB", "BMP")])
def test_every_image_mode_gives_normalised_rgb(make_image, encode_image, mode, fmt):
    img = make_image(60, 44, mode)
    decoded = read_image(encode_image(img, fmt), ICFG)
    assert decoded.mode == "RGB"
    prepared = prepare_image(decoded, ICFG)
    check_image(prepared)
    # Textured input: per-image min-max spans the whole range.
    assert float(prepared.pixels.min()) == pytest.approx(-0.5) and float(prepared.pixels.max()) == pytest.approx(0.5)
    # The PIL image itself is accepted too.
    check_image(prepare_image(read_image(img, ICFG), ICFG))


def test_transparent_pixels_are_composited_on_white(encode_image):
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgb = read_image(encode_image(img), ICFG)
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    prepared = prepare_image(rgb, ICFG)
    assert "the image is a flat colour" in prepared.notes


@pytest.mark.parametrize("array", [np.random.default_rng(0).random((40, 50)),
                                   (np.random.default_rng(0).random((40, 50, 4)) * 255).astype(np.uint8),
                                   (np.random.default_rng(0).random((40, 50, 3)) * 65535).astype(np.uint16)],
                         ids=["float_gray", "uint8_rgba", "uint16_rgb"])
def test_numpy_arrays_from_a_webcam(array):
    check_image(prepare_image(read_image(array, ICFG), ICFG))


def test_exif_orientation_is_applied(make_image, encode_image):
    img = make_image(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    decoded = read_image(encode_image(img, "JPEG", exif=exif.tobytes()), ICFG)
    assert decoded.size == (40, 60)


def test_non_square_image_is_centre_cropped():
    img = Image.new("RGB", (96, 32), (255, 255, 255))
    img.paste((0, 0, 0), (32, 0, 64, 32))  # a black square in the middle third
    prepared = prepare_image(img, ICFG)
    assert prepared.shown.max() < 40, "the crop must be the centre of the wide image"


@pytest.mark.parametrize("size", [(1, 1), (MIN_IMAGE_SIDE - 1, 200), (300, 2)])
def test_tiny_images_are_refused_with_their_size(encode_image, size):
    img = read_image(encode_image(Image.new("RGB", size, (10, 200, 30))), ICFG)
    with pytest.raises(InputError, match=f"only {size[0]}x{size[1]} pixels"):
        prepare_image(img, ICFG)


def test_smallest_allowed_image_works(make_image):
    check_image(prepare_image(make_image(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE), ICFG))


def _readable(e) -> str:
    msg = str(e.value)
    assert "Traceback" not in msg and len(msg) < 300
    return msg


def _corrupt(kind: str, make_image, encode_image) -> bytes:
    if kind == "truncated_jpeg":
        return encode_image(make_image(64, 64), "JPEG")[:300]
    if kind == "truncated_png":
        return encode_image(make_image(64, 64), "PNG")[:200]
    if kind == "random_bytes":
        return bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    return b""


@pytest.mark.parametrize("kind", ["truncated_jpeg", "truncated_png", "random_bytes", "empty"])
def test_corrupt_images_are_input_errors(make_image, encode_image, kind):
    with pytest.raises(InputError, match="not an image or it is damaged") as e:
        read_image(_corrupt(kind, make_image, encode_image), ICFG)
    _readable(e)


def test_text_file_renamed_jpg_is_an_input_error(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("hello, I am not a photo\n" * 20)
    with pytest.raises(InputError, match="not an image") as e:
        read_image(str(path), ICFG)
    _readable(e)


def test_50_megapixel_jpeg_is_downscaled_not_refused(encode_image):
    cfg = ImageConfig(size=32)
    assert cfg.max_pixels >= 8192 * 6144, "a 50 MP camera photo must be accepted"
    w, h = 10_000, cfg.max_pixels // 10_000  # exactly at the limit
    gradient = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    data = encode_image(Image.fromarray(gradient), "JPEG", quality=30)
    decoded = read_image(data, cfg)
    assert decoded.width <= w // 4, "large JPEGs must be decoded at reduced size"
    prepared = prepare_image(decoded, cfg)
    check_image(prepared, 32)


def _jpeg_claiming_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A small real JPEG whose header claims another size (only the header is read before refusing)."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns, we refuse
@pytest.mark.parametrize("width,height", [(10_000, 10_001), (20_000, 10_001), (60_000, 60_000)],
                         ids=["just_over_limit", "over_twice_limit", "bomb"])
def test_images_over_max_pixels_are_refused(make_image, encode_image, width, height):
    cfg = ImageConfig(size=32)
    assert width * height > cfg.max_pixels
    with pytest.raises(InputError, match="too large") as e:
        read_image(_jpeg_claiming_size(encode_image(make_image(16, 16), "JPEG"), width, height), cfg)
    _readable(e)


def test_extreme_aspect_ratio_is_not_blown_up_before_cropping(monkeypatch, make_image, encode_image):
    """A 40,000x8 strip (a few KB as PNG) must not be resized to 160,000x32 before the crop."""
    sizes = []
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    strip = read_image(encode_image(make_image(40_000, 8, "L")), ICFG)
    check_image(prepare_image(strip, ICFG))
    assert sizes and max(w * h for w, h in sizes) <= 4 * ICFG.size ** 2, sizes


# --- text ------------------------------------------------------------------------------------------

VOCAB = build_vocab(training_vocabulary())
TCFG = TextConfig()


@pytest.mark.parametrize("text,tokens", [
    ("Turn ON the Lamp!", ["turn", "on", "the", "lamp"]),
    ("channel 12", ["channel", "1", "2"]),
    ("don't stop", ["don't", "stop"]),
    ("ＬＡＭＰ ＯＮ", ["lamp", "on"]),  # full-width letters, NFKC
    ("fan_on", ["fan", "on"]),
    ("🎵🔊💡", []),
    ("включи свет", ["включи", "свет"]),
    ("", []),
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t  \r\n"], ids=["none", "empty", "spaces", "whitespace"])
def test_blank_text_is_absent(text):
    assert encode_text(text, VOCAB, TCFG) is None


def test_known_text_is_encoded():
    out = encode_text("Turn on the lamp", VOCAB, TCFG)
    assert out.tokens == ["turn", "on", "the", "lamp"]
    assert out.ids.dtype == torch.long and out.ids.tolist() == [VOCAB.index(t) for t in out.tokens]
    assert out.notes == []


def test_unknown_words_become_unk_with_a_note():
    out = encode_text("please turn on the flux capacitor", VOCAB, TCFG)
    assert out.tokens[-2:] == [UNK, UNK] and out.ids[-1].item() == VOCAB.index(UNK)
    assert any("flux" in n and "capacitor" in n for n in out.notes), out.notes


def test_ten_thousand_characters_are_cut_with_notes():
    text = ("turn on the lamp " * 700)[:10_000]
    out = encode_text(text, VOCAB, TCFG)
    assert len(out.ids) == TCFG.max_tokens
    joined = " ".join(out.notes)
    assert f"longer than {MAX_TEXT_CHARS} characters" in joined and f"first {TCFG.max_tokens}" in joined


def test_one_ten_thousand_character_word_is_handled():
    with pytest.raises(InputError, match="none of the words"):
        encode_text("a" * 10_000, VOCAB, TCFG)


def test_emoji_only_text_is_an_input_error():
    with pytest.raises(InputError, match="no words"):
        encode_text("💡🔥😀👍", VOCAB, TCFG)


def test_emoji_around_words_are_ignored():
    assert encode_text("💡 lamp on 💡", VOCAB, TCFG).tokens == ["lamp", "on"]


@pytest.mark.parametrize("text", ["включи свет", "打开灯", "أطفئ الضوء", "टीवी चालू करो", "ライトをつけて"])
def test_non_latin_scripts_say_no_word_is_known(text):
    with pytest.raises(InputError, match="none of the words in the text are known"):
        encode_text(text, VOCAB, TCFG)


def test_non_latin_mixed_with_english_keeps_the_english():
    out = encode_text("lamp on пожалуйста", VOCAB, TCFG)
    assert out.tokens == ["lamp", "on", UNK]


def test_build_vocab_reserves_pad_and_unk():
    vocab = build_vocab(["b", "a", "b", PAD, UNK])
    assert vocab == [PAD, UNK, "a", "b"]
    assert VOCAB[:2] == [PAD, UNK] and len(VOCAB) == len(set(VOCAB))
