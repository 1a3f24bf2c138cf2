"""The (scale, tile) planner, the feathered assembly and the memory model (nstyle.plan)."""

import itertools

import numpy as np
import pytest

from nstyle.errors import ConfigError
from nstyle.plan import (
    GB,
    MemoryModel,
    Step,
    blend,
    feather,
    make_plan,
    seam_mask,
    shift_offset,
    tile_starts,
    torus_starts,
    window,
)


@pytest.mark.parametrize(
    "length,tile,overlap", [(128, 48, 16), (170, 48, 16), (49, 48, 16), (1000, 256, 64), (48, 48, 16)]
)
@pytest.mark.parametrize("shift", [False, True])
def test_tile_starts_cover_with_overlap(length, tile, overlap, shift):
    starts = tile_starts(length, tile, tile - overlap, shift)
    covered = np.zeros(length, int)
    for s in starts:
        assert 0 <= s <= max(0, length - tile)
        covered[s : s + tile] += 1
    assert covered.min() >= 1  # every pixel is in a tile
    gaps = np.diff(starts)
    assert (gaps <= tile - overlap).all()  # neighbours overlap by at least `overlap`


@pytest.mark.parametrize("length,tile,overlap", [(128, 48, 16), (2731, 896, 64), (4096, 1024, 64)])
def test_shifted_grid_moves_the_seams(length, tile, overlap):
    """The cross-fades of the second pass fall elsewhere than the first's: no seam stays in one place."""
    step = Step(1, tile, length, 4, 0, tile=tile, overlap=overlap)
    zones = []
    for p in (0, 1):
        tiles = step.tiles(p)
        fading = np.zeros(length, bool)
        for t in tiles:
            w = window(t, tiles, overlap)[0, :, 0]
            fading[t.left : t.left + t.width] |= (w > 0.02) & (w < 0.98)
        zones.append(fading)
    assert zones[0].any() and zones[1].any()
    assert (zones[0] & zones[1]).sum() <= 0.5 * min(zones[0].sum(), zones[1].sum())


def test_groups_never_overlap():
    step = Step(1, 170, 256, 2, 0, tile=48, overlap=16)
    for p in (0, 1):
        tiles = step.tiles(p)
        assert {(t.height, t.width) for t in tiles} == {(48, 48)}  # one size: one compiled step
        for a, b in itertools.combinations(tiles, 2):
            if a.group == b.group:
                assert (
                    a.top + a.height <= b.top
                    or b.top + b.height <= a.top
                    or a.left + a.width <= b.left
                    or b.left + b.width <= a.left
                )


def _assemble(step, pass_index, tile_values, canvas, order=None):
    """Blend each tile's ``tile_values`` into ``canvas`` group by group, as a tiled pass does
    (or in ``order``, a permutation of the pass's tiles)."""
    tiles = step.tiles(pass_index)
    for tile in order or sorted(tiles, key=lambda t: t.group):
        blend(canvas, tile_values(tile), tile, feather(tile, tiles, step.overlap, step.torus))
    return canvas


def _shares(step, pass_index):
    """Each tile's share of the assembled picture, one channel per tile."""
    tiles = step.tiles(pass_index)
    eye = np.eye(len(tiles), dtype=np.float32)
    return tiles, _assemble(
        step,
        pass_index,
        lambda t: np.broadcast_to(eye[tiles.index(t)], (t.height, t.width, len(tiles))),
        np.zeros((step.height, step.width, len(tiles)), np.float32),
    )


GRIDS = [
    Step(1, 128, 170, 2, 0, tile=48, overlap=16),
    Step(1, 90, 300, 2, 0, tile=48, overlap=16),  # the last tile pulled far back: three tiles overlap
    Step(1, 256, 384, 2, 0, tile=128, overlap=42),  # --tile 128: tiles overlapping by a third
    Step(1, 128, 170, 2, 0, tile=48, overlap=16, wrap=True),
    Step(1, 256, 256, 2, 0, tile=128, overlap=42, wrap=True),
]


@pytest.mark.parametrize("step", GRIDS, ids=lambda s: f"{s.height}x{s.width}/{s.tile}{'-torus' if s.wrap else ''}")
@pytest.mark.parametrize("pass_index", [0, 1])
def test_consistent_tiles_assemble_to_the_image_whatever_was_there(step, pass_index):
    """Tiles that agree give back exactly the image they agree on, and nothing of the image
    before the pass shows: every pixel is the tiles' weighted mean."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(step.height, step.width, 3)).astype(np.float32)
    canvas = rng.normal(size=image.shape).astype(np.float32) * 100  # the start shows nowhere
    out = _assemble(step, pass_index, lambda t: image[t.index(image.shape)], canvas)
    np.testing.assert_allclose(out, image, atol=1e-4)


@pytest.mark.parametrize("step", GRIDS, ids=lambda s: f"{s.height}x{s.width}/{s.tile}{'-torus' if s.wrap else ''}")
@pytest.mark.parametrize("pass_index", [0, 1])
def test_no_tile_edge_shows_anywhere_corners_included(step, pass_index):
    """A tile's outermost pixels, where the network saw padding, have no share of the picture
    wherever another tile covers them, at corners where three or four tiles meet too; only the
    picture's own border (not on a torus) keeps its one tile. The shares are a partition."""
    tiles, shares = _shares(step, pass_index)
    np.testing.assert_allclose(shares.sum(-1), 1.0, atol=1e-5)
    for i, t in enumerate(tiles):
        share = shares[..., i][t.index(shares.shape)]
        edges = [share[0], share[-1], share[:, 0], share[:, -1]]
        inner = [step.wrap or t.top > 0, step.wrap or t.top + t.height < step.height]
        inner += [step.wrap or t.left > 0, step.wrap or t.left + t.width < step.width]
        worst = max(float(e.max()) for e, is_inner in zip(edges, inner) if is_inner)
        assert worst < 0.01, (t, worst)


@pytest.mark.parametrize("step", GRIDS, ids=lambda s: f"{s.height}x{s.width}/{s.tile}{'-torus' if s.wrap else ''}")
def test_the_running_blend_ends_as_the_window_weighted_mean_of_the_tiles(step):
    """Blended one by one as they finish, the tiles end as one weighted mean, sum(w T) / sum(w),
    computed here directly: no tile paints over another, whichever group finishes first."""
    tiles = step.tiles(1)
    rng = np.random.default_rng(3)
    values = {t: rng.normal(size=(t.height, t.width, 2)).astype(np.float32) for t in tiles}
    out = _assemble(step, 1, values.__getitem__, np.zeros((step.height, step.width, 2), np.float32))
    total = np.zeros((step.height, step.width, 2))
    weights = np.zeros((step.height, step.width, 1))
    for t in tiles:
        w = window(t, tiles, step.overlap, step.torus).astype(np.float64)
        np.add.at(total, t.index(total.shape), w * values[t])
        np.add.at(weights, t.index(weights.shape), w)
    np.testing.assert_allclose(out, total / weights, atol=1e-4)


def test_window_is_smooth():
    step = Step(1, 128, 128, 2, 0, tile=48, overlap=16)
    tiles = step.tiles(0)
    weight = window(tiles[-1], tiles, 16)[..., 0]
    assert np.abs(np.diff(weight, axis=1)).max() < 0.11  # a raised cosine over 16 px: at most pi/32 a pixel


@pytest.mark.parametrize("length,tile,overlap", [(256, 128, 42), (170, 128, 42), (1000, 256, 80), (200, 48, 16)])
def test_a_wrapping_second_pass_keeps_its_tile_edges_clear_of_the_first_passes(length, tile, overlap):
    """Where both passes put a tile's edge, padding's traces meet twice: round a torus the
    shifted grid keeps its edges at least a sixth of the spacing from the first grid's (the
    middle of the widest of three gaps). Half the spacing would put them on top of each other
    for tiles one and a half spacings long, as --tile makes them (the first case)."""
    firsts, seconds = torus_starts(length, tile, overlap), torus_starts(length, tile, overlap, True)
    spacing = length / len(firsts)

    def edges(starts):
        return {s % length for s in starts} | {(s + tile) % length for s in starts}

    one, two = edges(firsts), edges(seconds)
    gap = min(min(abs(a - b), length - abs(a - b)) for a in two for b in one)
    assert gap >= spacing / 6 - 1, (sorted(one), sorted(two))
    assert 0 <= shift_offset(spacing, tile) < spacing


MODEL = MemoryModel(base=int(0.8 * GB), per_pixel=2400.0)


def test_plan_runs_whole_what_fits_and_tiles_the_rest():
    shapes = [(256, 384), (1365, 2048), (2731, 4096)]
    plan = make_plan(shapes, [100, 20, 4], MODEL, budget=4 * GB, overlap=64)
    assert [s.tiled for s in plan.steps] == [False, True, True]
    for step in plan.steps:
        assert step.estimate <= 4 * GB
    big = plan.steps[-1]
    assert big.tile % 32 == 0 and big.overlap == 64
    # The largest tile that fits: one 32 px larger would not.
    assert MODEL.tiled((big.tile + 32) ** 2, 2731 * 4096, 2731 * 4096) > 4 * GB
    assert len(big.passes) == 2 and sum(big.passes) == 4


def test_a_size_that_cannot_fit_is_refused_with_what_would():
    with pytest.raises(
        ConfigError, match=r"16384 px needs about .* GB even in tiles, over the 2.0 GB budget .*--size \d+ fits"
    ):
        make_plan([(10923, 16384)], [2], MODEL, budget=2 * GB, overlap=64)


def test_more_workers_cost_more_and_share_smaller_tiles():
    one = make_plan([(1365, 2048)], [4], MODEL, budget=12 * GB, overlap=64)
    two = make_plan([(1365, 2048)], [4], MODEL, budget=12 * GB, overlap=64, workers=2)
    assert not one.steps[0].tiled  # fits whole
    assert two.steps[0].tiled and len({t.group for t in two.steps[0].tiles(0)}) < len(two.steps[0].tiles(0))


def test_seam_mask_marks_inner_tile_edges_only():
    step = Step(1, 128, 128, 2, 0, tile=48, overlap=16)
    mask = seam_mask(step, 0, band=1)
    row = mask[20]  # across the first row of tiles, clear of horizontal seams
    assert not row[0] and not row[-1]  # the image's own border is no seam
    assert row[32] and row[47] and not row[20]  # tile edges, not the middle of the first tile
    assert row[40]  # the cross-fade between the first two columns of tiles
    assert 0.1 < mask.mean() < 0.9


@pytest.mark.parametrize("height, width", [(128, 170), (48, 200), (256, 256)])
@pytest.mark.parametrize("pass_index", [0, 1])
def test_a_wrapping_grid_covers_the_torus_and_its_groups_never_overlap_round_the_edges(height, width, pass_index):
    step = Step(1, height, width, 2, 0, tile=48, overlap=16, wrap=True)
    tiles = step.tiles(pass_index)
    assert {(t.height, t.width) for t in tiles} == {(48, 48)}
    assert any(t.top + t.height > height for t in tiles) and any(t.left + t.width > width for t in tiles)
    for a, b in itertools.combinations(tiles, 2):  # one group's tiles do not overlap, round the edges neither
        if a.group == b.group:
            ra, rb = np.arange(a.top, a.top + 48) % height, np.arange(b.top, b.top + 48) % height
            ca, cb = np.arange(a.left, a.left + 48) % width, np.arange(b.left, b.left + 48) % width
            assert not (np.intersect1d(ra, rb).size and np.intersect1d(ca, cb).size)
    rng = np.random.default_rng(1)
    image = rng.normal(size=(height, width, 3)).astype(np.float32)
    out = _assemble(step, pass_index, lambda t: image[t.index(image.shape)], rng.normal(size=image.shape) * 100)
    np.testing.assert_allclose(out, image, atol=1e-4)
    _, shares = _shares(step, pass_index)
    np.testing.assert_allclose(shares.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("length,tile,overlap", [(256, 128, 42), (170, 128, 42), (1000, 256, 80), (200, 48, 16)])
def test_the_wrap_keeps_clear_of_every_tile_edge_of_both_passes(length, tile, overlap):
    """A loop has no first pixel: the grid is turned so the picture's wrap (0) is no tile's edge
    in either pass, at least an eighth of the spacing from all of them (the middle of the widest
    of four gaps)."""
    firsts, seconds = torus_starts(length, tile, overlap), torus_starts(length, tile, overlap, True)
    spacing = length / len(firsts)
    edges = {s % length for s in firsts + seconds} | {(s + tile) % length for s in firsts + seconds}
    assert min(min(e, length - e) for e in edges) >= spacing / 8 - 1, sorted(edges)


def test_torus_starts_space_tiles_evenly_round_the_loop():
    from nstyle.plan import torus_starts

    starts = torus_starts(200, 48, 16)
    gaps = np.diff([*starts, starts[0] + 200])
    assert gaps.max() - gaps.min() <= 1 and gaps.max() <= 48 - 16
    assert torus_starts(48, 48, 16) == [0, 24]  # a loop one tile long: a second tile rolled half round
