"""Run a notebook headless: in one process through nbclient, or in several through torchrun or
accelerate launch.

    python -m minimind_lib.run notebooks/03_pretrain.ipynb --profile tiny -p MAX_STEPS=50
    python -m minimind_lib.run notebooks/03_pretrain.ipynb --nproc 8
    python -m minimind_lib.run notebooks/03_pretrain.ipynb --config minimind_lib/configs/zero2.yaml

`-p NAME=VALUE` overrides a name the notebook's `parameters` cell assigns: the values go into
an "injected-parameters" cell right after it (papermill's convention), parsed as Python
literals (`-p RESUME=True`, `-p MAX_STEPS=50`), else taken as a string (`-p PROFILE=tiny`).

One process: the executed notebook (outputs and, on failure, the traceback) is written to
`out/<profile>/executed/<notebook>.ipynb`. Several processes (`--nproc N`, or `--config`): the
code cells become a plain script `out/<profile>/executed/<notebook>.py`, and torchrun (or
accelerate launch) starts it; `--to-script` only writes it (for a multi-node launch by hand).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
CONFIGS = Path(__file__).resolve().parent / "configs"


class RunError(Exception):
    """A problem with the command line or the notebook, shown as one line."""


# ---- parameters -----------------------------------------------------------------------------
def parse_value(text: str):
    """A Python literal (`True`, `50`, `None`, `"tiny"`, `[1, 2]`), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(items: list[str]) -> dict:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise RunError(f"-p {item!r}: expected NAME=VALUE")
        params[name] = parse_value(value)
    return params


def parameters_cell(nb) -> int:
    """Index of the cell tagged `parameters`."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return i
    raise RunError("the notebook has no code cell tagged 'parameters'")


def parameter_defaults(nb) -> dict:
    """The names the parameters cell assigns, in order, with their values when literal (else None)."""
    defaults = {}
    for node in ast.parse(nb.cells[parameters_cell(nb)].source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        try:
            literal = ast.literal_eval(value) if value is not None else None
        except ValueError:
            literal = None
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                    defaults[t.id] = literal if isinstance(target, ast.Name) else None
    return defaults


def _default(nb, name: str):
    """The literal value the parameters cell gives `name`, or None (no such cell or name)."""
    try:
        return parameter_defaults(nb).get(name)
    except RunError:
        return None


def inject(nb, params: dict, name: str = "notebook"):
    """A copy of `nb` with an "injected-parameters" cell right after its parameters cell."""
    import nbformat

    if not params:
        return nb
    valid = list(parameter_defaults(nb))
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise RunError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; "
            f"its parameters cell sets {', '.join(valid) or 'nothing'}"
        )
    nb = copy.deepcopy(nb)
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cell.id = uuid.uuid4().hex[:8]
    nb.cells.insert(parameters_cell(nb) + 1, cell)
    return nb


# ---- one process: nbclient --------------------------------------------------------------------
def _first_line(text: str, code: bool = False) -> str:
    """The first non-blank line (of code: the first that is not a comment)."""
    lines = (line.strip() for line in str(text).splitlines())
    return next((ln for ln in lines if ln and not (code and ln.startswith("#"))), "")


def execute(nb, path: Path, output: Path, log_output: bool = False) -> int:
    """Execute `nb` (read from `path`) in a fresh kernel; write it to `output`; 0 when every
    cell ran, else 1 with a one-line message naming the failing cell."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    from traitlets.config import Config

    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    injected = next((i for i, t in enumerate(tags) if INJECTED_TAG in t), None)

    def number(index: int) -> str:
        """A cell's number in the notebook itself (the injected cell has none)."""
        if injected is None or index < injected:
            return str(index)
        return "inj" if index == injected else str(index - 1)

    started: dict[int, float] = {}
    failed: dict = {}

    def on_start(cell, cell_index):
        started[cell_index] = time.perf_counter()

    def on_executed(cell, cell_index, execute_reply):
        if cell_index not in code:
            return
        seconds = time.perf_counter() - started.get(cell_index, time.perf_counter())
        status = execute_reply.get("content", {}).get("status", "ok")
        what = _first_line(cell.source, code=True)[:60]
        print(
            f"[{code.index(cell_index) + 1:>2}/{len(code)}] cell {number(cell_index):>3} "
            f"{status:<5} {seconds:6.1f} s  {what}",
            flush=True,
        )

    def on_error(cell, cell_index, execute_reply):
        failed.update(index=cell_index, count=cell.get("execution_count"))

    class Client(NotebookClient):
        interrupted = False

        async def _async_cleanup_kernel(self):
            # On SIGINT / SIGTERM nbclient's own handler shuts the kernel down at once; the cell
            # then fails with DeadKernelError and nbclient cleans up a second time: skip that.
            if self.km is None:
                self.interrupted = True
                return
            await super()._async_cleanup_kernel()

        def output(self, outs, msg, display_id, cell_index):
            if log_output and msg["msg_type"] == "stream":
                stream = sys.stderr if msg["content"]["name"] == "stderr" else sys.stdout
                stream.write(msg["content"]["text"])
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    # A local kernel talks over Unix sockets where there are any: over TCP, ipykernel warns on
    # every start that the connection is not encrypted. The sockets get an absolute path: the
    # kernel runs in the notebook's folder, the client here.
    sockets = tempfile.mkdtemp(prefix="minimind-kernel-") if os.name == "posix" else None
    transport = {"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}} if sockets else {}
    client = Client(
        nb,
        config=Config(transport),
        timeout=None,  # training cells run for hours on the full profile
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},  # the notebook's folder, as in Jupyter
        on_cell_start=on_start,
        on_cell_executed=on_executed,
        on_cell_error=on_error,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    status = 0
    try:
        client.execute()
    except CellExecutionError as e:
        index = failed.get("index")
        where = f"cell {number(index) if index is not None else '?'} (In [{failed.get('count')}])"
        error = f"{e.ename}: {_first_line(e.evalue)}" if e.ename else _first_line(e)
        print(
            f"error: {path.name} {where} failed: {error} (traceback in {output})",
            file=sys.stderr,
        )
        status = 1
    except DeadKernelError as e:
        if client.interrupted:
            print(f"interrupted; the partly executed copy is {output}", file=sys.stderr)
            status = 130
        else:
            print(f"error: {path.name}: the kernel died: {_first_line(e)}", file=sys.stderr)
            status = 1
    finally:
        nbformat.write(nb, str(output))
        if sockets:
            shutil.rmtree(sockets, ignore_errors=True)
    if status == 0:
        print(f"executed {path.name} -> {output}")
    return status


# ---- several processes: a script for torchrun / accelerate -----------------------------------
PRELUDE = """\
# Generated by `python -m minimind_lib.run` from {name}: its code cells in order, with the
# injected parameters. Edit the notebook, not this file.
from minimind_lib.run import script_mode

script_mode({figures!r})
"""


def to_script(nb, name: str, figures: str) -> str:
    """The notebook's code cells as one script. IPython-only lines (`%magic`, `!shell`) are
    commented out; `display` and `plt.show` get plain stand-ins (see `script_mode`)."""
    parts = [PRELUDE.format(name=name, figures=figures)]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines = cell.source.splitlines()
        if lines[0].lstrip().startswith("%%"):  # a cell magic: the whole cell is IPython's
            lines = [f"# {line}" for line in lines]
        else:
            lines = [
                f"# {line}  # IPython only" if line.lstrip().startswith(("%", "!")) else line
                for line in lines
            ]
        source = "\n".join(lines)
        try:
            ast.parse(source)
        except SyntaxError as e:
            raise RunError(
                f"{name} cell {i} is not plain Python: {e.msg} (line {e.lineno})"
            ) from None
        tags = cell.metadata.get("tags", [])
        parts.append(
            f"# %% cell {i}" + (f" [{', '.join(tags)}]" if tags else "") + "\n" + source + "\n"
        )
    return "\n\n".join(parts)


def script_mode(figures: str) -> None:
    """What a generated script calls first: a non-interactive matplotlib whose `plt.show()`
    saves the figures (`<figures>-1.png`, ... on the main process) and a plain-text `display`."""
    import IPython.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .runtime import is_main_process

    shown = [0]

    def show(*args, **kwargs):
        for num in plt.get_fignums():
            if is_main_process():
                shown[0] += 1
                Path(figures).parent.mkdir(parents=True, exist_ok=True)
                plt.figure(num).savefig(f"{figures}-{shown[0]}.png", dpi=100)
        plt.close("all")

    def display(*objs, **kwargs):
        for obj in objs:
            if isinstance(obj, IPython.display.HTML):
                print("[HTML output: run the notebook to see it]")
            elif isinstance(obj, IPython.display.TextDisplayObject):
                print(obj.data)
            elif hasattr(obj, "_repr_markdown_"):
                print(obj._repr_markdown_())
            else:
                print(obj)

    plt.show = show
    IPython.display.display = display


def launch_command(script: Path, nproc: int | None, config: Path | None) -> list[str]:
    if config is not None:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        if nproc:
            cmd += ["--num_processes", str(nproc)]
        return cmd + [str(script)]
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nproc_per_node", str(nproc), str(script),
    ]  # fmt: skip


# ---- command line -------------------------------------------------------------------------------
def _config_path(text: str) -> Path:
    path = Path(text)
    if not path.is_file() and (CONFIGS / text).is_file():
        path = CONFIGS / text  # a shipped config by name: ddp.yaml, zero2.yaml
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in CONFIGS.glob("*.yaml")))
        raise RunError(f"--config {text}: no such file (shipped configs: {shipped})")
    return path.resolve()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minimind_lib.run",
        description="Run a course notebook headless: one process (nbclient) or several "
        "(torchrun / accelerate launch).",
    )
    p.add_argument("notebook", type=Path)
    p.add_argument("--profile", help='shortcut for -p PROFILE="NAME" (tiny, full)')
    p.add_argument(
        "-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
        help="override a name of the parameters cell; VALUE is a Python literal or a string",
    )  # fmt: skip
    p.add_argument(
        "--nproc", type=int, help="processes on this machine (torchrun); >1 = script mode"
    )
    p.add_argument(
        "--config", help="an accelerate config (a path, or ddp.yaml / zero2.yaml from "
        "minimind_lib/configs): launch the script with `accelerate launch`",
    )  # fmt: skip
    p.add_argument("--to-script", action="store_true", help="only write the script; launch nothing")
    p.add_argument("--log-output", action="store_true", help="echo the cells' printed output")
    return p


def main(argv: list[str] | None = None) -> int:
    import nbformat

    from .profiles import get_profile

    args = build_parser().parse_args(argv)
    try:
        path = args.notebook.resolve()
        if not path.is_file():
            raise RunError(f"{args.notebook}: no such notebook")
        params = parse_assignments(args.parameter)
        if args.profile:
            params["PROFILE"] = args.profile
        if args.nproc is not None and args.nproc < 1:
            raise RunError("--nproc must be at least 1")
        config = _config_path(args.config) if args.config else None
        source = nbformat.read(str(path), as_version=4)
        nb = inject(source, params, path.name)
        try:
            profile = get_profile(params.get("PROFILE", _default(source, "PROFILE")))
        except ValueError as e:
            raise RunError(str(e)) from None
        out_dir = profile.executed_dir
        if args.to_script or config is not None or (args.nproc or 1) > 1:
            script = out_dir / f"{path.stem}.py"
            out_dir.mkdir(parents=True, exist_ok=True)
            script.write_text(to_script(nb, path.name, str(out_dir / path.stem)), encoding="utf-8")
            print(f"wrote {script}")
            if args.to_script:
                return 0
            cmd = launch_command(script, args.nproc, config)
            print("$ " + " ".join(cmd), flush=True)
            return subprocess.call(cmd, cwd=path.parent)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return execute(nb, path, out_dir / path.name, log_output=args.log_output)


if __name__ == "__main__":
    sys.exit(main())
