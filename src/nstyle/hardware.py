"""What this process may run on: the one count of CPU cores every thread pool and worker pool uses.

``os.cpu_count()`` is the machine's total; in a container or under ``taskset`` the process may
use fewer, and pools sized by the total over-subscribe the cores it has.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share(workers: int) -> int:
    """Threads each of ``workers`` processes gets, so that together they use the usable cores once."""
    return max(1, usable_cores() // max(1, workers))
