"""Report card export (mbm.report): PNG, self-contained HTML and JSON."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

from PIL import Image

from mbm.report import export_report


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def _check(paths):
    assert set(paths) == {"png", "html", "json"} and all(p.is_file() for p in paths.values())
    with Image.open(paths["png"]) as img:
        img.verify()
    parser = _Images()
    parser.feed(paths["html"].read_text(encoding="utf-8"))
    assert parser.tags[:2] == ["html", "head"] and parser.srcs
    for src in parser.srcs:  # every image inlined, none linked
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    return json.loads(paths["json"].read_text(encoding="utf-8")), parser


def test_export_all_modalities(voice_predictor, make_tone, make_image, tmp_path):
    r = voice_predictor.predict(audio=(16000, make_tone(16000, 1.0)), image=make_image(64, 64), text="dim the lamp")
    data, parser = _check(export_report(r, tmp_path / "out"))
    assert len(parser.srcs) == 4  # figure, heatmap, crop, log-mel
    assert data["prediction"]["action"] == r.action
    assert set(data["effects"]["drop"]) == {"audio", "image", "text"}
    assert len(data["maps"]["image_grid"]) == 4 and [t for t, _ in data["maps"]["text"]] == r.inputs.text.tokens
    assert len(data["maps"]["audio_frames"]) == r.inputs.audio.mel.shape[-1]


def test_export_text_only(voice_predictor, tmp_path):
    r = voice_predictor.predict(text="turn on the fan")
    data, parser = _check(export_report(r, tmp_path, stem="fan"))
    assert len(parser.srcs) == 1  # only the figure: no image or audio map is made up
    assert data["maps"]["image_grid"] is None and data["maps"]["audio_frames"] is None
    assert data["effects"]["drop"] == {}


def test_the_card_carries_its_context_and_why_a_map_is_absent(voice_predictor, make_tone, write_audio, tmp_path):
    """Date, model and checkpoint, settings and each input (or the reason it has no map) are on the card."""
    import json

    from mbm.report import absent_reasons

    r = voice_predictor.predict(audio=str(write_audio(make_tone(16000, 1.0), 16000)), text="turn on the lamp")
    settings = {"audio_noise": 0.2, "use_image": False, "use_text": True}
    paths = export_report(r, tmp_path, settings=settings, model={"checkpoint": "x.pt", "sha256": "abc123"})
    page = paths["html"].read_text(encoding="utf-8")
    assert "x.pt" in page and "abc123" in page and "audio_noise = 0.2" in page
    assert "absent: switched off in the robustness controls" in page  # the image, on the card itself
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["absent_maps"] == {"image": "switched off in the robustness controls"}
    assert data["settings"] == settings and data["model"]["sha256"] == "abc123"
    assert absent_reasons(r) == {"image": "not given"}
