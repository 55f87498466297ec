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
