"""Reports: the notebook-side Report API, papermill runs with provenance, the index and the CLI.

Kernel start-up costs seconds, so one module-scoped run executes the two fixture notebooks
(tests/fixtures/notebooks: 00_records records a figure, a table and metrics; 01_fails raises) and
the other tests read its output. Failures before execution (a broken .ipynb) need no kernel.
"""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from reidlab.cli import REPORT_SCOPES, _notebook_parameter, build_parser
from reidlab.reports import (
    Report,
    format_duration,
    git_state,
    parameter_defaults,
    render_index,
    run_notebooks,
    write_index,
)
from reidlab.reports.runner import SCOPES, portable_paths

pytestmark = pytest.mark.xdist_group("reports")  # one worker runs the module fixture once (make test: loadgroup)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"
PROVENANCE = ("notebook", "status", "error", "profile", "dataset", "data_root", "seeds", "device", "git", "versions",
              "started_utc", "wall_time_s", "parameters", "figures", "tables", "headline", "results", "notes")


# --------------------------------------------------------------------------- Report (no kernel)


def _figure():
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1], [1, 0])
    return fig


def test_report_writes_figure_table_and_metrics(tmp_path):
    report = Report(tmp_path / "out", notebook="00_x")
    fig = _figure()
    png = report.figure(fig, "curve")
    first = png.read_bytes()
    assert png == tmp_path / "out" / "figures" / "curve.png" and first.startswith(b"\x89PNG")
    assert report.figure(fig, "curve").read_bytes() == first, "the same figure gives the same bytes"
    plt.close(fig)

    table = pd.DataFrame({"setting": ["complete", "M(R)"], "mAP": [0.54321, float("nan")]})
    csv, md = report.table(table, "ablation", caption="Missing modalities")
    assert csv.read_text() == "setting,mAP\ncomplete,0.54321\nM(R),\n"
    lines = md.read_text().splitlines()
    assert lines[0] == "**Missing modalities**" and lines[2:4] == ["| setting | mAP |", "|---|---:|"]
    assert lines[4] == "| complete | 0.54 |"
    indexed = pd.DataFrame({"mAP": [0.5]}, index=pd.Index(["fused"], name="feature"))
    assert report.table(indexed, "by_feature")[0].read_text() == "feature,mAP\nfused,0.5\n"

    report.metric("mAP", np.float32(0.5), headline=True)
    report.metrics({"cmc": np.array([0.25, 0.5]), "bad": math.nan, "n": np.int64(3)})
    report.note("seeds", (0, 1))
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == {"notebook": "00_x", "results": {"mAP": 0.5, "cmc": [0.25, 0.5], "bad": None, "n": 3},
                     "headline": ["mAP"], "notes": {"seeds": [0, 1]}}
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")], "atomic writes leave no temp files"


def test_report_reloads_existing_metrics_and_defaults_to_a_temporary_folder(tmp_path):
    Report(tmp_path, notebook="a").metric("first", 1, headline=True)
    again = Report(tmp_path, notebook="a")
    again.metric("second", 2)
    assert again.results == {"first": 1, "second": 2}
    assert json.loads((tmp_path / "metrics.json").read_text())["headline"] == ["first"]
    scratch = Report(None)
    assert scratch.dir.is_dir() and Path.cwd() not in scratch.dir.parents
    shutil.rmtree(scratch.dir)


def test_report_rejects_bad_names_and_values(tmp_path):
    report = Report(tmp_path)
    fig = _figure()
    for bad in ("../up", "tsne.png", "", "a b"):
        with pytest.raises(ValueError, match="letters, digits"):
            report.figure(fig, bad)
    plt.close(fig)
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        report.table([[1, 2]], "rows")
    with pytest.raises(TypeError, match="metric 'x': cannot store a object"):
        report.metric("x", object())


# --------------------------------------------------------------------------- running notebooks


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run 01_fails then 00_records once; the failure must not stop the second notebook."""
    root = tmp_path_factory.mktemp("reports_run")
    sources = root / "notebooks"
    sources.mkdir()
    for name in ("00_records.ipynb", "01_fails.ipynb"):
        shutil.copy(FIXTURES / name, sources / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # data_root is relative to the working directory
        runs = run_notebooks([sources / "01_fails.ipynb", sources / "00_records.ipynb"], profile="smoke",
                             dataset="rgbnt201", data_root="relative/data", parameters={"seeds": [3, 4]},
                             reports_root=root / "reports", scope="full")
    return root / "reports", runs


def test_one_failure_does_not_stop_the_others(executed):
    reports, (failed, ok) = executed
    assert (failed.status, ok.status) == ("failed", "ok")
    assert failed.error == "ValueError: deliberate failure for the report tests (cell [4])"
    assert ok.error is None and ok.wall_time_s > 0
    assert ok.report_dir == reports / "smoke" / "00_records" and ok.executed.is_file()
    assert sorted(p.name for p in (reports / "smoke").iterdir()) == ["00_records", "01_fails"], "no staging left"


def test_report_folder_holds_executed_notebook_figures_tables_and_provenance(executed):
    reports, (_, ok) = executed
    folder = ok.report_dir
    assert (folder / "figures" / "line.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / "tables" / "ablation.csv").is_file() and (folder / "tables" / "ablation.md").is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert tuple(metrics) == PROVENANCE
    assert metrics["status"] == "ok" and metrics["profile"] == "smoke" and metrics["dataset"] == "rgbnt201"
    assert metrics["data_root"] == "./relative/data", "written relative to the project root (the kernel's is absolute)"
    assert metrics["seeds"] == [3, 4]
    assert metrics["parameters"] == {"profile": "smoke", "dataset": "rgbnt201", "data_root": metrics["data_root"],
                                     "device": "auto", "seeds": [3, 4],
                                     "output_dir": "./reports/smoke/00_records"}
    assert metrics["results"] == {"mAP": 0.5, "rank1": 0.75, "profile_seen": "smoke", "dataset_seen": "rgbnt201"}
    assert metrics["headline"] == ["mAP"] and metrics["notes"] == {"seeds": [3, 4]}
    assert metrics["figures"] == ["figures/line.png"] and metrics["tables"] == ["tables/ablation.md"]
    assert set(metrics["versions"]) == {"python", "torch", "torchvision", "timm", "grad-cam", "numpy", "papermill",
                                        "reidlab"}
    assert metrics["versions"]["reidlab"] and metrics["versions"]["torch"]
    assert metrics["device"]["name"] and metrics["device"]["cpu_count"] >= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metrics["started_utc"])
    assert set(metrics["git"]) == {"commit", "dirty", "repository"}  # the notebook's own repository
    if metrics["git"]["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", metrics["git"]["commit"])
    text = ok.executed.read_text()
    assert 'output_dir = \\"./reports/smoke/00_records\\"' in text and ".staging-" not in text
    assert '"output_type"' in text, "the executed notebook keeps its outputs"


def test_failed_run_keeps_its_executed_notebook_and_partial_results(executed):
    _, (failed, _) = executed
    metrics = json.loads((failed.report_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == failed.error
    assert metrics["results"] == {"before_failure": 1}, "cells after the failure do not run"
    assert metrics["parameters"]["scope"] == "full", "the scope reaches a notebook that declares it (00_records: not)"
    assert metrics["seeds"] == [3, 4], "seeds fall back to the injected parameter"
    assert "deliberate failure" in failed.executed.read_text()


def test_index_lists_every_report_with_status_and_working_links(executed):
    reports, _ = executed
    index = (reports / "README.md").read_text()
    assert index == render_index(reports)
    rows = [line for line in index.splitlines() if line.startswith("| [")]
    assert rows[0].startswith("| [00_records](smoke/00_records/00_records.ipynb) | ok | rgbnt201 |")
    assert rows[0].endswith("| mAP = 0.5 |")
    assert rows[1].startswith("| [01_fails](smoke/01_fails/01_fails.ipynb) | **FAILED** |")
    assert "**FAILED**: ValueError: deliberate failure for the report tests (cell [4])" in index
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert "smoke/00_records/figures/line.png" in links and "smoke/00_records/tables/ablation.csv" in links
    assert all((reports / link).is_file() for link in links)


def test_a_failed_rerun_replaces_the_previous_report(executed, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(executed[0], reports)
    broken = tmp_path / "00_records.ipynb"
    broken.write_text("{not json")
    (run,) = run_notebooks([broken], profile="smoke", reports_root=reports)
    assert run.status == "failed" and "NotJSONError" in run.error
    assert sorted(p.name for p in run.report_dir.iterdir()) == ["metrics.json"], "old figures are gone"
    assert "| 00_records | **FAILED** |" in (reports / "README.md").read_text()


def test_run_notebooks_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="not a notebook file"):
        run_notebooks([tmp_path / "missing.ipynb"], reports_root=tmp_path)
    (tmp_path / "a").mkdir()
    for folder in (tmp_path, tmp_path / "a"):
        shutil.copy(FIXTURES / "00_records.ipynb", folder)
    with pytest.raises(ValueError, match="share a name"):
        run_notebooks([tmp_path / "00_records.ipynb", tmp_path / "a" / "00_records.ipynb"], reports_root=tmp_path)
    with pytest.raises(ValueError, match="scope 'short'"):
        run_notebooks([tmp_path / "00_records.ipynb"], scope="short", reports_root=tmp_path)
    with pytest.raises(ValueError, match="parameter 'output_dir'"):
        run_notebooks([tmp_path / "00_records.ipynb"], parameters={"output_dir": "x"}, reports_root=tmp_path)


def test_the_cli_offers_the_runner_s_scopes():
    """cli.py spells the choices itself (importing the reports package costs seconds of start-up): keep them equal."""
    assert REPORT_SCOPES == SCOPES
    for scope in SCOPES:
        assert build_parser().parse_args(["report", "--scope", scope]).scope == scope
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--scope", "everything"])


def test_reports_hold_no_absolute_path_of_the_machine(tmp_path, monkeypatch):
    """Outputs, sources, papermill metadata and metrics.json show the project as '.' and the home as '~'."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    notebook = Path(shutil.copy(FIXTURES / "02_paths.ipynb", project / "notebooks"))
    monkeypatch.chdir(project)
    (run,) = run_notebooks([notebook], profile="smoke", data_root="data/rgbnt201", reports_root="reports")
    assert run.ok, run.error
    metrics = json.loads((run.report_dir / "metrics.json").read_text())
    assert metrics["results"] == {"data_root_is_absolute": True}, "the kernel still gets absolute paths"
    assert metrics["data_root"] == "./data/rgbnt201"
    assert metrics["parameters"]["output_dir"] == "./reports/smoke/02_paths"
    home = Path.home()
    assert metrics["notes"]["cache"] == ("/" if home == Path("/") else "~/") + ".cache/reidlab/synthetic"
    executed = run.executed.read_text()
    assert "report written to ./reports/smoke/02_paths" in executed and "data at ./data/rgbnt201" in executed
    assert json.loads(executed)["metadata"]["papermill"]["input_path"] == "./notebooks/02_paths.ipynb"
    for text in (executed, json.dumps(metrics)):
        assert str(tmp_path) not in text and ".staging-" not in text
        assert home == Path("/") or str(home) not in text


def test_portable_paths_replaces_whole_paths_in_order():
    text = '"/p/root/reports/a" /p/root /p/rootx /x/p/root /p/root.bak /p/root. "/home/u/.cache" /p/root/é'
    replaced = portable_paths(text, [(Path("/p/root/reports/a"), "/p/root/reports/b"), (Path("/p/root"), "."),
                                     (Path("/home/u"), "~")])
    assert replaced == '"./reports/b" . /p/rootx /x/p/root /p/root.bak .. "~/.cache" ./é'
    escaped = json.dumps({"path": "/p/root/é"})  # JSON escapes non-ASCII characters
    assert json.loads(portable_paths(escaped, [(Path("/p/root/é"), "./é")])) == {"path": "./é"}


def test_python3_kernel_is_this_interpreter():
    from reidlab.reports.runner import _current_env_kernel_manager

    assert _current_env_kernel_manager()(kernel_name="python3").kernel_spec.argv[0] == sys.executable


def test_git_state_ignores_the_reports_folder(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    assert git_state(repo=tmp_path) == {"commit": None, "dirty": None, "repository": None}
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "first")
    (tmp_path / "reports" / "tutorial").mkdir(parents=True)
    (tmp_path / "reports" / "tutorial" / "metrics.json").write_text("{}")
    state = git_state(exclude=tmp_path / "reports", repo=tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and state["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(exclude=tmp_path / "reports", repo=tmp_path)["dirty"] is True


def test_parameter_defaults_reads_the_literal_defaults():
    assert parameter_defaults(FIXTURES / "00_records.ipynb") == {
        "profile": "tutorial", "dataset": None, "data_root": None, "device": "auto", "seeds": [0], "output_dir": None}


# --------------------------------------------------------------------------- index (hand-made trees)


def _fake(root: Path, profile: str, name: str, **document) -> None:
    folder = root / profile / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(document))


def test_index_is_ordered_deterministic_and_survives_bad_files(tmp_path):
    assert "No reports yet" in write_index(tmp_path).read_text()
    _fake(tmp_path, "tutorial", "01_b", status="ok", results={"a": 1.23456, "nested": {"x": 1}, "b": 2, "c": "x",
                                                              "d": 4}, wall_time_s=3725.0)
    _fake(tmp_path, "paper", "00_a", status="ok", dataset="msvr310", notes={"dataset": "MSVR310 (real)"},
          git={"commit": "a" * 40, "dirty": True}, started_utc="2025-01-02T03:04:05Z", wall_time_s=59.94)
    _fake(tmp_path, "tutorial", "00_a", status="ok", headline=["b", "missing"], results={"a": 1, "b": 0.5})
    (tmp_path / "tutorial" / "02_c").mkdir()
    (tmp_path / "tutorial" / "02_c" / "metrics.json").write_text("{oops")
    _fake(tmp_path, "tutorial", ".00_a.staging-x", status="ok")
    index = render_index(tmp_path)
    assert index == render_index(tmp_path)
    rows = [line for line in index.splitlines() if line.startswith("| 0")]
    assert rows == [
        "| 00_a | ok | MSVR310 (real) | 59.9 s | aaaaaaaaaa-dirty | 2025-01-02 03:04 |  |",
        "| 00_a | ok | synthetic (notebook default) |  | unknown |  | b = 0.5 |",
        "| 01_b | ok | synthetic (notebook default) | 1 h 02 min | unknown |  | a = 1.235; b = 2; c = x |",
        "| 02_c | **UNREADABLE** | synthetic (notebook default) |  | unknown |  |  |",
    ]
    assert index.index("## Profile `paper`") < index.index("## Profile `tutorial`")
    assert "staging" not in index


def test_format_duration():
    assert [format_duration(s) for s in (4.04, 61, 3725)] == ["4.0 s", "1 min 01 s", "1 h 02 min"]


# --------------------------------------------------------------------------- CLI


def test_cli_parameters_are_python_literals_or_strings():
    assert _notebook_parameter("seeds=[0, 1]") == ("seeds", [0, 1])
    assert _notebook_parameter("epochs=None") == ("epochs", None)
    assert _notebook_parameter("device=cuda") == ("device", "cuda")
    assert _notebook_parameter("lr=3e-4") == ("lr", 3e-4)
    with pytest.raises(Exception, match="KEY=VALUE"):
        _notebook_parameter("not-a-name=1")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reidlab.cli", "report", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_exits_1_naming_the_failed_notebooks(tmp_path):
    (tmp_path / "03_broken.ipynb").write_text("{not json")
    done = _cli("03_broken.ipynb", "--profile", "smoke", "--reports-dir", "out", "--no-progress", cwd=tmp_path)
    assert done.returncode == 1
    assert "error: 1 of 1 notebooks failed: 03_broken.ipynb" in done.stderr
    assert done.stdout.startswith("FAILED  03_broken") and "index: out/README.md" in done.stdout
    assert json.loads((tmp_path / "out" / "smoke" / "03_broken" / "metrics.json").read_text())["status"] == "failed"


def test_cli_without_notebooks_is_a_usage_error(tmp_path):
    done = _cli(cwd=tmp_path)
    assert done.returncode == 2 and "none match notebooks/[0-9][0-9]_*.ipynb" in done.stderr
