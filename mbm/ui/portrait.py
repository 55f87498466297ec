"""The Portrait recognition tab: face + voice + text profile -> who it is, or unknown; enrol and remove people.

The recognition half's layout and events are here; enrolling, removing and the People list are in
``mbm.ui.portrait_people``, what the events call in ``mbm.ui.portrait_handlers``.
"""

from __future__ import annotations

import json

import gradio as gr

from mbm.limits import HEAVY_CONCURRENCY_ID
from mbm.paths import PORTRAIT_EXAMPLES
from mbm.ui.common import REQUEST_ID_JS, cancel_on, echo_markdown
from mbm.ui.examples import example_cards, load_examples
from mbm.ui.portrait_handlers import (
    NO_ANSWER_YET,
    SESSION_TTL_S,
    SHOW_ANSWER,
    portrait_help,
    portrait_view,
    predict_portrait,
)
from mbm.ui.portrait_people import people_section


def portrait_tab():
    """The Portrait recognition tab; returns the event that fills the People list on page load."""
    gr.Markdown(portrait_help(), elem_id="pt-help")
    examples_row = gr.Row()  # the examples come first (filled below, once the outputs exist)
    with gr.Row(equal_height=False):
        with gr.Column():
            face = gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None, label="Face photo",
                            height=260, elem_id="pt-face")
            voice = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Voice clip",
                             elem_id="pt-voice")
            text = gr.Textbox(label="Text profile (optional)", max_lines=2, elem_id="pt-text",
                              placeholder="e.g. tall, wears glasses, works in the lab, speaks with a Scottish accent")
            with gr.Row():
                clear = gr.ClearButton(value="Clear", elem_id="pt-clear")
                run = gr.Button("Run", variant="primary", elem_id="pt-run")
        with gr.Column():
            headline = gr.HTML(NO_ANSWER_YET, elem_id="pt-headline")  # the answer at a glance
            identity = gr.Label(num_top_classes=5, label="Identity (top 5, or unknown)", show_heading=False,
                                elem_id="pt-identity")
            # the chart gets the column's width: beside the crop it was squeezed to ~7 px text
            weights = gr.HTML(label="Per-modality attention weights", elem_id="pt-weights")
            crop = gr.Image(label="Face used", interactive=False, height=170, elem_id="pt-crop")
            status = echo_markdown(label="Status", elem_id="pt-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(label="Result", show_label=False, elem_id="pt-json")
    session = gr.State(None, time_to_live=SESSION_TTL_S)  # this visitor's own enrolments (a Gallery)
    heavy = {"concurrency_id": HEAVY_CONCURRENCY_ID}  # one limit shared by every event that decodes files
    inputs, outputs = [face, voice, text], [identity, weights, crop, status, details]
    clear.add(inputs + outputs)
    clear.click(None, None, headline, js=f"() => {json.dumps(NO_ANSWER_YET)}", api_visibility="private", queue=False)
    # numbered requests, run at once: an older one still running paints nothing (common.Newest)
    request_id = gr.Number(visible=False, elem_id="pt-request-id")
    view = dict(fn=portrait_view, inputs=inputs + [session, request_id], outputs=outputs + [headline],
                preprocess=False, api_visibility="private", js=REQUEST_ID_JS, trigger_mode="multiple", **heavy)
    requests = [run.click(**view), text.submit(**view)]
    for request in requests:  # on a phone the answer is below the inputs
        request.then(**SHOW_ANSWER)
    with gr.Row(visible=False):  # the API endpoint (the page reaches the same prediction through the events above)
        api_run = gr.Button("portrait", elem_id="pt-api-run")
    api_run.click(predict_portrait, inputs + [session], outputs, api_name="portrait", preprocess=False, **heavy)
    rows, captions = load_examples(PORTRAIT_EXAMPLES, file_keys=("face", "voice"))
    if rows:
        with examples_row:
            load_example = example_cards(rows, captions, inputs, photo=0, label="Examples: click one to run it",
                                         elem_id="pt-examples")
        example_run = load_example.then(**view)
        example_run.then(**SHOW_ANSWER)  # on a phone the answer is below the inputs
        requests.append(example_run)
    cancel_on([clear.click], requests)  # Clear during a prediction: its answer never paints beside empty inputs

    return people_section(session, heavy)
