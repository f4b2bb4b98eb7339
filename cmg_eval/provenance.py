"""What a report records about where its numbers came from: versions, commit, memory."""

from __future__ import annotations

import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path

from cmg_eval import __version__

VERSIONED_PACKAGES = ("torch", "numpy", "scikit-learn", "torchmetrics", "pandas", "h5py", "click", "rich")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cmg_eval": __version__}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def git_commit() -> str | None:
    """The commit of the cmg-eval source tree, '+dirty' when it has local changes."""
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def peak_rss_mib() -> float:
    """Peak resident memory of this process (and its waited-for children), MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0
