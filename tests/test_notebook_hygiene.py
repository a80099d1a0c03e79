"""Every notebook in notebooks/ is a clean, parameterised walk-through (DESIGN §5).

A notebook passes when it is stored without outputs or execution counts, has exactly one
``parameters``-tagged code cell defining the injected parameters, uses the ``python3`` kernelspec,
is named ``NN_name.ipynb``, imports from reidlab, has at least one ``assert``, defines no class and no
function (logic belongs in the package: :mod:`reidlab.studies` and the paper modules) and has no code
cell longer than :data:`MAX_CELL_LINES` lines, the parameters cell and the setup cell (the first code
cell after it: imports and the report) aside. The checker itself is tested on the fixture notebooks in
tests/fixtures/notebooks/.
"""

import ast
import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from reidlab.reports import python_source

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Parameters every notebook's parameters cell defines (papermill injects them).
REQUIRED_PARAMETERS = ("profile", "dataset", "data_root", "device", "seeds", "output_dir")
#: Longest code cell (non-blank source lines) outside the parameters and setup cells.
MAX_CELL_LINES = 15
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def _cell_trees(nb) -> list[tuple[int, ast.Module]]:
    """(cell index, parsed source) of every code cell; magic and shell lines blanked, ``%%`` cells skipped."""
    trees = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and not cell.source.lstrip().startswith("%%"):
            trees.append((i, ast.parse(python_source(cell.source), filename=f"cell {i}")))
    return trees


def _long_cells(nb, parameters: int | None) -> list[str]:
    """A problem per code cell over :data:`MAX_CELL_LINES` non-blank lines (parameters and setup cells aside)."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    exempt = {parameters, next((i for i in code if parameters is not None and i > parameters), None)}
    problems = []
    for i in code:
        lines = sum(1 for line in nb.cells[i].source.splitlines() if line.strip())
        if i not in exempt and lines > MAX_CELL_LINES:
            problems.append(f"cell {i} has {lines} lines (more than {MAX_CELL_LINES}: split it, or move its logic "
                            "into the reidlab package)")
    return problems


def hygiene_problems(nb, name: str) -> list[str]:
    """Every rule ``nb`` (an nbformat v4 notebook stored as ``name``) breaks, as readable sentences."""
    problems = []
    if not NAME.match(name):
        problems.append(f"file name {name!r} is not NN_name.ipynb (two digits, lower-case words)")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec is {kernel!r}, expected 'python3'")
    if "papermill" in nb.metadata:
        problems.append("has papermill metadata: an executed copy, not the source notebook")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"cell {i} is stored with outputs or an execution count (clear them)")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    else:
        defined = {t.id for node in ast.walk(ast.parse(python_source(nb.cells[tagged[0]].source)))
                   if isinstance(node, (ast.Assign, ast.AnnAssign))
                   for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                   if isinstance(t, ast.Name)}
        missing = [p for p in REQUIRED_PARAMETERS if p not in defined]
        if missing:
            problems.append(f"parameters cell does not define {', '.join(missing)}")
    problems += _long_cells(nb, tagged[0] if len(tagged) == 1 else None)
    try:
        trees = _cell_trees(nb)
    except SyntaxError as e:
        return [*problems, f"{e.filename} is not valid Python: {e.msg} (line {e.lineno})"]
    nodes = [(i, node) for i, tree in trees for node in ast.walk(tree)]
    for i, node in nodes:
        if isinstance(node, ast.ClassDef):
            problems.append(f"cell {i} defines class {node.name} (move it into the reidlab package)")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            problems.append(f"cell {i} defines function {node.name}() (move it into the reidlab package)")
    if not any(isinstance(node, ast.Assert) for _, node in nodes):
        problems.append("no assert cell: a tutorial states its claims as asserts that nbval checks")
    imports_reidlab = any(
        (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "reidlab")
        or (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "reidlab" for a in node.names))
        for _, node in nodes)
    if not imports_reidlab:
        problems.append("does not import from reidlab")
    return problems


@pytest.mark.skipif(not NOTEBOOKS, reason="notebooks/ holds no notebooks yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_a_clean_parameterised_walkthrough(path):
    problems = hygiene_problems(nbformat.read(path, as_version=4), path.name)
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def _good():
    return nbformat.read(FIXTURES / "00_records.ipynb", as_version=4)


def test_checker_accepts_the_clean_fixture():
    assert hygiene_problems(_good(), "00_records.ipynb") == []


def test_checker_names_every_problem_of_the_bad_fixture():
    problems = "\n".join(hygiene_problems(nbformat.read(FIXTURES / "bad_hygiene.ipynb", as_version=4),
                                          "bad_hygiene.ipynb"))
    for expected in ("not NN_name.ipynb", "kernelspec is 'conda-env-old'", "cell 2 is stored with outputs",
                     "exactly one cell tagged 'parameters', found 2", "defines function train()",
                     "defines class Helper", "no assert cell", "does not import from reidlab"):
        assert expected in problems


def _with_cell(source: str, position: int = -1):
    nb = _good()
    nb.cells.insert(len(nb.cells) if position == -1 else position, new_code_cell(source))
    return nb


def test_any_function_is_refused():
    problems = hygiene_problems(_with_cell("def f(x):\n    return x"), "00_records.ipynb")
    assert any("defines function f()" in p for p in problems)


def test_long_cells_are_refused_but_parameters_and_setup_cells_are_not():
    sixteen = "".join(f"x{k} = {k}\n" for k in range(16))
    fifteen = "".join(f"x{k} = {k}\n" for k in range(15)) + "\n\n"
    assert hygiene_problems(_with_cell(fifteen), "00_records.ipynb") == []
    problems = hygiene_problems(_with_cell(sixteen), "00_records.ipynb")
    assert len(problems) == 1 and "has 16 lines (more than 15" in problems[0]
    nb = _good()
    parameters = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i > parameters)
    nb.cells[parameters].source += "\n" + sixteen
    nb.cells[setup].source += "\n" + sixteen
    assert hygiene_problems(nb, "00_records.ipynb") == []


def test_magics_are_skipped_and_syntax_errors_reported():
    assert hygiene_problems(_with_cell("%matplotlib inline\n!ls\nx = 1"), "00_records.ipynb") == []
    assert hygiene_problems(_with_cell("%%bash\necho hi"), "00_records.ipynb") == []
    problems = hygiene_problems(_with_cell("x = ("), "00_records.ipynb")
    assert any("is not valid Python" in p for p in problems)


def test_missing_parameters_outputs_and_executed_copies_are_reported():
    nb = _good()
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith(("seeds", "device")))
    assert hygiene_problems(nb, "00_records.ipynb") == ["parameters cell does not define device, seeds"]
    executed = copy.deepcopy(_good())
    executed.metadata["papermill"] = {"parameters": {}}
    executed.cells[2].execution_count = 1
    assert len(hygiene_problems(executed, "00_records.ipynb")) == 2
