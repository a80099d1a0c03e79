"""The expected failures of reidlab, and how the command line explains them.

Every error a user can cause (a bad file, a bad option, a diverging run) is a :class:`ReidlabError`
whose message names the culprit (file, line, field) and says what to do. The classes also derive from
``ValueError`` where that was the historical type, so ``except ValueError`` keeps working.

:func:`explain` turns an exception into the ``error:`` block the CLI prints and its exit code, or
None for a failure that is not expected (a bug: the CLI lets it raise with its traceback). Besides
:class:`ReidlabError` it explains the operating-system and file-format failures that reach it from
the standard library or third-party readers (``OSError`` by errno, a PIL decompression bomb, a
truncated ``.npz``, a checkpoint ``torch.load`` refused). This module imports nothing from reidlab: it
sits at the bottom of the import graph.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile

#: Exit code of an expected failure of the input (bad file, option, configuration).
EXIT_USAGE = 2
#: Exit code of a run that started and failed (diverging loss, failed notebooks).
EXIT_FAILED = 1


class ReidlabError(Exception):
    """An expected failure: the message names the file/field/line and what to do."""

    exit_code = EXIT_USAGE


class ConfigError(ReidlabError, ValueError):
    """A recipe, override or option has an unknown key or a value of the wrong type or range."""


class CheckpointError(ReidlabError, ValueError):
    """A checkpoint file cannot be loaded (truncated, foreign, or refused by ``weights_only``)."""


class FeaturesError(ReidlabError, ValueError):
    """Features given to evaluation are degenerate (non-finite, zero, identical or overflowing rows)."""


class TrainingFailed(ReidlabError, FloatingPointError):
    """A run that started did not finish (e.g. a non-finite loss): exit code 1."""

    exit_code = EXIT_FAILED


#: What to do about an ``OSError``, by errno.
_OS_ADVICE: dict[int, str] = {
    errno.ELOOP: "symbolic link loop (a link points, directly or through others, to itself): fix or remove the link",
    errno.EACCES: "permission denied: make it readable (and folders listable) for this user, e.g. chmod -R u+rX",
    errno.EPERM: "operation not permitted: check the permissions and ownership of the path",
    errno.EISDIR: "is a folder, expected a file: check the path",
    errno.ENOTDIR: "a part of the path is a file, expected a folder: check the path",
    errno.ENOENT: "does not exist: check the path",
    errno.ENOSPC: "no space left on the device: free some space or choose another folder",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter path",
}


def _os_message(error: OSError) -> str:
    where = error.filename if error.filename is not None else "(unnamed path)"
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    advice = _OS_ADVICE.get(error.errno or -1, error.strerror or str(error))
    return f"{where}: {advice} [{errno.errorcode.get(error.errno or -1, 'OSError')}]"


def explain(error: BaseException) -> tuple[str, int] | None:
    """``(message, exit code)`` for an expected failure, else None (a bug, shown with its traceback)."""
    if isinstance(error, ReidlabError):
        return str(error), error.exit_code
    if type(error).__name__ == "DecompressionBombError":  # PIL; not imported here (bottom of the import graph)
        return (f"an image header claims more pixels than PIL's safety limit ({error}): the file is corrupt or a "
                "decompression bomb; delete or replace it (`reidlab data verify` names every such file)"), EXIT_USAGE
    if isinstance(error, OSError) and (error.errno is not None or error.filename is not None):
        return _os_message(error), EXIT_USAGE
    if isinstance(error, EOFError | zipfile.BadZipFile):
        return (f"a file ended early or is not the archive it claims to be ({type(error).__name__}: {error}); "
                "it is truncated or of another format: write it again"), EXIT_USAGE
    if isinstance(error, pickle.UnpicklingError):
        return (f"a checkpoint was refused by torch.load(weights_only=True): it holds Python objects other than "
                f"tensors and plain containers ({error}); use a checkpoint of plain tensors (safetensors or a "
                "state dict) from a source you trust"), EXIT_USAGE
    if isinstance(error, FloatingPointError):
        return str(error), EXIT_FAILED
    if isinstance(error, ValueError):  # option and value checks across the package raise ValueError with a message
        return str(error), EXIT_USAGE
    return None


def debug_enabled(flag: bool = False) -> bool:
    """True with ``--debug`` or ``REIDLAB_DEBUG=1``: the CLI then shows tracebacks."""
    return flag or os.environ.get("REIDLAB_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


__all__ = ["CheckpointError", "ConfigError", "FeaturesError", "ReidlabError", "TrainingFailed", "debug_enabled",
           "explain"]
