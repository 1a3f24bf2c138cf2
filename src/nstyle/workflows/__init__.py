"""Exploration workflows: the notebook author's trial and error as commands.

``probe`` runs one stylization per candidate layer, ``grid`` every content against every
style, ``sweep`` any set of settings; each writes its images and one labelled contact
sheet into a folder, and runs its trials serially, in local processes or on Ray.
"""

from .grid import grid
from .probe import probe
from .runner import Trial, TrialResult, run_trials
from .sweep import load_sweep, sweep

__all__ = ["Trial", "TrialResult", "grid", "load_sweep", "probe", "run_trials", "sweep"]
