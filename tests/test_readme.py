"""The README's commands run (issue #19): every ``ditau`` command of its fenced ```bash blocks,
in order, on a tiny sample, so a stale README fails CI.

Commands that take minutes or need what CI does not have are mapped to a tiny equivalent
(:data:`TINY`: fewer events, analysis modes forced so the signal region is not empty) or
skipped with the reason (:data:`SKIP`). ``DITAU_README`` points the test at another README
(to check a README change before committing it).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from ditau.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("DITAU_README", ROOT / "README.md"))

#: Commands not run here, by a pattern they contain, with the reason.
SKIP: dict[str, str] = {
    "pip install": "installs the package (CI has it installed)",
    "ditau demo": "the whole chain: tests/test_cli.py::test_demo_writes_report runs it small",
    "--scheduler": "needs a Dask cluster (tests/test_stage.py runs a LocalCluster)",
    "torchrun": "multi-GPU training",
    "configs/ml/cpu.yaml": "30 minutes of training",
    "configs/ml/smoke_cpu.yaml": "a minute of training (tests/test_ml_train.py trains small)",
    "runs/x/": "needs a model trained by the skipped training command",
    "ditau export": "needs a trained model and the [ml] extra",
    "python benchmarks/": "benchmarks print measured figures (minutes)",
    "import-delphes": "needs a Delphes ROOT file (tests/test_delphes*.py)",
}
#: Event counts of generation commands here: tiny, every job one worker.
SIGNAL_EVENTS = 150
BACKGROUND_EVENTS = 40


def _commands(text: str) -> Iterator[str]:
    """The commands of the README's ```bash blocks: continuation lines joined, comments
    dropped, ``for X in A B; do CMD; done`` loops unrolled."""
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            loop = re.fullmatch(r"for (\w+) in ([^;]+); do (.+); done", line)
            if loop is None:
                yield line
                continue
            var, values, body = loop.groups()
            for v in values.split():
                yield re.sub(rf"\$\{{{var}\}}|\${var}\b", v, body)


def _tiny(argv: list[str]) -> list[str]:
    """A generation command with few events (one job, analysis modes for the signal, so the
    signal region is not empty); other commands unchanged."""
    if argv[:1] != ["generate"]:
        return argv
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("-n", "--events", "-j", "--workers"):
            next(it)
            continue
        out.append(a)
    background = "--process" in out
    n = BACKGROUND_EVENTS if background else SIGNAL_EVENTS
    out += ["-n", str(n), "--events-per-job", str(n), "-j", "1", "--quiet"]
    if not background and "--force-decays" not in out:
        out += ["--force-decays", "pi,rho,e,mu"]
    return out


def _own_ntuple(src: Path, dst: Path, mapping: dict[str, str]) -> None:
    """A foreign Parquet ntuple (no ditau metadata, the user's column names) from ``src``."""
    t = pq.read_table(src)
    t = t.rename_columns([mapping.get(c, c) for c in t.column_names])
    pq.write_table(t.replace_schema_metadata(None), dst)


def test_readme_has_commands():
    commands = list(_commands(README.read_text()))
    assert any(c.startswith("ditau generate") for c in commands)
    assert any(c.startswith("ditau evaluate") for c in commands)


def test_readme_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    runner = CliRunner()
    ran: list[str] = []
    for cmd in _commands(README.read_text()):
        if any(pattern in cmd for pattern in SKIP):
            continue
        argv = shlex.split(cmd)
        assert argv[0] == "ditau", f"README command not handled by this test: {cmd}"
        argv = _tiny(argv[1:])
        if "--columns" in argv:  # "your own ntuple": make one with the README's names
            mapping = dict(v.split("=") for v in argv[argv.index("--columns") + 1::2]
                           if "=" in v)
            _own_ntuple(tmp_path / "z_reco.parquet", tmp_path / argv[1], mapping)
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, f"README command failed: {cmd}\n{res.output}"
        ran.append(cmd)
    assert len(ran) >= 15, ran
