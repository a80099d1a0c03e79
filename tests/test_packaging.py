"""The three places that name dependencies agree: pyproject.toml, environment.yml, requirements.lock."""

import re
from pathlib import Path

import tomllib
import yaml

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


def test_cli_protocol_choices_match_the_evaluation_registry():
    from reidlab.cli import PROTOCOLS as CLI_PROTOCOLS
    from reidlab.eval.protocols import PROTOCOLS

    assert set(CLI_PROTOCOLS) == set(PROTOCOLS)
