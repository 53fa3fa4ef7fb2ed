"""`deephash evaluate` end to end on tiny codes files, and format_table / write_report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deephash.cli import app
from deephash.codes import CodesFile
from deephash.evaluation import evaluate, format_table, write_report, mean_average_precision
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
