"""``deephash dupes`` without --radius: a default from the code length and the index's own nearest-neighbour
distances, the reason printed; a warning when chaining merges much of the collection into one group; the
contact sheet marks each group's first member "keep?"."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import pack_bits
from deephash.index import HammingIndex
from deephash.retrieval import open_index
from deephash.retrieval.dupes import (
    DuplicateGroup,
    chaining_warning,
    contact_sheet,
    default_radius,
    find_duplicates,
    nearest_neighbour_distances,
)

runner = CliRunner()
BITS = 48


def flip(bits01: np.ndarray, n: int, rng) -> np.ndarray:
    out = bits01.copy()
    out[rng.choice(BITS, n, replace=False)] ^= 1
    return out


def save_index(folder, bits01: np.ndarray):
    index = HammingIndex(BITS)
    index.add(pack_bits(bits01), metadata=[{"path": f"/photos/{i}.jpg"} for i in range(len(bits01))])
    index.save(folder)
    return open_index(folder)


def spread(n: int, seed: int = 0) -> np.ndarray:
    """Random 48-bit codes: nearest neighbours about 10 bits away, as for unrelated photos."""
    return np.random.default_rng(seed).integers(0, 2, (n, BITS), dtype=np.uint8)


def test_default_radius_is_a_fraction_of_the_bits_and_finds_planted_copies(tmp_path):
    rng = np.random.default_rng(1)
    codes = spread(300)
    codes[10], codes[11] = codes[5], flip(codes[5], 2, rng)  # a copy and a near copy of image 5
    index = save_index(tmp_path / "idx", codes)
    choice = default_radius(index)
    assert choice.radius == BITS // 16 == 3 and choice.sampled == 300
    assert "1/16 of the 48-bit codes is 3" in choice.reason and choice.near_share <= 0.05
    groups = find_duplicates(index, choice.radius)
    assert [5, 10, 11] in [g.ids for g in groups]
    assert chaining_warning(groups, len(index), choice.radius) is None

    r = runner.invoke(app, ["dupes", str(tmp_path / "idx")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("radius 3 (default; --radius to choose): 1/16 of the 48-bit codes")
    assert "within radius 3" in r.output.splitlines()[-1] and "warning" not in r.output
    got = json.loads(runner.invoke(app, ["dupes", str(tmp_path / "idx"), "--json"]).output)
    assert got["radius"] == 3 and "1/16" in got["radius_reason"] and got["warning"] is None
    got = json.loads(runner.invoke(app, ["dupes", str(tmp_path / "idx"), "-r", "2", "--json"]).output)
    assert got["radius"] == 2 and got["radius_reason"] is None


def test_a_crowded_index_gets_a_smaller_radius(tmp_path):
    """Most images within 2-3 bits of another (a burst of similar shots): the default drops below 1/16 of the bits
    so that they are not all grouped."""
    rng = np.random.default_rng(2)
    centres = spread(20, seed=3)
    codes = np.stack([flip(centres[i % 20], 1 + i % 3, rng) for i in range(200)])
    index = save_index(tmp_path / "idx", codes)
    nn = nearest_neighbour_distances(index)
    assert len(nn) == 200 and np.mean(nn <= 3) > 0.5
    choice = default_radius(index)
    assert choice.radius < 3 and np.mean(nn <= choice.radius) <= 0.05
    assert "but" in choice.reason and "within 3 bits" in choice.reason


def test_chaining_into_one_large_group_is_warned_about(tmp_path):
    rng = np.random.default_rng(4)
    codes = spread(100, seed=5)
    walk = [codes[0]]
    for _ in range(29):  # 30 codes, each one bit from the one before: one chain at radius 1
        walk.append(flip(walk[-1], 1, rng))
    codes[:30] = np.stack(walk)
    index = save_index(tmp_path / "idx", codes)
    groups = find_duplicates(index, 1)
    assert len(groups[0].ids) >= 25
    warning = chaining_warning(groups, len(index), 1)
    assert warning.startswith(f"the largest group holds {len(groups[0].ids)} of 100 images") and "--radius 0" in warning
    assert chaining_warning(groups, len(index), 3, suggested=1).endswith("(--radius 1)")
    assert chaining_warning(find_duplicates(index, 0), len(index), 0) is None
    r = runner.invoke(app, ["dupes", str(tmp_path / "idx"), "--radius", "1"])
    assert r.exit_code == 0 and "warning: the largest group holds" in r.output, r.output
    small = [DuplicateGroup(list(range(9)), [None] * 9, [0] * 9)]  # 9 of 20: large share, but few images
    assert chaining_warning(small, 20, 2) is None


def test_contact_sheet_marks_the_first_member_keep(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    group = DuplicateGroup([0, 1, 2], [str(tmp_path / f"{i}.png") for i in range(3)], [0, 1, 2])
    sheet = np.asarray(Image.open(contact_sheet([group], tmp_path / "sheet.png", tile=48)).convert("RGB"))

    def caption(text):  # what result_grid draws under the first tile of the first (titled) row
        img = Image.new("RGB", (sheet.shape[1], sheet.shape[0]), (255, 255, 255))
        ImageDraw.Draw(img).text((4, 2 + 14 + 48 + 8), text, fill=(0, 0, 0))
        return np.asarray(img)[2 + 14 + 48 + 7:2 + 14 + 48 + 20, :50]

    region = sheet[2 + 14 + 48 + 7:2 + 14 + 48 + 20, :50]
    assert np.array_equal(region, caption("keep?")) and not np.array_equal(region, caption("query"))


def test_radius_must_be_non_negative(tmp_path):
    index = save_index(tmp_path / "idx", spread(5))
    r = runner.invoke(app, ["dupes", str(tmp_path / "idx"), "--radius", "-1"])
    assert r.exit_code == 2 and "error: radius must be a non-negative integer" in r.output
    with pytest.raises(Exception, match="radius"):
        find_duplicates(index, -1)
