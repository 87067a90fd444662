"""An ipywidgets chat box for any stage's checkpoint, with a plain-text mode.

    box = ChatBox(lambda stage: load_stage(profile, stage), stages=["sft", "dpo", "grpo"])
    box                                   # in Jupyter: history, text box, Send / Stop, sliders
    box.send("What is 3 plus 4?")         # one turn without the widget: printed as plain text

The pretrained stage has no chat format: with it the box continues the text you type.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence

import ipywidgets as w

from .chat import Sampling, stream_chat, stream_text, trim_history

CONTINUE_STAGES = ("pretrain",)  # stages used by raw continuation instead of the chat template


class ChatBox:
    def __init__(
        self,
        load: Callable[[str], tuple],
        stages: Sequence[str],
        stage: str | None = None,
        sampling: Sampling | None = None,
    ):
        """`load(stage)` returns (model, tokenizer); each stage is loaded once, when chosen."""
        self._load, self._loaded = load, {}
        self.messages: list[dict] = []
        self.stop_event = threading.Event()
        self._busy = threading.Lock()
        s = sampling or Sampling(temperature=0.7, top_p=0.9, max_new_tokens=64)
        stages = list(stages)
        self.stage = w.Dropdown(options=stages, value=stage or stages[-1], description="stage")
        slider = dict(continuous_update=False, style={"description_width": "initial"})
        self.temperature = w.FloatSlider(
            value=s.temperature, min=0, max=2, step=0.05, description="temperature", **slider
        )
        self.top_p = w.FloatSlider(
            value=s.top_p, min=0.05, max=1, step=0.05, description="top_p", **slider
        )
        self.top_k = w.IntSlider(value=s.top_k, min=0, max=100, description="top_k", **slider)
        self.repetition_penalty = w.FloatSlider(
            value=s.repetition_penalty,
            min=1,
            max=2,
            step=0.05,
            description="repetition_penalty",
            **slider,
        )
        self.max_new_tokens = w.IntSlider(
            value=s.max_new_tokens, min=8, max=256, step=8, description="max_new_tokens", **slider
        )
        self.history = w.HTML(
            layout=w.Layout(
                border="1px solid #ccc",
                padding="6px",
                min_height="120px",
                max_height="360px",
                overflow="auto",
            )
        )
        self.text = w.Textarea(
            placeholder="Type a message / 输入消息", layout=w.Layout(width="100%", height="60px")
        )
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop")
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.status = w.Label()
        self.send_button.on_click(lambda _: self._send_from_widget())
        self.stop_button.on_click(lambda _: self.stop_event.set())
        self.clear_button.on_click(lambda _: self.clear())
        self.stage.observe(lambda _: self.clear(), names="value")
        controls = w.VBox(
            [
                self.stage,
                self.temperature,
                self.top_p,
                self.top_k,
                self.repetition_penalty,
                self.max_new_tokens,
            ]
        )
        buttons = w.HBox([self.send_button, self.stop_button, self.clear_button, self.status])
        self.widget = w.HBox(
            [w.VBox([self.history, self.text, buttons], layout=w.Layout(width="62%")), controls]
        )
        self._render()

    # ---- state -------------------------------------------------------------------------------
    def sampling(self) -> Sampling:
        """The sliders' current values."""
        return Sampling(
            self.temperature.value,
            self.top_p.value,
            self.top_k.value,
            self.repetition_penalty.value,
            self.max_new_tokens.value,
        )

    def model(self):
        name = self.stage.value
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def clear(self) -> None:
        """Forget the conversation (and stop a reply being generated)."""
        self.stop_event.set()
        self.messages = []
        self._render()

    # ---- one turn ----------------------------------------------------------------------------
    def send(self, text: str, echo: bool = True) -> str:
        """Add a user turn, stream the reply into the history; returns the reply.

        With `echo` the turn is also printed as plain text (where no widget can be shown).
        A chat stage sees the whole conversation through the chat template; the
        pretrained stage just continues `text`."""
        with self._busy:
            self.stop_event.clear()
            model, tokenizer = self.model()
            raw = self.stage.value in CONTINUE_STAGES
            if raw:
                self.messages = []  # a continuation has no history
            self.messages.append({"role": "user", "content": text})
            reply = {"role": "assistant", "content": ""}  # filled in as the pieces arrive
            self.messages.append(reply)
            if echo:
                print(f"user ({self.stage.value}): {text}\nassistant: ", end="", flush=True)
            budget = model.config.max_position_embeddings - self.max_new_tokens.value
            history = trim_history(tokenizer, self.messages[:-1], budget)
            pieces = (
                stream_text(model, tokenizer, text, self.sampling(), self.stop_event)
                if raw
                else stream_chat(model, tokenizer, history, self.sampling(), self.stop_event)
            )
            self.status.value = "generating ..."
            for piece in pieces:
                reply["content"] += piece
                self._render()
                if echo:
                    print(piece, end="", flush=True)
            stopped = self.stop_event.is_set()
            self.status.value = "stopped" if stopped else ""
            if echo:
                print(" [stopped]" if stopped else "")
            return reply["content"]

    def run_script(self, turns: Sequence[str]) -> list[str]:
        """A scripted conversation, turn by turn, printed as plain text."""
        return [self.send(turn) for turn in turns]

    def _send_from_widget(self) -> None:
        text = self.text.value.strip()
        if not text or self._busy.locked():
            return
        self.text.value = ""
        # Generate in a thread: the kernel stays free to receive the Stop button's click.
        threading.Thread(target=self._send_quietly, args=(text,), daemon=True).start()

    def _send_quietly(self, text: str) -> None:
        try:
            self.send(text, echo=False)
        except Exception as err:  # a thread's exception would be lost: show it in the box
            self.status.value = f"{type(err).__name__}: {err}"

    def _render(self) -> None:
        rows = []
        for m in self.messages:
            user = m["role"] == "user"
            body = html.escape(m["content"]).replace("\n", "<br>") or "…"
            style = "text-align:right;color:#1f4e9c" if user else "text-align:left"
            rows.append(f'<div style="{style};margin:2px 0"><b>{m["role"]}</b>: {body}</div>')
        self.history.value = "".join(rows) or "<i>no messages yet</i>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
