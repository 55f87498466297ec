"""The tiny scenario's tab: two boxes of numbers in, the label out (the predictor from the registry)."""

from __future__ import annotations

from mbm.ui import models


def numbers(box: str) -> list[float] | None:
    """A box's numbers (None when it is empty)."""
    return [float(v) for v in box.split()] if box.strip() else None


def ask(image: str, text: str) -> dict:
    """The tab's answer to two boxes of numbers."""
    return models.predictor("tiny").predict(image=numbers(image), text=numbers(text))


def tiny_tab() -> None:
    """Build the tab inside the current ``gr.Blocks``."""
    import gradio as gr

    image = gr.Textbox(label="image: 8 numbers")
    text = gr.Textbox(label="text: 8 numbers")
    answer = gr.JSON(label="answer")
    gr.Button("Predict").click(ask, [image, text], answer)
