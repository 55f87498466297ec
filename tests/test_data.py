"""Dataset readers, the speaker/photo splits, the training pools and sampler, on a tiny fake data folder.

The folder is built in tmp_path laid out like ``../shared/data``:
``speech_commands/<word>/<spk>_nohash_<n>.wav``, ``fsdd/recordings/<digit>_<spk>_<n>.wav`` and
``devices/<class>/<source>_<id>.jpg``, plus files and folders the readers must skip.
"""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mbm.config import AudioConfig, ImageConfig, TrainConfig
from mbm.data.readers import (
    heldout_speakers,
    list_device_photos,
    list_speech_clips,
    split_photos,
    split_speech,
    tts_clips,
)
from mbm.scenarios.voice_control.data import (
    PHOTO_MARGIN,
    AudioPool,
    PhotoPool,
    VoiceControlSampler,
    load_audio_pool,
    load_photo_pool,
)
from mbm.scenarios.voice_control.spec import DEVICES, DIGITS, WORDS

SC_SPEAKERS = [f"{i:08x}" for i in (0x1eddce1d, 0x439c84f4, 0x51055bda, 0x0a7c2a8d, 0x9e2c2d01, 0xc0ffee00)]
FSDD_SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
PHOTO_SOURCES = ["tin", "cal", "off_amazon", "cur", "dd"]


def _wav(path, freq: float, sr: int = 8000, seconds: float = 0.25) -> None:
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def build_fake_data(root, seed: int = 0, small: bool = False):
    """A small folder like ../shared/data; returns the expected (speech_commands, fsdd, photo) counts.

    ``small`` keeps 3 words, 3 digits and 2 digit speakers (for the slower end-to-end check).
    """
    rng = np.random.default_rng(seed)
    sc = root / "speech_commands"
    n_sc = 0
    for w, word in enumerate(WORDS):
        if small and word not in ("up", "on", "five"):
            continue
        for s, spk in enumerate(SC_SPEAKERS):
            if (w + s) % 3 == 0:  # not every speaker says every word
                continue
            _wav(sc / word / f"{spk}_nohash_0.wav", 200 + 20 * w, 16000)
            n_sc += 1
    _wav(sc / "cat" / f"{SC_SPEAKERS[0]}_nohash_0.wav", 300, 16000)  # a word outside the vocabulary
    _wav(sc / "_background_noise_" / "white_noise.wav", 300, 16000)
    (sc / "up" / "README.md").write_text("not a clip")
    (sc / "LICENSE").write_text("CC-BY-4.0")
    fsdd = root / "fsdd" / "recordings"
    n_fsdd = 0
    for d in range(3 if small else 10):
        for spk in FSDD_SPEAKERS[:2] if small else FSDD_SPEAKERS:
            for take in range(1 if small else 2):
                _wav(fsdd / f"{d}_{spk}_{take}.wav", 300 + 30 * d)
                n_fsdd += 1
    _wav(fsdd / "readme.wav", 300)  # no digit prefix
    _wav(fsdd / "12_george_0.wav", 300)  # not a single digit
    (fsdd / "0_george_0.txt").write_text("not audio")
    n_photos = 0
    for c, device in enumerate(DEVICES):
        folder = root / "devices" / device
        folder.mkdir(parents=True)
        for k in range(2 if small else 6):
            source = PHOTO_SOURCES[(c + k) % len(PHOTO_SOURCES)]
            pixels = (rng.random((24 + 4 * k, 30, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{source}_{device}{k:03d}.jpg")
            n_photos += 1
        Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(folder / "plain.PNG")
        n_photos += 1
        (folder / "notes.txt").write_text("not a photo")
        (folder / "sub").mkdir()
    (root / "devices" / "toaster").mkdir()  # a class outside the scenario
    Image.new("RGB", (20, 20)).save(root / "devices" / "toaster" / "tin_toaster.jpg")
    return n_sc, n_fsdd, n_photos


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    counts = build_fake_data(root)
    return root, counts


# --- readers -------------------------------------------------------------------------------------

def test_speech_clips_are_listed_with_word_speaker_and_source(fake_data):
    root, (n_sc, n_fsdd, _) = fake_data
    clips = list_speech_clips(root)
    sc = [c for c in clips if c.source == "speech_commands"]
    fsdd = [c for c in clips if c.source == "fsdd"]
    assert len(sc) == n_sc and len(fsdd) == n_fsdd and len(clips) == n_sc + n_fsdd
    for c in sc:
        assert c.word == c.path.parent.name and c.word in WORDS
        assert c.speaker == c.path.name.split("_")[0] and c.speaker in SC_SPEAKERS
        assert c.path.suffix == ".wav"
    for c in fsdd:
        digit, speaker, _ = c.path.stem.split("_")
        assert c.word == DIGITS[int(digit)] and c.speaker == speaker
    assert all(c.word != "cat" for c in clips)
    assert not any(c.path.name in ("readme.wav", "12_george_0.wav", "white_noise.wav") for c in clips)


def test_listing_is_sorted_and_repeatable(fake_data):
    root, _ = fake_data
    a, b = list_speech_clips(root), list_speech_clips(root)
    assert a == b
    assert [p.path for p in list_device_photos(root)] == [p.path for p in list_device_photos(root)]


def test_device_photos_are_listed_with_class_and_source(fake_data):
    root, (_, _, n_photos) = fake_data
    photos = list_device_photos(root)
    assert len(photos) == n_photos
    assert {p.device for p in photos} == set(DEVICES)
    for p in photos:
        assert p.device == p.path.parent.name
        if p.path.name.startswith("plain"):
            assert p.source == "other"
        else:
            assert p.source == p.path.name.split("_")[0] and p.source in {s.split("_")[0] for s in PHOTO_SOURCES}
    assert not any(p.path.suffix == ".txt" or p.path.name == "sub" for p in photos)
    assert not any("toaster" in str(p.path) for p in photos)


def test_empty_or_partial_folders_give_empty_lists(tmp_path):
    assert list_speech_clips(tmp_path) == [] and list_device_photos(tmp_path) == []
    _wav(tmp_path / "fsdd" / "recordings" / "3_theo_0.wav", 300)
    clips = list_speech_clips(tmp_path)
    assert [(c.word, c.speaker, c.source) for c in clips] == [("three", "theo", "fsdd")]


def test_tts_clips_are_exactly_the_planned_ones(tmp_path):
    """Training reads the clips of the current plan, never leftovers of an earlier plan in the cache."""
    from mbm.data.tts import plan_utterances

    plan = plan_utterances(["up", "five"], per_word=4, seed=0)
    assert plan == plan_utterances(["up", "five"], per_word=4, seed=0), "the plan must be deterministic"
    assert len({u.name for u in plan if u.word == "up"}) == 4
    paths = [tmp_path / u.word / f"{u.name}.wav" for u in plan]
    _wav(tmp_path / "up" / "leftover-from-another-plan.wav", 300)
    clips = tts_clips(paths)
    assert [(c.word, c.speaker, c.source) for c in clips] == [(u.word, u.name, "tts") for u in plan]


# --- splits --------------------------------------------------------------------------------------

def test_no_speaker_on_both_sides_of_the_split(fake_data):
    root, _ = fake_data
    clips = list_speech_clips(root)
    train, held = split_speech(clips)
    assert train and held
    assert sorted(map(str, (c.path for c in train + held))) == sorted(str(c.path) for c in clips)
    assert not {c.speaker for c in train} & {c.speaker for c in held}
    for source in ("speech_commands", "fsdd"):
        n_held = sum(c.source == source for c in held)
        n_all = sum(c.source == source for c in clips)
        assert 0.2 * n_all <= n_held < n_all, f"{source}: {n_held}/{n_all} held out"


def test_speech_split_is_deterministic_and_order_independent(fake_data, tmp_path):
    root, _ = fake_data
    clips = list_speech_clips(root)
    held = heldout_speakers(clips)
    shuffled = clips[:]
    random.Random(0).shuffle(shuffled)
    assert heldout_speakers(shuffled) == held
    # A copy of the data elsewhere splits the same way (the split hashes ids, not paths or Python's hash()).
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert heldout_speakers(list_speech_clips(copy)) == held
    # Pinned: changing the split silently would leak training speakers into every reported held-out number.
    assert held == {"439c84f4", "c0ffee00", "jackson", "theo"}


def test_larger_fraction_holds_out_more(fake_data):
    root, _ = fake_data
    clips = list_speech_clips(root)
    small, large = heldout_speakers(clips, 0.2), heldout_speakers(clips, 0.5)
    assert small <= large and len(large) > len(small)


def test_photo_split_is_disjoint_complete_and_deterministic(fake_data, tmp_path):
    root, _ = fake_data
    photos = list_device_photos(root)
    train, held = split_photos(photos)
    assert train and held
    assert not {p.path for p in train} & {p.path for p in held}
    assert len(train) + len(held) == len(photos)
    copy = tmp_path / "copy"
    shutil.copytree(root / "devices", copy / "devices")
    again = split_photos(list_device_photos(copy))[1]
    assert [p.path.name for p in again] == [p.path.name for p in held]


# --- pools and the training sampler --------------------------------------------------------------

def test_audio_and_photo_pools(fake_data):
    root, _ = fake_data
    acfg, icfg = AudioConfig(), ImageConfig(size=32)
    clips = list_speech_clips(root)[:4] + list_speech_clips(root)[-2:]
    pool = load_audio_pool(clips, acfg)
    assert pool.waves.shape == (6, acfg.num_samples) and pool.waves.dtype == torch.float32
    assert pool.words.tolist() == [WORDS.index(c.word) for c in clips]
    assert pool.sources == [c.source for c in clips]
    assert float(pool.waves.abs().max()) > 0.1
    photos = list_device_photos(root)[::7]
    ppool = load_photo_pool(photos, icfg)
    side = icfg.size + PHOTO_MARGIN
    assert ppool.pixels.shape == (len(photos), 3, side, side) and ppool.pixels.dtype == torch.uint8
    assert ppool.devices.tolist() == [DEVICES.index(p.device) for p in photos]


def _sampler(tiny_config, seed: int = 0) -> VoiceControlSampler:
    from mbm.preprocess import build_vocab
    from mbm.scenarios.voice_control.spec import training_vocabulary

    g = torch.Generator().manual_seed(0)
    audio = AudioPool(torch.randn(len(WORDS) * 2, 16000, generator=g) * 0.1,
                      torch.arange(len(WORDS)).repeat(2), ["tts"] * len(WORDS) * 2)
    photos = PhotoPool((torch.rand(len(DEVICES), 3, 40, 40, generator=g) * 255).to(torch.uint8),
                       torch.arange(len(DEVICES)), ["tin"] * len(DEVICES))
    vocab = build_vocab(training_vocabulary())
    cfg = tiny_config(vocab_size=len(vocab))
    return VoiceControlSampler(audio, photos, vocab, cfg.audio, cfg.image, cfg.text.max_tokens,
                               TrainConfig(seed=seed)), cfg


def test_sampler_batches_fit_the_model(tiny_config):
    from mbm.model import MultimodalModel

    sampler, cfg = _sampler(tiny_config)
    inputs, present, targets, _ = sampler.sample(8)
    assert inputs["audio"].shape == (8, cfg.audio.n_mels, cfg.audio.num_frames)
    assert inputs["image"].shape == (8, 3, cfg.image.size, cfg.image.size)
    assert inputs["text"].shape[0] == 8 and inputs["text"].shape[1] <= cfg.text.max_tokens
    assert float(inputs["image"].min()) >= -0.5 and float(inputs["image"].max()) <= 0.5
    assert int(inputs["text"].max()) < len(sampler.vocab)
    assert torch.stack(list(present.values())).any(0).all(), "every sample needs a present modality"
    assert targets["device"].max() < len(DEVICES) and targets["word"].max() < len(WORDS)
    torch.manual_seed(0)
    out = MultimodalModel(cfg)(inputs, present)
    assert torch.isfinite(out.logits["word"]).all()
    for m, mask in present.items():
        absent = ~mask
        assert torch.all(out.modality_weights[absent, ("audio", "image", "text").index(m)] == 0)


def test_sampler_is_seeded(tiny_config):
    a, _ = _sampler(tiny_config, seed=1)
    b, _ = _sampler(tiny_config, seed=1)
    xa, pa, ta, na = a.sample(4)
    xb, pb, tb, nb = b.sample(4)
    assert all(torch.equal(xa[m], xb[m]) for m in xa)
    assert all(torch.equal(pa[m], pb[m]) for m in pa) and torch.equal(ta["word"], tb["word"])
    assert all(torch.equal(na[m], nb[m]) for m in na)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_sampler_says_which_present_inputs_are_noise(tiny_config, rate):
    sampler, _ = _sampler(tiny_config)
    sampler.train = TrainConfig(noise_modality=rate)
    _, present, _, noised = sampler.sample(16)
    for m in present:
        assert torch.equal(noised[m], present[m] if rate == 1.0 else torch.zeros(16, dtype=torch.bool))
    assert all(present[m].any() for m in present)  # the check above was not vacuous


def test_sampler_refuses_a_word_without_clips(tiny_config):
    sampler, cfg = _sampler(tiny_config)
    audio = AudioPool(sampler.audio.waves[:5], sampler.audio.words[:5], sampler.audio.sources[:5])
    with pytest.raises(AssertionError, match="no training clips"):
        VoiceControlSampler(audio, sampler.photos, sampler.vocab, cfg.audio, cfg.image, 16, TrainConfig())


# --- the evaluation command on a folder like ../shared/data -----------------------------------------

def test_evaluate_prints_one_json_object_with_the_required_keys(tmp_path, voice_checkpoint_path, capsys):
    from mbm.evaluate import main

    root = tmp_path / "data"
    n_sc, n_fsdd, n_photos = build_fake_data(root, small=True)
    threads = torch.get_num_threads()
    try:
        main(["--scenario", "voice_control", "--data", str(root), "--checkpoint", str(voice_checkpoint_path),
              "--json", "--threads", str(threads)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip()
    result = json.loads(out)  # exactly one JSON object on stdout
    for key in ("word_accuracy_real", "device_accuracy", "action_accuracy", "action_accuracy_audio_only",
                "action_accuracy_image_only"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["n_clips"] == n_sc + n_fsdd and result["n_photos"] == n_photos


