"""The numbers a refactoring must keep: seeded float32 runs reproduce their recorded loss histories.

The fixtures (``tests/golden/``) were recorded by ``tests/golden/record.py`` before the engine was
rebuilt; each CPU kind has its own file, since TensorFlow's kernels differ between them. Cases
that a later change computes differently on purpose are re-recorded, and the file says so.
"""

from __future__ import annotations

import json
import math

import pytest

from ..conftest import backend_name
from ..golden.record import HERE, cpu_kind, histories

# Relative, per loss term and iteration. The fixtures are the TensorFlow-only engine's; the
# keras.ops engine computes the same sums in a different order, and float32 rounding of that
# order, amplified by L-BFGS's line search over a few iterations, stays within a few 1e-6: a
# change in what is computed moves these histories by far more.
TOLERANCE = 2e-5


@pytest.mark.slow
@pytest.mark.skipif(
    backend_name() != "tensorflow", reason="the fixtures are TensorFlow's; tests/e2e/test_backends.py compares backends"
)
def test_seeded_runs_reproduce_their_recorded_histories():
    path = HERE / f"histories-{cpu_kind()}.json"
    if not path.exists():
        known = sorted(p.name for p in HERE.glob("histories-*.json"))
        pytest.skip(f"no recorded histories for this CPU ({path.name}; recorded: {', '.join(known)}): see record.py")
    recorded = json.loads(path.read_text())["cases"]
    now = histories()
    assert sorted(now) == sorted(recorded)
    for case, expected in recorded.items():
        got = now[case]
        assert len(got) == len(expected), case
        for i, (a, b) in enumerate(zip(got, expected)):
            pairs = a.items() if isinstance(a, dict) else [("mean", a)]
            for term, value in pairs:
                reference = b[term] if isinstance(b, dict) else b
                assert math.isclose(value, reference, rel_tol=TOLERANCE, abs_tol=1e-12), (
                    case,
                    i,
                    term,
                    value,
                    reference,
                )
