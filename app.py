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
import sys

# timm imports torchvision's ops, which import torch._dynamo, which imports triton (installed with the CUDA
# torch wheel): 74 MB resident for a GPU compiler this server never runs. A None entry makes `import triton`
# fail, and torch's own check (importlib.util.find_spec) then reports it absent (docs/reliability.md).
sys.modules.setdefault("triton", None)

# numpy's BLAS on one thread, as torch is below: with several requests on two cores, its spinning threads
# made a search at 10,000 items 3-4x slower (python -m tools.retrieval_bench; docs/retrieval.md).
# Set before numpy is first imported; the environment may still choose otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gradio as gr
import torch

from mbm.limits import (
    MAX_REQUEST_BYTES,
    MAX_SESSIONS,
    MAX_UPLOAD_BYTES,
    BodyLimitMiddleware,
    env_int,
    freeze_startup_objects,
    tame_malloc,
)
from mbm.scenarios import SCENARIOS
from mbm.ui import evaluation
from mbm.ui.common import ANSWER_CSS, remove_stale_outputs
from mbm.ui.params import check_arguments
from mbm.ui.retrieval_collections import clear_collections

# Uploads above this are refused by Gradio before they reach the model; any other request body (an API
# call's JSON, where a file can be inlined as a data URL) above MBM_MAX_REQUEST_MB is refused with 413
# before it is parsed (mbm.limits; docs/reliability.md).
MAX_FILE_SIZE = MAX_UPLOAD_BYTES
# Gradio's cache (uploads, served outputs): every 5 minutes, files older than 15 minutes are deleted;
# the whole cache is deleted at a restart.
DELETE_CACHE = (300, 900)
# Requests that decode files run at most this many at once, all endpoints together (one concurrency group,
# mbm.limits.HEAVY_CONCURRENCY_ID; MBM_CONCURRENCY overrides). Under `python -m tools.loadtest`
# p95 was 0.84 s with 4, 1.11 s with 2 and 0.76 s with 8 (within this machine's spread of 4).
CONCURRENCY = env_int("MBM_CONCURRENCY", 4, minimum=1)
# One torch thread per request: with several requests at once on two cores, more threads fight over them
# (python -m tools.loadtest; docs/voice_control.md, Speed). MBM_THREADS overrides.
torch.set_num_threads(env_int("MBM_THREADS", 1, minimum=1))
QUEUE_SIZE = 32  # requests waiting beyond this are told the app is busy
# Tables in Markdown (the search results): cells keep their words whole and a table wider
# than a phone scrolls sideways, instead of wrapping "door_2.jpg" into "door_2.jp / g".
CSS = (".prose table { display: block; overflow-x: auto; width: fit-content; max-width: 100%;"
       " border: none !important; } .prose th, .prose td { white-space: nowrap; }"
       " @media (max-width: 480px) { .prose th, .prose td { padding: 4px 6px !important; } }"
       # the Evaluation tab's table and figures one under the other on a phone, each full width
       " @media (max-width: 640px) { #ev-accuracy, #ev-robustness, #ev-confusion-device, #ev-confusion-word"
       " { flex: 1 1 100% !important; min-width: 100% !important; } }"
       + ANSWER_CSS)  # the answer at a glance: its look follows the confidence (mbm.ui.common)

remove_stale_outputs()  # output images and report exports an earlier run left in the temp folder
clear_collections()  # visitors' uploaded search collections an earlier run left (kept within a budget meanwhile)
tame_malloc()  # memory a big request freed goes back to the system (glibc), not kept per thread

with gr.Blocks(title="mbm: multimodal fusion demo", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown("# mbm: multimodal fusion\nOne model, three inputs (sound, image, text), fused by attention.")
    with gr.Tabs(overflow_behavior="wrap"):  # every tab reachable on a phone
        for scenario in SCENARIOS.values():  # one tab per registered scenario (mbm/scenarios)
            with gr.Tab(scenario.title, id=scenario.name):
                on_load = scenario.part("tab")()  # None, or events to run when a page opens
            if on_load:
                event = demo.load(**on_load[0])
                for step in on_load[1:]:
                    event = event.then(**step)
        with gr.Tab("Evaluation", id="evaluation", elem_id="evaluation-tab") as evaluation_tab:
            load_evaluation, show_evaluation = evaluation.evaluation_tab()
    evaluation_tab.select(**load_evaluation).then(**show_evaluation)  # read afresh: the file may be rewritten

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
check_arguments(demo)  # missing arguments are absent; a non-file where a file goes: a message naming it
freeze_startup_objects()  # the periodic garbage collection (tame_malloc) then scans only what requests make

if __name__ == "__main__":
    from starlette.middleware import Middleware

    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME"),
                server_port=env_int("GRADIO_SERVER_PORT", 7860, minimum=1),
                max_file_size=MAX_FILE_SIZE, show_error=True, css=CSS,  # messages only: handlers never raise tracebacks
                state_session_capacity=MAX_SESSIONS,  # visitors' session galleries kept at once (oldest dropped)
                app_kwargs={"middleware": [Middleware(BodyLimitMiddleware, limit=MAX_REQUEST_BYTES)]})
