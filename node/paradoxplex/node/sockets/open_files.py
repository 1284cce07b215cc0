"""The process's open-file limit (``RLIMIT_NOFILE``): every socket is one open file.

Rules:
- At start a node raises its soft limit to the hard one, as HAProxy does: only the hard limit
  needs configuring (systemd's ``LimitNOFILE=``, ``ulimit -Hn``, a container's ``nofile``).
  An unlimited hard limit means the kernel's ``fs.nr_open``. A raise the system refuses
  leaves the soft limit as it was.
- What the node then has is read by ``open_files_limit``; ``paradoxplex.shared.admission``
  decides how many sockets fit in it.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

NR_OPEN = Path("/proc/sys/fs/nr_open")
NR_OPEN_DEFAULT = 1 << 20


def _kernel_cap() -> int:
    """The most open files a process may have (Linux ``fs.nr_open``)."""
    try:
        return int(NR_OPEN.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return NR_OPEN_DEFAULT


def _finite(value: int) -> int:
    return _kernel_cap() if value == resource.RLIM_INFINITY else value


def raise_open_files() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _finite(hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # refused (macOS' OPEN_MAX): keep it
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return open_files_limit()


def open_files_limit() -> int:
    """The soft open-file limit in force (unlimited: the kernel's cap)."""
    return _finite(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
