"""How a run ended: one description shared by the optimiser, the record, the CLI, the bar and the UI.

Every optimisation ends one way: it ran all its iterations, a signal stopped it (Ctrl-C,
SIGTERM, SIGHUP), a callback raised :class:`~nstyle.optimize.Stop` (the UI's Stop button), or
L-BFGS could go no further. An :class:`Outcome` names which, with a detail (the signal's name,
L-BFGS's reason) and where in a multi-scale run it happened; :meth:`Outcome.describe` is the
one place that turns it into words, and :meth:`Outcome.from_record` reads it back from a run
record, including the records nstyle wrote before outcomes existed.
"""

from __future__ import annotations

import enum
import re
import signal
from dataclasses import dataclass, replace
from typing import Any

from .signals import received


class Ending(enum.Enum):
    """Why an optimisation stopped."""

    COMPLETED = "completed"  # every iteration ran
    SIGNAL = "signal"  # Ctrl-C, SIGTERM or SIGHUP: the best image so far is kept
    CALLBACK = "callback"  # a callback raised Stop
    CONVERGED = "converged"  # L-BFGS: the gradient on the free pixels is zero
    NO_PROGRESS = "no-progress"  # L-BFGS: the line search found no lower loss


_WORDS = {
    Ending.COMPLETED: "completed",
    Ending.CONVERGED: "L-BFGS converged (zero gradient on the pixels free to move)",
    Ending.NO_PROGRESS: "L-BFGS made no progress (the line search found no lower loss)",
}


@dataclass(frozen=True)
class Outcome:
    """An :class:`Ending` with its detail, and where in the run it happened."""

    ending: Ending = Ending.COMPLETED
    detail: str = ""  # SIGNAL: the signal's name; CALLBACK: who stopped it (Stop's message)
    where: str = ""  # "scale 2 of 3" when a multi-scale run ended early in one of its scales

    @classmethod
    def by_signal(cls, signum: int) -> Outcome:
        return cls(Ending.SIGNAL, signal.Signals(signum).name)

    @property
    def early(self) -> bool:
        """Fewer iterations ran than were asked for."""
        return self.ending is not Ending.COMPLETED

    @property
    def halts(self) -> bool:
        """The whole run stops here: no later scale, tile, frame or trial runs.

        L-BFGS's own stops end only the scale they happen in; the next scale has a new image.
        """
        return self.ending in (Ending.SIGNAL, Ending.CALLBACK)

    @property
    def signum(self) -> int | None:
        """The signal that stopped the run, if one did."""
        if self.ending is not Ending.SIGNAL:
            return None
        try:
            return int(signal.Signals[self.detail])
        except KeyError:
            return int(signal.SIGINT)

    def at(self, where: str) -> Outcome:
        """The same ending, placed in the run: ``where`` is the outer place ("scale 2 of 3"), any
        place already said the inner one ("pass 1 of 2, 3 of 4 tiles done")."""
        if not where:
            return self
        return replace(self, where=f"{where}, {self.where}" if self.where else where)

    def describe(self) -> str:
        """In words, for the CLI's last line, the progress bar and the UI's status."""
        if self.ending is Ending.SIGNAL:
            words = f"stopped by {self.detail or 'a signal'}"
        elif self.ending is Ending.CALLBACK:
            words = f"stopped by {self.detail or 'a callback'}"
        else:
            words = _WORDS[self.ending] + (f": {self.detail}" if self.detail else "")
        return f"{words} at {self.where}" if self.where else words

    def to_record(self) -> dict[str, str]:
        return {"ending": self.ending.value, "detail": self.detail, "where": self.where}

    @classmethod
    def from_record(cls, result: dict[str, Any]) -> Outcome:
        """The outcome in a record's ``result``; older records said it as ``interrupted`` and ``stop_reason``."""
        saved = result.get("outcome")
        if isinstance(saved, dict):
            return cls(Ending(saved.get("ending", "completed")), saved.get("detail", ""), saved.get("where", ""))
        reason = str(result.get("stop_reason") or "completed")
        placed = re.fullmatch(r"(.*) at (scale \d+ of \d+)", reason)
        reason, where = placed.groups() if placed else (reason, "")
        if result.get("interrupted") or reason == "interrupted":
            return cls(Ending.SIGNAL, "", where)
        if reason == "stopped by a callback":
            return cls(Ending.CALLBACK, "", where)
        if "converged" in reason:
            return cls(Ending.CONVERGED, "", where)
        if reason.startswith("L-BFGS made no progress"):
            return cls(Ending.NO_PROGRESS, "", where)
        return cls()


COMPLETED = Outcome()


class Stop(Exception):
    """Raised by a callback to end the run early; the best image so far is kept.

    Its message, if any, names who stopped the run: ``Stop("the Stop button")`` reads
    "stopped by the Stop button" in the outcome.
    """


def stopped(error: BaseException) -> Outcome:
    """The outcome of a loop that caught ``error``: a signal (a KeyboardInterrupt) or a callback's Stop."""
    if isinstance(error, Stop):
        return Outcome(Ending.CALLBACK, str(error))
    return Outcome.by_signal(getattr(error, "signum", None) or received() or signal.SIGINT)
