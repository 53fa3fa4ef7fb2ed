"""`deephash index build|add|remove|info` on tiny data via typer's CliRunner."""

import json

import numpy as np
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.index import HammingIndex

runner = CliRunner()


def write_codes(path, n, start_id, bits=32, seed=0):
    rng = np.random.default_rng(seed)
    cf = CodesFile(
        codes=rng.integers(0, 256, (n, bits // 8), dtype=np.uint8),
        bits=bits,
        ids=np.arange(start_id, start_id + n),
        paths=[f"img/{start_id + i}.png" for i in range(n)],
        labels=np.eye(3, dtype=np.uint8)[np.arange(n) % 3],
        class_names=["a", "b", "c"],
        meta={"checkpoint": {"path": "ckpt.pt"}},
    )
    cf.save(path)
    return cf


def test_build_add_remove_info(tmp_path):
    cf = write_codes(tmp_path / "codes.npz", 20, 0)
    write_codes(tmp_path / "more.npz", 5, 100, seed=1)
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", "--codes", str(tmp_path / "codes.npz"), "--out", str(idx), "--engine", "flat"])
    assert r.exit_code == 0, r.output
    index = HammingIndex.load(idx)
    assert len(index) == 20 and index.engine == "flat" and index.class_names == ["a", "b", "c"]
    assert index.checkpoint == {"path": "ckpt.pt"}
    assert index.get_metadata([4]) == [{"path": "img/4.png", "labels": ["b"]}]
    D, I = index.search(cf.codes[3], 1)
    assert I[0, 0] == 3 and D[0, 0] == 0

    r = runner.invoke(app, ["index", "add", "--index", str(idx), "--codes", str(tmp_path / "more.npz"),
                            "--keep-ids"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", "remove", "--index", str(idx), "--ids", "1,2,102"])
    assert r.exit_code == 0, r.output
    index = HammingIndex.load(idx)
    assert len(index) == 22 and 100 in index.ids and not np.isin([1, 2, 102], index.ids).any()
    assert index.get_metadata([101, 1]) == [{"path": "img/101.png", "labels": ["b"]}, None]

    r = runner.invoke(app, ["index", "info", "--index", str(idx)])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["count"] == 22 and info["bits"] == 32 and info["format"] == "deephash-index/1"


def test_cli_errors_are_one_clean_line(tmp_path):
    write_codes(tmp_path / "codes.npz", 5, 0)
    write_codes(tmp_path / "wide.npz", 5, 50, bits=64)
    idx = tmp_path / "idx"
    assert runner.invoke(app, ["index", "build", "--codes", str(tmp_path / "codes.npz"), "--out", str(idx)]).exit_code == 0
    cases = [
        (["index", "add", "--index", str(idx), "--codes", str(tmp_path / "codes.npz"), "--keep-ids"], "already in the index"),
        (["index", "add", "--index", str(idx), "--codes", str(tmp_path / "wide.npz")], "64-bit codes"),
        (["index", "remove", "--index", str(idx), "--ids", "77"], "not in the index"),
        (["index", "remove", "--index", str(idx), "--ids", "1,x"], "comma-separated"),
        (["index", "info", "--index", str(tmp_path / "nowhere")], "no deephash index"),
        (["index", "build", "--codes", str(tmp_path / "codes.npz"), "--out", str(idx), "--engine", "lsh"], "unknown engine"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.output and msg in r.output and "Traceback" not in r.output
    assert len(HammingIndex.load(idx)) == 5


def test_every_command_takes_the_index_as_argument_or_option(tmp_path):
    """One convention: IDX or --index IDX wherever a command opens an index; twice or never is one clear error."""
    write_codes(tmp_path / "codes.npz", 12, 0)
    write_codes(tmp_path / "more.npz", 3, 100, seed=1)
    idx = str(tmp_path / "idx")
    assert runner.invoke(app, ["index", "build", "--codes", str(tmp_path / "codes.npz"), "--out", idx]).exit_code == 0
    q = ["--query", str(tmp_path / "codes.npz"), "-k", "2", "--json"]
    for where in ([idx], ["--index", idx]):
        r = runner.invoke(app, ["index", "info", *where])
        assert r.exit_code == 0 and json.loads(r.output)["count"] == 12, r.output
        r = runner.invoke(app, ["search", *where, *q])
        assert r.exit_code == 0 and len(r.output.splitlines()) == 12, r.output
        r = runner.invoke(app, ["dupes", *where, "--radius", "0", "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["images"] == 12, r.output
    assert runner.invoke(app, ["index", "add", idx, "--codes", str(tmp_path / "more.npz")]).exit_code == 0
    assert runner.invoke(app, ["index", "remove", "--index", idx, "--ids", "12"]).exit_code == 0
    assert runner.invoke(app, ["index", "remove", idx, "--ids", "13"]).exit_code == 0
    assert len(HammingIndex.load(idx)) == 13
    commands = [["index", "info"], ["index", "add", "--codes", str(tmp_path / "more.npz")], ["index", "remove", "--ids", "1"],
                ["search", *q], ["dupes", "--radius", "0"], ["serve"]]
    for cmd in commands:
        r = runner.invoke(app, [*cmd, "--index", idx, idx])
        assert r.exit_code == 2 and "error: the index folder is given twice" in r.output, (cmd, r.output)
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2 and "error: missing the index folder" in r.output and "--index IDX" in r.output, (
            cmd, r.output)
    r = runner.invoke(app, ["search", idx, "--database", str(tmp_path / "codes.npz"), *q])
    assert r.exit_code == 2 and "not both" in r.output
    assert len(HammingIndex.load(idx)) == 13  # no refused command changed anything


def test_search_rows_show_rank_distance_path_and_labels_and_json_keeps_the_rest(tmp_path):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    index = HammingIndex(32)
    index.add(codes, metadata=[{"path": f"/photos/p{i}.jpg", "labels": [f"c{i}", "x"] if i != 5 else [],
                                "blake2b": f"{i:032x}", "size": 900 + i, "mtime_ns": 10**18} for i in range(6)])
    index.save(tmp_path / "idx")
    CodesFile(codes[2:3], 32).save(tmp_path / "q.npz")
    r = runner.invoke(app, ["search", str(tmp_path / "idx"), "--query", str(tmp_path / "q.npz"), "-k", "3"])
    assert r.exit_code == 0, r.output
    head, first, *rest = r.output.splitlines()
    assert head.endswith(": 3 results") and len(rest) == 2
    assert first.split() == ["1", "d=0", "/photos/p2.jpg", "c2,x"]
    for n, row in enumerate(rest, 2):
        rank, dist, path, *labels = row.split()
        i = int(path[len("/photos/p"):-len(".jpg")])
        assert rank == str(n) and dist.startswith("d=") and labels == ([f"c{i},x"] if i != 5 else [])
    assert not any(word in row for row in [first, *rest] for word in ("blake2b", "size", "mtime_ns", "id"))
    r = runner.invoke(app, ["search", str(tmp_path / "idx"), "--query", str(tmp_path / "q.npz"), "-k", "3", "--json"])
    top = json.loads(r.output)["results"][0]
    assert top["id"] == 2 and top["path"] == "/photos/p2.jpg" and top["blake2b"] == f"{2:032x}" and top["size"] == 902
