"""An OpenAI-compatible HTTP server for a checkpoint (FastAPI + uvicorn).

    python -m minimind_lib.serve CHECKPOINT [--host 127.0.0.1] [--port 8000] [--model-name NAME]
    python -m minimind_lib.serve sft --profile tiny       # a stage's checkpoint by name

CHECKPOINT is a saved checkpoint directory (config.json, model.safetensors, tokenizer files:
what each stage writes to out/<profile>/<stage>/, or an exported Llama copy), or a stage name
(pretrain, sft, dpo, grpo) looked up in the profile. The served model's id is `--model-name`,
by default the checkpoint directory's name.

- `GET /v1/models`: the one model.
- `POST /v1/chat/completions`: messages (system / user / assistant) rendered by the chat
  template exactly as `chat.chat` renders them; temperature (0 = greedy; default 1, as
  OpenAI's), top_p, max_tokens (or max_completion_tokens), stop, seed, n (only 1), and
  `stream=true` for server-sent events in OpenAI's chunk format. Other OpenAI fields are
  accepted and ignored.

Requests are served one at a time: a lock around the model, held from the first to the last
token of a reply (a second request waits for it). Generation goes through
`chat.stream_text`, whose pieces add up to `chat.continue_text`'s text; a client that leaves
a stream early closes that iterator, which stops the generation.

The context is the model's `config.max_position_embeddings`: the prompt's tokens plus
max_tokens must fit in it (a 400 otherwise). It is the one length every checkpoint carries
(a checkpoint directory does not say which profile trained it); the profile's training
length may be shorter, and a reply longer than that is allowed but tends to get worse.
Without max_tokens a reply gets at most `DEFAULT_MAX_TOKENS` tokens, fewer if the context
is shorter.

Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}}: 404 for an
unknown model or path, 400 for an invalid request (the message names the field), 500 for an
unexpected failure, after which the server keeps serving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Literal

import anyio
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .chat import STAGE_NOTEBOOKS, Outcome, Sampling, chat_prompt, load_stage, stream_text

log = logging.getLogger("minimind_lib.serve")

DEFAULT_MAX_TOKENS = 256
_END = object()  # what next() returns at the end of a reply


# ---------------------------------------------------------------------------------------------
# Loading a checkpoint
# ---------------------------------------------------------------------------------------------
def load_checkpoint(checkpoint: str | Path, profile: str | None = None):
    """(model, tokenizer, directory) of a checkpoint directory, or of a stage of `profile`
    (default: `$MINIMIND_PROFILE`, else full with CUDA and tiny without). A missing one is
    a `FileNotFoundError` with a one-line message naming the path (or the notebook to run)."""
    from transformers import AutoModelForCausalLM

    from .profiles import get_profile
    from .runtime import device
    from .tokenizer import load_tokenizer

    path = Path(checkpoint)
    if not path.exists() and str(checkpoint) in STAGE_NOTEBOOKS:
        prof = get_profile(profile)
        model, tokenizer = load_stage(prof, str(checkpoint))
        return model.to(device()), tokenizer, prof.stage_dir(str(checkpoint))
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: no such checkpoint directory (nor a stage name: {', '.join(STAGE_NOTEBOOKS)})"
        )
    for needed in ("config.json", "tokenizer.json"):
        if not (path / needed).is_file():
            raise FileNotFoundError(f"{path}: no {needed}, not a saved checkpoint directory")
    model = AutoModelForCausalLM.from_pretrained(path).to(device()).eval()
    return model, load_tokenizer(path), path


# ---------------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------------
class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value):
        """OpenAI's list form [{"type": "text", "text": ...}, ...] becomes one string."""
        if not isinstance(value, list):
            return value
        if not all(isinstance(p, dict) and p.get("type") == "text" for p in value):
            raise ValueError("only text content is supported ({'type': 'text', 'text': ...} parts)")
        if not all(isinstance(p.get("text"), str) for p in value):
            raise ValueError("every text part needs a string 'text'")
        return "".join(p["text"] for p in value)


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)  # the range torch.manual_seed takes
    stream: bool | None = False
    stream_options: dict | None = None


class ApiError(Exception):
    """A request the server refuses: rendered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.kind)


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------------------------------------
# Stop strings
# ---------------------------------------------------------------------------------------------
def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    for k in range(min(max(map(len, stops)) - 1, len(text)), 0, -1):
        if any(s.startswith(text[-k:]) for s in stops):
            return k
    return 0


def reply_pieces(model, tokenizer, prompt: str, sampling: Sampling, stops: Sequence[str],
                 outcome: Outcome) -> Iterator[str]:
    """`stream_text`'s pieces, cut before the first stop string (then finish_reason "stop").

    Text that might be the start of a stop string is held back until it is known not to be,
    so the pieces always add up to the non-streamed reply."""
    stream = stream_text(model, tokenizer, prompt, sampling, outcome=outcome)
    text, sent, cut = "", 0, None
    try:
        for piece in stream:
            seen = len(text)
            text += piece
            hits = [i for s in stops if (i := text.find(s, max(0, seen - len(s) + 1))) >= 0]
            if hits:
                cut = min(hits)
                break
            safe = len(text) - (_held_back(text, stops) if stops else 0)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
    finally:
        stream.close()  # stops the generation if it is still running; fills in `outcome`
    if cut is not None:
        outcome.finish_reason = "stop"
        if cut > sent:
            yield text[sent:cut]
    elif len(text) > sent:
        yield text[sent:]


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------
def create_app(model, tokenizer, model_name: str) -> FastAPI:
    """The FastAPI app serving `model` as `model_name`, one request at a time."""
    app = FastAPI(title="MiniMind", summary="An OpenAI-compatible chat completions server")
    lock = anyio.Lock()
    created = int(time.time())
    context = int(model.config.max_position_embeddings)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        problems = []
        for e in err.errors():
            if e.get("type") == "json_invalid":
                problems.append(("", f"the request body is not valid JSON ({e['ctx']['error']})"))
                continue
            loc = [str(x) for x in e.get("loc", ())[1:]] or ["body"]  # loc[0] is "body"
            problems.append((".".join(loc), e.get("msg", "invalid")))
        param = problems[0][0] if problems else None
        message = "; ".join(f"{p}: {m}" if p else m for p, m in problems) or "invalid request"
        return error_response(400, message, param=param or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, f"{request.method} {request.url.path}: {err.detail}")

    def internal_error(err: Exception) -> JSONResponse:
        log.error("unexpected error: %s", err, exc_info=err)
        return error_response(500, f"internal error: {type(err).__name__}: {err}", kind="server_error")

    @app.exception_handler(Exception)  # a backstop: chat_completions answers its own failures
    async def _unexpected(request: Request, err: Exception):
        return internal_error(err)

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "minimind"}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        if name != model_name:
            raise unknown_model(name)
        return model_card()

    def unknown_model(name: str) -> ApiError:
        return ApiError(404, f"The model '{name}' does not exist; this server serves '{model_name}'",
                        param="model", code="model_not_found")

    def prepare(req: ChatRequest):
        """(prompt, its token count, sampling, stop strings) of a valid request, else ApiError."""
        if req.model != model_name:
            raise unknown_model(req.model)
        if req.n not in (None, 1):
            raise ApiError(400, f"n: only n=1 is supported, got {req.n}", param="n")
        messages = [m.model_dump() for m in req.messages]
        prompt = chat_prompt(tokenizer, messages)
        prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        room = context - prompt_tokens
        max_tokens = req.max_tokens or req.max_completion_tokens
        if max_tokens is None and room >= 1:
            max_tokens = min(DEFAULT_MAX_TOKENS, room)
        if max_tokens is None or max_tokens > room:
            asked = f" plus max_tokens {max_tokens}" if max_tokens else ""
            raise ApiError(
                400,
                f"messages: the prompt is {prompt_tokens} tokens{asked}, more than the model's "
                f"context of {context} tokens; shorten the messages or lower max_tokens",
                param="messages", code="context_length_exceeded",
            )
        sampling = Sampling(
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            max_new_tokens=max_tokens,
        )
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        return prompt, prompt_tokens, sampling, [s for s in stops if s]

    async def pieces(prompt: str, sampling: Sampling, stops, seed, outcome) -> AsyncIterator[str]:
        """The reply piece by piece, each generated in a worker thread, holding the model lock."""
        async with lock:
            if seed is not None:
                torch.manual_seed(seed)
            it = reply_pieces(model, tokenizer, prompt, sampling, stops, outcome)
            try:
                while (piece := await anyio.to_thread.run_sync(next, it, _END)) is not _END:
                    yield piece
            finally:  # also on a client's disconnect (cancellation): stop the generation
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(it.close)

    def usage(outcome: Outcome) -> dict:
        return {
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        }

    def finish(outcome: Outcome) -> str:
        return "length" if outcome.finish_reason == "length" else "stop"

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        # Answered here rather than by the exception handler, which would also re-raise the
        # error to uvicorn, and uvicorn then drops the client's keep-alive connection.
        try:
            return await complete(req)
        except ApiError as err:
            return err.response()
        except Exception as err:
            return internal_error(err)

    async def complete(req: ChatRequest):
        prompt, prompt_tokens, sampling, stops = prepare(req)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_name}
        outcome = Outcome(prompt_tokens=prompt_tokens)
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                events(head, pieces(prompt, sampling, stops, req.seed, outcome), outcome, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        async with contextlib.aclosing(pieces(prompt, sampling, stops, req.seed, outcome)) as reply:
            text = "".join([piece async for piece in reply])
        return {
            **head,
            "object": "chat.completion",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish(outcome),
            }],
            "usage": usage(outcome),
        }

    async def events(head: dict, reply: AsyncIterator[str], outcome: Outcome, include_usage: bool):
        """Server-sent events: the role, the content pieces, the finish reason, [DONE]."""

        def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            body = {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}
            if include_usage and "usage" not in extra:
                body["usage"] = None
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        try:
            async with contextlib.aclosing(reply):
                async for piece in reply:
                    yield chunk({"content": piece})
        except Exception as err:  # the status line is sent: report it in the stream
            log.error("unexpected error while streaming: %s", err, exc_info=err)
            error = {"message": f"internal error: {type(err).__name__}: {err}",
                     "type": "server_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
            return
        yield chunk({}, finish(outcome))
        if include_usage:
            body = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage(outcome)}
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"

    return app


@contextlib.contextmanager
def background_server(model, tokenizer, model_name: str, host: str = "127.0.0.1") -> Iterator[str]:
    """The server on a free port of `host`, in a background thread of this process (a notebook,
    a test). Yields its base URL (`http://HOST:PORT/v1`); stops it on leaving."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(create_app(model, tokenizer, model_name), log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from .profiles import PROFILES

    parser = argparse.ArgumentParser(prog="python -m minimind_lib.serve", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a saved checkpoint directory, or a stage name: "
                        f"{', '.join(STAGE_NOTEBOOKS)} (see --profile)")
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="the profile a stage name belongs to (default: $MINIMIND_PROFILE, "
                             "else full with CUDA and tiny without)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model-name", help="the model id clients ask for "
                        "(default: the checkpoint directory's name)")
    args = parser.parse_args(argv)
    try:
        model, tokenizer, path = load_checkpoint(args.checkpoint, args.profile)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    name = args.model_name or Path(path).resolve().name
    print(f"serving {path} as '{name}' at http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(create_app(model, tokenizer, name), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
