"""Training lists all real speech (speech_commands_more/ too) with speaker-disjoint train /
validation / held-out sides, and the microphone effects of mbm.data.augment."""

from __future__ import annotations

import pytest
import torch

from mbm.data import augment
from mbm.data.readers import (
    VALIDATION_SOURCES,
    list_more_speech_clips,
    list_speech_clips,
    split_speech,
    split_validation,
)
from mbm.scenarios.voice_control.spec import WORDS
from tests.test_data import _wav, build_fake_data

MORE_SPEAKERS = [f"{i:08x}" for i in range(0x5eed0000, 0x5eed0000 + 30)]


@pytest.fixture(scope="module")
def data_with_more(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_more")
    build_fake_data(root)
    more = root / "speech_commands_more"
    n = 0
    for w, word in enumerate(WORDS[:6]):
        for s, spk in enumerate(MORE_SPEAKERS):
            prefix = "pico" if s % 2 else "anrose"
            for take in range(1 + (s + w) % 2):
                _wav(more / word / f"{prefix}_{spk}_nohash_{take}.wav", 200 + 20 * w, 16000)
                n += 1
    (more / "MANIFEST.md").write_text("sources")
    _wav(more / "up" / "oddname.wav", 300, 16000)  # no <source>_<speaker>_ prefix: skipped
    return root, n


def test_more_clips_are_listed_with_the_speaker_of_their_file_name(data_with_more):
    root, n = data_with_more
    more = [c for c in list_speech_clips(root, more=True) if c.source == "speech_commands_more"]
    assert len(more) == n == len(list_more_speech_clips(root))
    assert {c.speaker for c in more} == set(MORE_SPEAKERS)
    for c in more:
        assert c.speaker == c.path.name.split("_")[1] and c.word == c.path.parent.name
    assert not [c for c in list_speech_clips(root, more=False) if c.source == "speech_commands_more"]


def test_train_validation_and_heldout_share_no_speaker(data_with_more):
    root, _ = data_with_more
    clips = list_speech_clips(root, more=True)
    train, held = split_speech(clips)
    fit, val = split_validation(train)
    sides = [{c.speaker for c in side} for side in (fit, val, held)]
    assert all(sides)
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert sorted(str(c.path) for c in fit + val + held) == sorted(str(c.path) for c in clips)
    assert {c.source for c in val} <= set(VALIDATION_SOURCES)
    n_train_more = sum(c.source == "speech_commands_more" for c in train)
    assert 0.2 * n_train_more <= len(val) < n_train_more


def test_adding_more_speech_leaves_the_old_heldout_speakers_held_out(data_with_more):
    """Held-out speakers of speech_commands/ and FSDD stay held out (the split hashes per source)."""
    root, _ = data_with_more
    old_held = split_speech(list_speech_clips(root, more=False))[1]
    new_held = split_speech(list_speech_clips(root, more=True))[1]
    assert sorted(str(c.path) for c in old_held) == sorted(
        str(c.path) for c in new_held if c.source != "speech_commands_more")
    # and the held-out fifth of speech_commands_more is the one speech_eval scores
    more_held = split_speech(list_more_speech_clips(root))[1]
    assert {str(c.path) for c in more_held} == {str(c.path) for c in new_held if c.source == "speech_commands_more"}


def test_speech_eval_splits(data_with_more):
    from mbm.scenarios.voice_control.speech_eval import clips_of_split

    root, _ = data_with_more
    held, val = clips_of_split(root, "heldout"), clips_of_split(root, "validation")
    assert held and val and not {c.speaker for c in held} & {c.speaker for c in val}
    assert len(clips_of_split(root, "all")) == len(list_speech_clips(root, more=True))


# --- microphone effects -----------------------------------------------------------------------------

def _speech_like(b: int = 6, n: int = 16000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(n) / 16000
    f0 = 120 + 80 * torch.rand(b, 1, generator=g)
    voiced = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 20))
    env = torch.exp(-((t - 0.5) / 0.15) ** 2)
    return (0.3 * voiced * env + 0.01 * torch.randn(b, n, generator=g)).float()


@pytest.mark.parametrize("name", sorted(augment.MIC_EFFECTS))
def test_each_mic_effect_keeps_shape_and_dtype_is_seeded_and_changes_the_signal(name):
    x = _speech_like()
    pool = _speech_like(4)[:, torch.randperm(16000, generator=torch.Generator().manual_seed(0))]
    kwargs = {"pool": pool} if name == "babble" else {}
    effect = augment.MIC_EFFECTS[name]
    a = effect(x.clone(), torch.Generator().manual_seed(3), **kwargs)
    b = effect(x.clone(), torch.Generator().manual_seed(3), **kwargs)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
    assert torch.equal(a, b), "the same seed gives the same result"
    assert (a - x).abs().mean() > 1e-3 * x.abs().mean(), "the effect changes the signal"
    # another seed draws other settings for every effect but the fixed resampling
    others = [effect(x.clone(), torch.Generator().manual_seed(s), **kwargs) for s in range(4, 8)]
    assert name == "resample_8k" or any(not torch.equal(a, c) for c in others)


def test_resample_8k_removes_what_is_above_4_khz():
    t = torch.arange(16000) / 16000
    x = (torch.sin(2 * torch.pi * 300 * t) + torch.sin(2 * torch.pi * 6000 * t))[None]
    y = augment.resample_8k(x, torch.Generator())
    spec = torch.fft.rfft(y[0]).abs()
    assert spec[6000] < 0.01 * spec[300]


def test_clipping_caps_the_peaks_and_keeps_the_level():
    x = _speech_like()
    y = augment.clipping(x, torch.Generator().manual_seed(0))
    assert torch.allclose(y.abs().amax(1), x.abs().amax(1), rtol=1e-4)
    assert ((y.abs() >= 0.999 * y.abs().amax(1, keepdim=True)).sum(1) > 10).all(), "flat tops"


def test_babble_without_a_pool_uses_noise():
    x = _speech_like()
    y = augment.babble(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_mic_effects_applies_the_chances():
    x = _speech_like(32)
    assert torch.equal(augment.mic_effects(x, {}, torch.Generator()), x)
    assert torch.equal(augment.mic_effects(x, {"gain": 0.0}, torch.Generator()), x)
    y = augment.mic_effects(x, {"gain": 1.0, "clipping": 1.0}, torch.Generator().manual_seed(0))
    assert (y != x).any(1).all()
    with pytest.raises(ValueError, match="unknown microphone effects"):
        augment.mic_effects(x, {"telephone": 0.5}, torch.Generator())


def test_spec_augment_zeroes_one_band_and_one_span_per_clip_decided_by_the_generator():
    mel = torch.rand(64, 40, 101) + 0.5  # no zeros of its own
    out = augment.spec_augment(mel, torch.Generator().manual_seed(3))
    assert torch.equal(out, augment.spec_augment(mel, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, augment.spec_augment(mel, torch.Generator().manual_seed(4)))
    zero = out == 0
    bands = zero.all(dim=2).sum(dim=1)  # mels zeroed over the whole clip
    spans = zero.all(dim=1).sum(dim=1)  # frames zeroed over every mel
    assert bands.max() <= 5 and spans.max() <= 11 and bands.float().mean() > 1 and spans.float().mean() > 3
    assert torch.equal(out[~zero], mel[~zero])  # nothing else changes
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    augment.spec_augment(mel, torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(1), before)  # the global generator is left as it was
