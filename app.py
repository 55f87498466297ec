"""mbm web app: a Gradio front end over the ``mbm`` fusion library.

UI only: each tab is built by its own module in ``mbm/ui/``; every model decision lives in ``mbm``.

    python app.py                      # http://127.0.0.1:7860
    GRADIO_SERVER_PORT=8080 GRADIO_SERVER_NAME=0.0.0.0 python app.py
    MBM_GALLERY_DIR=/data/portrait_gallery python app.py   # where enrolled people are saved
                                       # (default ~/.cache/mbm/portrait_gallery; survives restarts)

``import app`` gives a ready ``app.demo`` without launching a server (building it loads the
shipped checkpoints, once).
"""

from __future__ import annotations

import os

import gradio as gr
import torch

from mbm.ui import evaluation, portrait, voice_control
from mbm.ui.common import env_int

MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach the model
# Requests of each kind run at once (MBM_CONCURRENCY overrides). Under `python -m mbm.loadtest`
# p95 was 0.84 s with 4, 1.11 s with 2 and 0.76 s with 8 (within this machine's spread of 4).
CONCURRENCY = env_int("MBM_CONCURRENCY", 4, minimum=1)
# One torch thread per request: with several requests at once on two cores, more threads fight over them
# (python -m mbm.loadtest; docs/speed.md). MBM_THREADS overrides.
torch.set_num_threads(env_int("MBM_THREADS", 1, minimum=1))
QUEUE_SIZE = 32  # requests waiting beyond this are told the app is busy

with gr.Blocks(title="mbm: multimodal fusion demo") as demo:
    gr.Markdown("# mbm: multimodal fusion\nOne model, three inputs (sound, image, text), fused by attention.")
    with gr.Tabs():
        with gr.Tab("Voice control", id="voice_control"):
            voice_control.voice_control_tab()
        with gr.Tab("Portrait recognition", id="portrait"):
            refresh_people, show_people = portrait.portrait_tab()
        with gr.Tab("Evaluation", id="evaluation", elem_id="evaluation-tab") as evaluation_tab:
            load_evaluation, show_evaluation = evaluation.evaluation_tab()
    evaluation_tab.select(**load_evaluation).then(**show_evaluation)  # read afresh: the file may be rewritten
    demo.load(**refresh_people).then(**show_people)  # the People list, as saved now

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME"),
                server_port=env_int("GRADIO_SERVER_PORT", 7860, minimum=1),
                max_file_size=MAX_FILE_SIZE)
