"""Package metadata: the three places that name dependencies agree (pyproject.toml, environment.yml,
requirements.lock), the Python floor is met and stated alike everywhere, and a wheel carries the whole package."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return requirements


def _environment_pip_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    return [r for r in pip_sections[0] if not r.startswith("-e")]


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    assert sorted(_environment_pip_requirements()) == sorted(_pyproject_requirements())


def test_environment_yml_installs_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def test_lock_pins_every_declared_dependency():
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock line {line!r} is not pinned with =="
            pinned[_name(name)] = version
    missing = {_name(r) for r in _pyproject_requirements()} - set(pinned)
    assert not missing, f"requirements.lock does not pin {sorted(missing)}"
    assert int(pinned["torch"].split(".")[1]) >= 14 and pinned["torch"].startswith("2.")


def test_the_data_layer_names_every_evaluation_protocol():
    from reidlab.data.records import PROTOCOL_NAMES
    from reidlab.eval.protocols import PROTOCOLS

    assert PROTOCOL_NAMES == tuple(PROTOCOLS)


# --------------------------------------------------------------------------- Python floor


def _floor() -> tuple[int, int]:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert match, f"requires-python {requires!r}: expected a plain '>=3.N' floor"
    return 3, int(match[1])


def test_python_floor_is_met_and_stated_the_same_everywhere():
    floor = _floor()
    assert sys.version_info[:2] >= floor, f"this interpreter is below requires-python >={floor[0]}.{floor[1]}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minors = [tuple(map(int, c.rsplit(" ", 1)[1].split("."))) for c in pyproject["project"]["classifiers"]
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert minors and min(minors) == floor, f"the lowest version classifier {min(minors, default=None)} is not {floor}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{floor[0]}{floor[1]}"
    assert f"`python3` ({floor[0]}.{floor[1]}+)" in (ROOT / "README.md").read_text()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert tuple(map(int, conda_python.removeprefix("python=").split("."))) >= floor


def test_every_locked_dependency_supports_the_python_floor():
    """The floor is not below what the pinned stack needs (numpy 2.4 needs 3.11; so does tomllib above).

    A package may need a later patch release of the floor's series (soupsieve: >=3.11.5).
    """
    floor = "{}.{}".format(*_floor())
    too_new = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.partition("==")[0]
            try:
                requires = metadata.metadata(name).get("Requires-Python")
            except metadata.PackageNotFoundError:
                continue  # pinned for another platform or not installed here
            if requires and not any(SpecifierSet(requires).contains(f"{floor}.{patch}") for patch in range(100)):
                too_new[name] = requires
    assert not too_new, f"requires-python allows Python {floor} but these locked packages do not: {too_new}"


# --------------------------------------------------------------------------- the wheel


def test_a_wheel_built_from_the_repository_carries_every_file_of_the_package(tmp_path):
    """Build the wheel from the tracked files (plus a probe under reidlab/weights/) and import from it alone."""
    try:
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True,
                                 text=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    source = tmp_path / "src"
    for rel in filter(None, tracked):
        if (ROOT / rel).is_file():  # a tracked file deleted in the working tree is not built
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    probe = source / "reidlab" / "weights" / "some_paper" / "probe.safetensors"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"weights shipped in the package")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("reidlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    package_files = {p.relative_to(source).as_posix() for p in (source / "reidlab").rglob("*") if p.is_file()}
    assert any(not name.endswith(".py") for name in package_files - {probe.relative_to(source).as_posix()})
    assert not package_files - names, f"the wheel lacks {sorted(package_files - names)}"

    installed = subprocess.run(
        [sys.executable, "-c", "import reidlab, reidlab.papers as p, reidlab.recipes as r; print(reidlab.__file__); "
         "print(len(p.paper_results('coen')) > 0, r.load_recipe('coen', 'tutorial').method)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    where, loaded = installed.stdout.splitlines()
    assert Path(where).is_relative_to(tmp_path / "site") and loaded == "True coen"


def test_readme_paper_status_says_what_exists():
    """A paper is "implemented" in README's table exactly when its notebook and reported numbers exist."""
    from reidlab.papers import available_papers

    rows = re.findall(r"^\| `(\d\d_\w+)` \| .+ \| (implemented|planned) \|$", (ROOT / "README.md").read_text(), re.M)
    assert len(rows) >= 6, "the status table lists the five papers and the cross-paper benchmark"
    for notebook, status in rows:
        assert (ROOT / "notebooks" / f"{notebook}.ipynb").is_file() == (status == "implemented"), notebook
    implemented = {notebook.split("_", 1)[1] for notebook, status in rows if status == "implemented"}
    assert implemented - {"benchmark"} == set(available_papers())   # 06_benchmark: every paper, no paper file
