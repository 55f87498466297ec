"""Search anyone's folder. Open-vocabulary text and speech, photo search on any photos, the
off-topic flag "off everything", why each result came, and the everyday demo collection's examples.

Runs in a clone without ../shared: the photos are the committed everyday demo assets (Caltech-101)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mbm.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
EVERYDAY = ROOT / "assets" / "retrieval_everyday"


@pytest.fixture(scope="module")
def space():
    from mbm.scenarios.retrieval.model import load_space

    return load_space()


@pytest.fixture(scope="module")
def neutral(tmp_path_factory, space):
    """Four everyday photos under meaningless names (the names cannot help), indexed."""
    from mbm.scenarios.retrieval.index_build import build

    d = tmp_path_factory.mktemp("neutral") / "photos"
    d.mkdir()
    for i, c in enumerate(("accordion", "kangaroo", "starfish", "cup")):
        src = min((EVERYDAY / "collection" / c).glob("*.jpg"))
        shutil.copyfile(src, d / f"IMG_{1000 + i}.jpg")
    idx = build(d, d.parent / "index.npz", progress=False, space=space, log=lambda *_: None)
    return idx, {f"IMG_{1000 + i}.jpg": c for i, c in enumerate(("accordion", "kangaroo", "starfish", "cup"))}


def test_an_imagenet_concept_ranks_the_right_photo_first_and_says_why(neutral, space):
    from mbm.scenarios.retrieval.search import encode_query, search

    idx, truth = neutral
    assert idx.name_mask.sum() == 0  # "IMG_1000" has no words: names play no part here
    for text, want in (("an accordion", "accordion"), ("a starfish", "starfish"), ("a mug of hot coffee", "cup")):
        q = encode_query(space, idx, text=text)
        top = search(space, idx, q, space.weights, k=2)[0]
        assert truth[idx.items[top.index]["path"]] == want, text
        assert not q.warnings
    q = encode_query(space, idx, text="an accordion")
    top = search(space, idx, q, space.weights, k=1)[0]
    assert any("matched 'accordion'" in w for w in top.why), top.why  # the concept that matched, with numbers
    assert abs(sum(top.terms.values()) - top.score) < 1e-5  # the shares still add up to the score


def test_photo_to_photo_on_photos_no_device_head_knows(neutral, space):
    from mbm.scenarios.retrieval.search import encode_query, search

    idx, truth = neutral
    other = sorted((EVERYDAY / "collection" / "kangaroo").glob("*.jpg"))[1]  # another kangaroo, not indexed
    q = encode_query(space, idx, photo=str(other))
    top = search(space, idx, q, space.weights, k=1)[0]
    assert truth[idx.items[top.index]["path"]] == "kangaroo"


def test_off_topic_means_off_everything_and_names_the_nearest(neutral, space):
    from mbm.scenarios.retrieval.encoders import text_vectors

    idx, _ = neutral
    life, car, kangaroo = (space.read_text(v, idx) for v in text_vectors(
        ["the meaning of life", "a red sports car", "a pouched animal that hops"]))
    assert life.off_topic is not None and life.nearest_cos < space.concepts.off_topic_floor
    assert car.off_topic is None and kangaroo.off_topic is None  # ImageNet concepts are known now
    lists = json.loads((ROOT / "tools" / "experiments" / "retrieval_scripts" / "topic_texts.json").read_text())
    un = space.off_topic_open(text_vectors(lists["unrelated"]))
    fair = space.off_topic_open(text_vectors(lists["fair"]))
    assert un.mean() >= 0.8 and fair.mean() <= 0.05, (un.mean(), fair.mean())  # shipped: 0.90 / 0.0
    # the threshold's validation lists are apart from the reported ones
    assert not set(lists["validation_unrelated"]) & set(lists["unrelated"])
    # (three fair texts were written into both lists by mistake, before any scoring; docs/retrieval.md reports
    # the fair share with and without them)
    assert set(lists["validation_fair"]) & set(lists["fair"]) <= {"a teddy bear", "a violin", "a toaster"}


def test_item_texts_and_names_are_searched(tmp_path, space):
    from mbm.scenarios.retrieval.concepts import name_words
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.search import encode_query, search

    assert name_words("Holiday_Photos/IMG_2031 hopping-kangaroo.jpg") == "holiday photos hopping kangaroo"
    assert name_words("DSC00042.JPG") == "" and name_words("") == ""
    d = tmp_path / "c"
    d.mkdir()
    cup = sorted((EVERYDAY / "collection" / "cup").glob("*.jpg"))
    shutil.copyfile(cup[0], d / "a.jpg")
    shutil.copyfile(cup[1], d / "b.jpg")
    (d / "b.txt").write_text("grandmother's wedding present", encoding="utf-8")
    idx = build(d, tmp_path / "i.npz", progress=False, space=space, log=lambda *_: None)
    q = encode_query(space, idx, text="a wedding gift from my grandma")
    top = search(space, idx, q, space.weights, k=1)[0]
    assert idx.items[top.index]["path"] == "b.jpg" and any("caption" in w for w in top.why), top.why


def test_an_index_of_the_old_format_or_with_bad_concepts_is_refused(tmp_path, neutral):
    import mbm.scenarios.retrieval.index as mi

    idx, _ = neutral
    bad = mi.Index(**{**idx.__dict__, "concept_ids": np.full_like(idx.concept_ids, 4000)})
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="concept_ids"):
        mi.Index.load(tmp_path / "bad.npz")
    old = tmp_path / "old.npz"
    manifest = {"format": "mbm-retrieval-index-1", "root": str(tmp_path), "root_relative": None, "items": []}
    np.savez(old, manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    with pytest.raises(InputError, match="rebuild it"):
        mi.Index.load(old)


def test_everyday_demo_collection_is_credited_and_its_examples_keep_their_promise():
    from mbm.ui.retrieval import EXAMPLES, search_collection

    credits = (EVERYDAY / "CREDITS.md").read_text(encoding="utf-8")
    photos = sorted((EVERYDAY / "collection").rglob("*.jpg"))
    assert "Caltech-101" in credits and "CC BY 4.0" in credits
    assert len(photos) >= 24 and all(f"collection/{p.parent.name}/{p.name}" in credits for p in photos)
    everyday = [(row, cap) for row, cap in EXAMPLES if len(row) > 3 and row[3] == "everyday"]
    typed = [(row, cap) for row, cap in everyday if row[2]]
    spoken = [(row, cap) for row, cap in everyday if row[0]]
    assert typed and spoken
    folders = {p.parent.name.replace("_", " ") for p in photos}
    for row, _ in typed:  # a description that names no folder
        assert not any(f in row[2].lower() for f in folders), row[2]
    for row, want in ((typed[0][0], "accordion"), (spoken[0][0], "starfish")):
        _, _, details = search_collection(speech=row[0], photo=row[1], text=row[2], k=3, collection_name="everyday")
        assert details["results"][0]["item"].startswith(want + "/"), details["results"][:2]
        assert details["results"][0]["why"] and not details["warnings"]


def test_retraining_writes_the_shipped_open_vocabulary_constants_and_the_cli_checks_its_input(space, tmp_path):
    from mbm.scenarios.retrieval.concepts import DEFAULTS
    from mbm.scenarios.retrieval.evaluate import main

    assert space.concepts.constants == DEFAULTS  # train.py builds the section with these
    assert len(space.concepts.names) == 1000 and len(space.concepts.texts) == len(space.concepts.text_vectors)
    assert main(["--collection", str(tmp_path / "missing"), "--queries", str(tmp_path / "q.json")]) == 2
    (tmp_path / "c" / "cup").mkdir(parents=True)
    (tmp_path / "q.json").write_text(json.dumps({"kangaroo": ["a kangaroo"]}), encoding="utf-8")
    assert main(["--collection", str(tmp_path / "c"), "--queries", str(tmp_path / "q.json")]) == 2
