"""Reports: what a notebook records, how ``reidlab report`` executes notebooks, and the index.

One module per job:

- :mod:`~reidlab.reports.report` — :class:`Report`, what a notebook writes to (figures, tables, metrics);
- :mod:`~reidlab.reports.provenance` — git state, device, package versions, a notebook's default parameters;
- :mod:`~reidlab.reports.runner` — :func:`run_notebooks`: papermill execution into ``reports/<profile>/<notebook>/``;
- :mod:`~reidlab.reports.index` — :func:`write_index`: the ``reports/README.md`` index.
"""

from reidlab.reports.index import INDEX_RESULTS, format_duration, render_index, write_index
from reidlab.reports.provenance import (
    VERSIONED_PACKAGES,
    device_info,
    git_state,
    package_versions,
    parameter_defaults,
    python_source,
)
from reidlab.reports.report import Report
from reidlab.reports.runner import INJECTED_PARAMETERS, NOTEBOOK_PATTERN, NotebookRun, find_notebooks, run_notebooks

__all__ = [
    "INDEX_RESULTS",
    "INJECTED_PARAMETERS",
    "NOTEBOOK_PATTERN",
    "VERSIONED_PACKAGES",
    "NotebookRun",
    "Report",
    "device_info",
    "find_notebooks",
    "format_duration",
    "git_state",
    "package_versions",
    "parameter_defaults",
    "python_source",
    "render_index",
    "run_notebooks",
    "write_index",
]
