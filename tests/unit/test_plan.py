"""The (scale, tile) planner, the feathered assembly and the memory model (nstyle.plan)."""

import itertools

import numpy as np
import pytest

from nstyle.errors import ConfigError
from nstyle.plan import GB, MemoryModel, Step, blend, feather, make_plan, seam_mask, tile_starts


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
        for group in sorted({t.group for t in tiles}):
            earlier = [t for t in tiles if t.group < group]
            for t in (t for t in tiles if t.group == group):
                w = feather(t, earlier, overlap)[0, :, 0]
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


def _assemble(step, pass_index, tile_values, canvas):
    blended = []
    tiles = step.tiles(pass_index)
    for group in sorted({t.group for t in tiles}):
        earlier = list(blended)
        for tile in [t for t in tiles if t.group == group]:
            blend(canvas, tile_values(tile), tile, feather(tile, earlier, step.overlap, step.torus))
            blended.append(tile)
    return canvas


@pytest.mark.parametrize("pass_index", [0, 1])
def test_consistent_tiles_assemble_to_the_image_whatever_was_there(pass_index):
    """Tiles that agree give back exactly the image they agree on: every pixel's first tile has
    weight 1 there, and each later one cross-fades from it (the weights are a partition)."""
    step = Step(1, 128, 170, 2, 0, tile=48, overlap=16)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(128, 170, 3)).astype(np.float32)
    canvas = rng.normal(size=(128, 170, 3)).astype(np.float32) * 100  # the start shows nowhere
    out = _assemble(step, pass_index, lambda t: image[t.box], canvas)
    np.testing.assert_allclose(out, image, atol=1e-4)


def test_tile_edges_weigh_nothing_and_constant_tiles_mix_convexly():
    step = Step(1, 128, 128, 2, 0, tile=48, overlap=16)
    values = {t: float(i) for i, t in enumerate(step.tiles(0))}
    out = _assemble(
        step, 0, lambda t: np.full((t.height, t.width, 3), values[t], np.float32), np.zeros((128, 128, 3), np.float32)
    )
    assert out.min() >= 0 and out.max() <= max(values.values())
    # Each tile's own value survives whole somewhere (its middle) ...
    for tile, value in values.items():
        assert np.isclose(out[tile.top + 24, tile.left + 24, 0], value) or any(
            o.top <= tile.top + 24 < o.top + 48 and o.left <= tile.left + 24 < o.left + 48
            for o in values
            if o is not tile
        )
    # ... and the last group's tiles have weight 0 on every inner edge: padding never shows.
    last = max(t.group for t in values)
    for tile in (t for t in values if t.group == last):
        weight = feather(tile, [t for t in values if t.group < last], 16)[..., 0]
        inner = [
            weight[0] if tile.top > 0 else None,
            weight[-1] if tile.top + 48 < 128 else None,
            weight[:, 0] if tile.left > 0 else None,
            weight[:, -1] if tile.left + 48 < 128 else None,
        ]
        assert all(edge.max() < 0.01 for edge in inner if edge is not None)


def test_feather_is_smooth():
    step = Step(1, 128, 128, 2, 0, tile=48, overlap=16)
    tiles = step.tiles(0)
    weight = feather(tiles[-1], tiles[:-1], 16)[..., 0]
    assert np.abs(np.diff(weight, axis=1)).max() < 0.11  # a raised cosine over 16 px: at most pi/32 a pixel


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
def test_a_wrapping_grid_blends_round_the_edges_with_no_tile_edge_showing(height, width, pass_index):
    """On a torus every pixel is covered, consistent tiles give the image back, and each tile's
    edges are faded out by its neighbours everywhere, the picture's own edges included."""
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
    # each tile's share of the result, one channel per tile
    shares = _assemble(
        step,
        pass_index,
        lambda t: np.broadcast_to(np.eye(len(tiles), dtype=np.float32)[tiles.index(t)], (48, 48, len(tiles))),
        np.zeros((height, width, len(tiles)), np.float32),
    )
    for i, t in enumerate(tiles):  # the middle of each edge (at corners diagonal neighbours mix, as in any grid)
        share = shares[..., i][t.index(shares.shape)]
        ring = np.array([share[0, 24], share[-1, 24], share[24, 0], share[24, -1]])
        assert ring.max() < 0.01, (t, ring.max())


def test_torus_starts_space_tiles_evenly_round_the_loop():
    from nstyle.plan import torus_starts

    starts = torus_starts(200, 48, 16)
    gaps = np.diff([*starts, starts[0] + 200])
    assert gaps.max() - gaps.min() <= 1 and gaps.max() <= 48 - 16
    assert torus_starts(48, 48, 16) == [0, 24]  # a loop one tile long: a second tile rolled half round
