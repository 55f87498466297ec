"""The answer at a glance: every tab's answer box says how sure it is in its look and words,
and every request the page paints is cancelled by a newer one, by Clear and by an example click."""

from __future__ import annotations

import pytest

from mbm.ui.common import answer_html


def test_the_box_escapes_and_names_its_state():
    box = answer_html("unsure", "Not sure · <b>x</b>", "a & b")
    assert 'class="mbm-answer mbm-unsure"' in box and 'data-state="unsure"' in box
    assert "&lt;b&gt;x&lt;/b&gt;" in box and "a &amp; b" in box and "<b>" not in box
    assert 'data-state="none"' in answer_html("made-up", "x")  # an unknown state is shown as no answer


def _portrait_result(identity="s1", score=1.0, threshold=0.0, confidences=None):
    from mbm.scenarios.portrait.predictor import PortraitResult

    return PortraitResult(identity=identity, score=score, threshold=threshold, top5=[("s1", score), ("s2", -1.0)],
                          confidences={"s1": 0.9, "s2": 0.1} if confidences is None else confidences,
                          modality_weights={"face": 1.0, "voice": 0.0, "profile": 0.0}, face_crop=None)


@pytest.mark.parametrize("kwargs, state, words", [
    ({"score": 1.5}, "sure", "Very likely"),
    ({"score": 0.5}, "sure", "Likely"),
    ({"score": 0.1}, "unsure", "Not sure · probably Alex (s1)"),  # just over the threshold
    ({"confidences": {"s1": 0.2, "s2": 0.2}}, "unsure", "several people fit"),
    ({"identity": "unknown", "score": -0.5}, "none", "Not a person in the gallery"),
])
def test_portrait_answers_are_sure_only_well_over_the_threshold(kwargs, state, words):
    from mbm.ui.portrait_handlers import portrait_answer

    got_state, lead, detail = portrait_answer(_portrait_result(**kwargs))
    assert got_state == state and words.lower() in f"{lead} {detail}".lower(), (got_state, lead, detail)


def test_search_answers():
    from mbm.ui.retrieval import search_answer

    rows = [{"item": "tv/tv_1.jpg", "score": 2.5}, {"item": "tv_2.jpg", "score": 2.0}]
    assert 'data-state="sure"' in search_answer({"results": rows}) and "tv_1.jpg" in search_answer({"results": rows})
    off = search_answer({"results": rows, "warnings": ['"a red sports car" is nearer to "sports car"']})
    assert 'data-state="unsure"' in off and "Not sure" in off and "sports car" in off
    assert 'data-state="none"' in search_answer({"results": []}) and 'data-state="none"' in search_answer(None)


def test_newest_request_wins_whatever_order_they_run_in():
    from types import SimpleNamespace

    from mbm.ui.common import Newest

    newest, page, other = Newest(keep=2), SimpleNamespace(session_hash="a"), SimpleNamespace(session_hash="b")
    assert newest.start("vc", page, 10) and not newest.superseded("vc", page, 10)
    assert newest.start("vc", page, 20)  # a newer request of the same page and tab
    assert newest.superseded("vc", page, 10) and not newest.superseded("vc", page, 20)
    assert not newest.start("vc", page, 15)  # started after a newer one: dropped at once
    assert newest.start("search", page, 1) and newest.start("vc", other, 1)  # other tabs and pages apart
    assert newest.start("vc", None, None) and not newest.superseded("vc", page, None)  # API calls: never
    assert len(newest.seen) == 2  # bounded


@pytest.fixture(scope="module")
def config():
    import app

    return app.demo.get_config_file()


def _ids(config, elem_id):
    return {c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id}


@pytest.mark.parametrize("answer, clear, request_id", [("vc-headline", "vc-clear", "vc-request-id"),
                                                       ("pt-headline", "pt-clear", "pt-request-id"),
                                                       ("search-headline", None, "search-request-id")])
def test_every_request_that_paints_the_answer_is_numbered_and_cancelled_by_clear(config, answer, clear, request_id):
    """The events that paint a tab's answer box: each runs at once ("multiple") with a request id the page
    numbers (an older one then paints nothing: common.Newest), and Clear cancels every one (cancels=)."""
    from mbm.ui.common import REQUEST_ID_JS

    deps = config["dependencies"]
    answer_id, rid = _ids(config, answer).pop(), _ids(config, request_id).pop()
    painters = [d for d in deps if d["backend_fn"] and answer_id in d["outputs"]]
    assert len(painters) >= 3, answer  # Run, Enter in the text box, the examples (and the robustness controls)
    for d in painters:
        assert d["inputs"][-1] == rid and d["js"] == REQUEST_ID_JS and d["trigger_mode"] == "multiple", d["id"]
    if clear:
        target = _ids(config, clear).pop()
        cancelled = {i for d in deps if [target, "click"] in [list(t) for t in d["targets"]] for i in d["cancels"]}
        assert {d["id"] for d in painters} <= cancelled, (clear, cancelled)
