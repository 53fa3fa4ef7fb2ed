"""`deephash evaluate` end to end on tiny codes files, and format_table / write_report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.evaluation import evaluate, evaluate_category, format_table, mean_average_precision, write_report

from eval_reference import random_case


@pytest.fixture
def codes_files(tmp_path):
    rng = np.random.default_rng(0)
    q, db, ql, dl = random_case(rng, nq=6, ndb=40, n_classes=3, nbytes=2)
    names = ["a", "b", "c"]
    CodesFile(q, 16, labels=ql, class_names=names, meta={"protocol": "toy"}).save(tmp_path / "q.npz")
    CodesFile(db, 16, labels=dl, class_names=names).save(tmp_path / "db.npz")
    return tmp_path, (q, db, ql, dl)


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_cli_prints_table_with_rules_and_writes_report(codes_files):
    tmp, (q, db, ql, dl) = codes_files
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", "--topk", 5, "--topk", 1000, "--out", tmp / "rep")
    assert res.exit_code == 0, res.output
    want = mean_average_precision(q, db, ql, dl)
    assert f"{want['tie_aware']:.4f}" in res.output and f"{want['deterministic']:.4f}" in res.output
    assert "database position" in res.output and "left out of every mean" in res.output
    assert "protocol: toy" in res.output and "mAP@5" in res.output
    for name in ("report.json", "report.md", "pr_curve.png", "precision_at_k.png"):
        assert (tmp / "rep" / name).stat().st_size > 0
    saved = json.loads((tmp / "rep" / "report.json").read_text())
    assert saved[0]["metrics"]["mAP"]["tie_aware"] == pytest.approx(want["tie_aware"])


def test_cli_json_and_empty_zero(codes_files):
    tmp, (q, db, ql, dl) = codes_files
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", "--json", "--empty", "zero", "--radius", 3)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["empty"] == "zero" and out["radius"]["r"] == 3 and out["n_queries_evaluated"] == len(q)
    assert out == json.loads(json.dumps(evaluate(q, db, ql, dl, radius=3, empty="zero", protocol="toy")))


@pytest.mark.parametrize(
    "setup, message",
    [
        ("nolabels", "has no labels"),
        ("width", "holds 16-bit codes but"),
        ("classes", "different class names"),
        ("empty", "empty must be one of"),
        ("missing", "codes file not found"),
    ],
)
def test_cli_bad_inputs_give_one_error_line(codes_files, setup, message):
    tmp, (q, db, ql, dl) = codes_files
    qpath, dbpath, extra = tmp / "q.npz", tmp / "db.npz", []
    if setup == "nolabels":
        CodesFile(db, 16).save(dbpath)
    elif setup == "width":
        CodesFile(np.zeros((40, 1), np.uint8), 8, labels=dl).save(dbpath)
    elif setup == "classes":
        CodesFile(db, 16, labels=dl, class_names=["x", "y", "z"]).save(dbpath)
    elif setup == "empty":
        extra = ["--empty", "skip"]
    elif setup == "missing":
        qpath = tmp / "nope.npz"
    res = run("--query", qpath, "--database", dbpath, *extra)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_write_report_for_several_code_lengths(tmp_path):
    rng = np.random.default_rng(4)
    results = []
    for nbytes in (1, 2, 4):
        q, db, ql, dl = random_case(rng, nq=5, ndb=30, nbytes=nbytes, n_values=20)
        results.append(evaluate(q, db, ql, dl, topk=(10,), protocol="toy"))
    md = write_report(results, tmp_path / "r")
    assert (tmp_path / "r" / "precision_radius_vs_bits.png").stat().st_size > 0
    text = md.read_text()
    assert "precision_radius_vs_bits.png" in text and "| mAP@10 |" in text
    table = format_table(results)
    assert "32 bits (toy) tie-aware" in table and "a query that retrieves nothing" in table


@pytest.fixture
def iah_files(tmp_path):
    """IAH-like codes files: 16-bit semantic and per-category codes from a few values (ties), 3 categories."""
    rng = np.random.default_rng(3)
    arrays = {}
    for name, n in (("q", 7), ("db", 50)):
        values = rng.integers(0, 256, (4, 3, 2), dtype=np.uint8)
        cat = values[rng.integers(0, 4, n)]
        labels = (rng.random((n, 3)) < 0.5).astype(np.uint8)
        labels[0] = 1
        sem = rng.integers(0, 256, (n, 2), dtype=np.uint8)
        probs, boxes = rng.random((n, 3)).astype(np.float32), rng.random((n, 3, 4)).astype(np.float32)
        CodesFile.from_iah(sem, cat, probs, boxes, 16, labels=labels, class_names=["a", "b", "c"]).save(
            tmp_path / f"{name}.npz")
        arrays[name] = (sem, cat, labels)
    return tmp_path, arrays


def as_json(result):
    return json.loads(json.dumps(result))


def test_cli_scores_semantic_and_category_codes_of_iah_files(iah_files):
    tmp, a = iah_files
    (qs, qc, ql), (ds, dc, dl) = a["q"], a["db"]
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", "--json", "--topk", 10)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"semantic", "category"}
    assert out["semantic"] == as_json(evaluate(qs, ds, ql, dl, topk=(10,)))
    assert out["category"] == as_json(evaluate_category(qc, dc, ql, dl, topk=(10,)))
    assert out["category"]["n_queries"] == int(ql.sum()) and out["category"]["protocol"] == "per (query, category)"


@pytest.mark.parametrize("mode", ["semantic", "category", "all"])
def test_cli_mode_selects_what_is_scored(iah_files, mode):
    tmp, a = iah_files
    (qs, qc, ql), (ds, dc, dl) = a["q"], a["db"]
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", "--json", "--mode", mode)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    sem, cat = as_json(evaluate(qs, ds, ql, dl)), as_json(evaluate_category(qc, dc, ql, dl))
    assert out == {"semantic": sem, "category": cat, "all": {"semantic": sem, "category": cat}}[mode]


def test_cli_category_semantic_ties_table_and_report(iah_files):
    tmp, a = iah_files
    (qs, qc, ql), (ds, dc, dl) = a["q"], a["db"]
    want = evaluate_category(qc, dc, ql, dl, query_semantic=qs, db_semantic=ds)
    plain = evaluate_category(qc, dc, ql, dl)
    assert want["metrics"]["mAP"]["deterministic"] != plain["metrics"]["mAP"]["deterministic"]
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", "--semantic-ties", "--out", tmp / "rep")
    assert res.exit_code == 0, res.output
    assert "16 bits (per (query, category)) stable" in res.output
    assert f"{want['metrics']['mAP']['deterministic']:.4f}" in res.output
    assert f"{int(ql.sum())} (query, category) pairs" in res.output and "semantic-code distance" in res.output
    saved = json.loads((tmp / "rep" / "report.json").read_text())
    assert [r["protocol"] for r in saved] == [None, "per (query, category)"]
    assert saved[1]["metrics"] == as_json(want)["metrics"]


def test_cli_category_codes_only_in_one_file(iah_files):
    tmp, a = iah_files
    qs, _, ql = a["q"]
    CodesFile(qs, 16, labels=ql, class_names=["a", "b", "c"]).save(tmp / "plain.npz")
    res = run("--query", tmp / "plain.npz", "--database", tmp / "db.npz", "--json")
    assert res.exit_code == 0, res.output
    assert "category" not in json.loads(res.stdout) and "metrics" in json.loads(res.stdout)
    res = run("--query", tmp / "plain.npz", "--database", tmp / "db.npz", "--mode", "category")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip() == f"error: {tmp / 'plain.npz'} holds no category codes; --mode category needs " \
                                 "IAH codes files (CodesFile.from_iah)"


@pytest.mark.parametrize("extra, message", [
    (["--mode", "boxes"], "error: --mode must be one of semantic, category, all, got 'boxes'"),
    (["--mode", "semantic", "--semantic-ties"], "error: --semantic-ties orders category rankings"),
])
def test_cli_bad_mode_options(iah_files, extra, message):
    tmp, _ = iah_files
    res = run("--query", tmp / "q.npz", "--database", tmp / "db.npz", *extra)
    assert res.exit_code == 2 and res.output.startswith(message) and "Traceback" not in res.output
