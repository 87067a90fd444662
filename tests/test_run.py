"""The headless runner (`python -m minimind_lib.run`) and the helpers for several processes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minimind_lib import profiles, run, runtime
from minimind_lib.profiles import TINY

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = ROOT / "notebooks"


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The runner in a subprocess, with every artifact under tmp_path (MINIMIND_ROOT)."""
    env = dict(os.environ, MINIMIND_ROOT=str(tmp_path), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "minimind_lib.run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


# ---- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [("50", 50), ("True", True), ("None", None), ("3e-4", 3e-4), ("'tiny'", "tiny"),
     ("tiny", "tiny"), ("[1, 2]", [1, 2]), ("out/x", "out/x")],
)  # fmt: skip
def test_values_are_literals_else_strings(text, value):
    assert run.parse_value(text) == value


def test_bad_assignment_is_an_error():
    with pytest.raises(run.RunError, match="expected NAME=VALUE"):
        run.parse_assignments(["MAX_STEPS"])
    assert run.parse_assignments(["A=1", "B=x=y"]) == {"A": 1, "B": "x=y"}


def test_parameter_names_of_the_stage_notebooks():
    expected = {"PROFILE": None, "RESUME": False, "MAX_STEPS": None, "VALIDATE_ALL": False,
                "OPTIM_8BIT": False, "DATA_FILE": None, "SEED": None}  # fmt: skip
    for name in ("03_pretrain.ipynb", "04_sft.ipynb", "05_dpo.ipynb", "06_grpo.ipynb"):
        defaults = run.parameter_defaults(read(NOTEBOOKS / name))
        extra = {"04_sft.ipynb": {"LORA": False}, "05_dpo.ipynb": {"SFT_WEIGHT": 1.0},
                 "06_grpo.ipynb": {"REWARD": None}}.get(name, {})  # own knobs
        assert defaults == {**expected, **extra}, name


def test_injected_cell_follows_the_parameters_cell():
    nb = read(FIXTURES / "run_params.ipynb")
    out = run.inject(nb, {"COUNT": 3, "GREETING": "bonjour"}, "run_params.ipynb")
    i = run.parameters_cell(out)
    injected = out.cells[i + 1]
    assert injected.metadata.tags == [run.INJECTED_TAG]
    assert "COUNT = 3" in injected.source and "GREETING = 'bonjour'" in injected.source
    assert len(out.cells) == len(nb.cells) + 1  # the original is untouched
    assert len({c.id for c in out.cells}) == len(out.cells)


def test_unknown_parameter_names_the_notebook_and_the_valid_names():
    nb = read(NOTEBOOKS / "03_pretrain.ipynb")
    with pytest.raises(run.RunError) as e:
        run.inject(nb, {"MAX_STEP": 5}, "03_pretrain.ipynb")
    assert "03_pretrain.ipynb" in str(e.value) and "MAX_STEP" in str(e.value)
    assert "PROFILE, RESUME, MAX_STEPS" in str(e.value)


# ---- one process: nbclient ----------------------------------------------------------------------


def test_parameters_are_overridden(tmp_path):
    r = run_cli(
        tmp_path, str(FIXTURES / "run_params.ipynb"), "--profile", "tiny",
        "-p", "COUNT=3", "-p", "GREETING=bonjour", "--log-output",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "bonjour x3 (int)\n" in r.stdout  # --log-output echoes what the cells print
    executed = read(tmp_path / "out" / "tiny" / "executed" / "run_params.ipynb")
    assert "bonjour x3 (int)" in stream_text(executed.cells[3])
    assert "count ok" in stream_text(executed.cells[4])
    assert [c.metadata.get("tags") for c in executed.cells[1:3]] == [
        ["parameters"],
        [run.INJECTED_TAG],
    ]
    assert r.stdout.count(" ok ") == 4  # one progress line a code cell
    assert "WARNING" not in r.stderr, r.stderr  # e.g. ipykernel's "running over TCP without encryption"


def test_failing_notebook_exits_non_zero_naming_the_cell(tmp_path):
    r = run_cli(tmp_path, str(FIXTURES / "run_fails.ipynb"), "--profile", "tiny")
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    # Cell 3 of the notebook; In [4] because the injected PROFILE cell ran second.
    assert (
        "run_fails.ipynb cell 3 (In [4]) failed: ZeroDivisionError: division by zero" in errors[0]
    )
    executed = read(tmp_path / "out" / "tiny" / "executed" / "run_fails.ipynb")
    assert "before the failure" in stream_text(executed.cells[3])  # the copy is still written
    assert [o.output_type for o in executed.cells[4].outputs] == ["error"]
    assert executed.cells[5].outputs == []  # execution stopped at the failure


def test_unknown_parameter_on_the_command_line(capsys):
    assert run.main([str(NOTEBOOKS / "03_pretrain.ipynb"), "-p", "STEPS=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 03_pretrain.ipynb: unknown parameter(s) STEPS;")
    assert len(err.strip().splitlines()) == 1


# ---- several processes: the script and the launchers -------------------------------------------


@pytest.mark.parametrize("name", ["03_pretrain.ipynb", "04_sft.ipynb"])
def test_stage_notebooks_convert_to_scripts(name):
    nb = run.inject(read(NOTEBOOKS / name), {"MAX_STEPS": 7}, name)
    script = run.to_script(nb, name, "/tmp/figs")
    tree = ast.parse(script)
    assert "script_mode('/tmp/figs')" in script
    cells = script.split("# %% cell ")
    assert "[parameters]" in cells[1] and "[injected-parameters]" in cells[2]
    assert "MAX_STEPS = 7" in cells[2]
    code_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert len(cells) - 1 == len(code_cells)
    assert not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Name) for n in tree.body)


def test_magics_are_commented_out():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%matplotlib inline\nx = 1\n!ls"),
            nbformat.v4.new_code_cell("%%bash\necho hi"),
        ]
    )
    script = run.to_script(nb, "m.ipynb", "figs")
    assert "# %matplotlib inline  # IPython only" in script and "\nx = 1\n" in script
    assert "# !ls" in script and "# %%bash\n# echo hi" in script
    ast.parse(script)
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = ")])
    with pytest.raises(run.RunError, match="cell 0 is not plain Python"):
        run.to_script(bad, "bad.ipynb", "figs")


def test_launch_commands(tmp_path):
    script = tmp_path / "s.py"
    cmd = run.launch_command(script, 8, None)
    assert cmd[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "8", str(script)
    ]  # fmt: skip
    zero2 = run._config_path("zero2.yaml")
    cmd = run.launch_command(script, 4, zero2)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[4:] == [str(zero2), "--num_processes", "4", str(script)]
    assert "--num_processes" not in run.launch_command(script, None, zero2)
    with pytest.raises(run.RunError, match="shipped configs: ddp.yaml, zero2.yaml"):
        run._config_path("zero3.yaml")


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    ddp = load_config_from_file(str(run.CONFIGS / "ddp.yaml"))
    assert ddp.distributed_type == DistributedType.MULTI_GPU and ddp.mixed_precision == "bf16"
    zero2 = load_config_from_file(str(run.CONFIGS / "zero2.yaml"))
    assert zero2.distributed_type == DistributedType.DEEPSPEED
    assert zero2.deepspeed_config["zero_stage"] == 2
    # Left out, so DeepSpeed takes them from the Trainer's arguments ("auto"), never a mismatch.
    assert not {"gradient_accumulation_steps", "gradient_clipping"} & set(zero2.deepspeed_config)


def test_to_script_only_writes_the_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(profiles, "ROOT", tmp_path)
    args = [str(NOTEBOOKS / "03_pretrain.ipynb"), "--profile", "tiny", "--to-script"]
    assert run.main(args) == 0
    script = tmp_path / "out" / "tiny" / "executed" / "03_pretrain.py"
    assert capsys.readouterr().out.strip() == f"wrote {script}"
    assert "PROFILE = 'tiny'" in script.read_text(encoding="utf-8")


# ---- runtime helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "world, batch, accum, expected",
    [(1, 32, 1, (32, 1)), (2, 32, 1, (16, 1)), (8, 32, 8, (4, 8)), (8, 4, 8, (4, 1))],
)
def test_split_batch_keeps_the_global_batch(monkeypatch, world, batch, accum, expected):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    per_device, steps = runtime.split_batch(batch, accum)
    assert (per_device, steps) == expected
    assert per_device * steps * world == batch * accum


def test_split_batch_refuses_an_uneven_split(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="over 3 processes"):
        runtime.split_batch(32, 1)


def test_main_process_from_the_launcher_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert runtime.is_main_process()
    monkeypatch.setenv("RANK", "3")
    assert not runtime.is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert runtime.is_main_process()


def test_resume_checkpoint_finds_the_last_one(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "pretrain"
    assert runtime.resume_checkpoint(False, run_dir) is None
    assert runtime.resume_checkpoint(True, run_dir) is None  # nothing yet: start afresh
    assert "starting afresh" in capsys.readouterr().out
    for step in (5, 10, 9):
        (run_dir / f"checkpoint-{step}").mkdir(parents=True)
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"global_step": step})
        )
    last = runtime.resume_checkpoint(True, run_dir)
    assert Path(last).name == "checkpoint-10" and runtime.checkpoint_step(last) == 10
    assert runtime.resume_checkpoint("some/path", run_dir) == "some/path"
    assert runtime.checkpoint_step(None) == 0


def test_executed_copies_live_with_the_profile():
    assert TINY.executed_dir == TINY.out_dir / "executed"
