"""The HTTP service through FastAPI's test client: every endpoint, and every refusal with its status and a
JSON message."""

import asyncio
import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from deephash.cli import app as cli
from deephash.retrieval import open_index
from deephash.service import Settings, create_app
from deephash.service.batcher import MicroBatcher

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def dsh(served_indexes, tmp_path):
    """A writable copy of the digits index, with its images as the allowed root."""
    shutil.copytree(served_indexes["dsh"], tmp_path / "idx")
    return tmp_path / "idx", served_indexes["digits"]


def client(index_dir, **kw) -> TestClient:
    return TestClient(create_app(Settings(str(index_dir), **kw)))


def unique_items(index_dir) -> list[tuple[int, Path]]:
    """(id, path) of indexed images whose code no other image shares: their own copy must rank first."""
    idx = open_index(index_dir)
    codes, ids = idx.codes, idx.ids
    return [(int(i), Path(idx.get_metadata([i])[0]["path"])) for n, i in enumerate(ids)
            if (codes == codes[n]).all(1).sum() == 1]


def png(size=(32, 32), seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def assert_error(r, status, *words):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and "Traceback" not in r.text
    for w in words:
        assert w in body["detail"], body


def test_read_endpoints_on_a_dsh_index(dsh):
    idx, digits = dsh
    me, query = unique_items(idx)[0]
    label = query.parent.name
    with client(idx) as c:
        assert c.get("/health").json() == {"status": "ok", "count": 54}
        info = c.get("/v1/info").json()
        assert info["bits"] == 16 and info["count"] == 54 and info["method"] == "dsh" and info["index_version"] == 1
        assert info["class_names"] == [str(i) for i in range(10)] and info["modes"] == ["semantic"]
        assert info["writable"] is False
        r = c.post("/v1/search", files={"image": ("q.png", query.read_bytes(), "image/png")}, data={"k": "5"})
        res = r.json()
        assert r.status_code == 200 and res["query"] == "q.png" and len(res["results"]) == 5
        assert res["results"][0] == {"id": me, "distance": 0, "path": str(query), "labels": [label]}
        assert [x["distance"] for x in res["results"]] == sorted(x["distance"] for x in res["results"])
        item = c.get(f"/v1/items/{me}").json()
        assert item["path"] == str(query) and item["labels"] == [label] and len(item["code"]) == 4
        by_code = c.post("/v1/search", json={"code": item["code"], "k": 5}).json()["results"]
        by_id = c.post("/v1/search", json={"id": me, "k": 5}).json()["results"]
        assert by_code == by_id == res["results"]
        within = c.post("/v1/search", json={"id": me, "radius": 1}).json()["results"]
        assert within and all(x["distance"] <= 1 for x in within)
        assert c.get(f"/v1/items/{me}/image").content == query.read_bytes()
        t = c.get(f"/v1/items/{me}/thumbnail", params={"size": 20})
        assert t.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(t.content)).size) == 20
        assert (me, 20) in c.app.state.service._thumbs                   # cached
        assert c.get(f"/v1/items/{me}/thumbnail", params={"size": 20}).content == t.content
        metrics = c.get("/metrics").text
        assert 'deephash_http_requests_total{method="POST",route="/v1/search",status="200"} 4.0' in metrics
        assert "deephash_index_items 54.0" in metrics and "deephash_http_request_seconds_bucket" in metrics
        assert "deephash_encode_batch_size_count 1.0" in metrics
        assert "/v1/search" in c.get("/openapi.json").json()["paths"] and c.get("/docs").status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "searchBy" in c.get("/static/app.js").text


def test_iah_index_answers_in_category_mode(served_indexes):
    squares = served_indexes["squares"]
    with client(served_indexes["iah"]) as c:
        info = c.get("/v1/info").json()
        assert info["method"] == "iah" and info["category_codes"] >= 24 and info["modes"] == ["semantic", "category"]
        image = (squares / "images" / "train" / "0.png").read_bytes()
        res = c.post("/v1/search", files={"image": ("0.png", image)}, data={"k": "3", "mode": "category"}).json()
        assert res["mode"] == "category" and res["categories"]
        for cat in res["categories"]:
            found = [x for x in res["results"] if x["category"] == cat["name"]]
            assert len(found) == 3 and all(len(x["box"]) == 4 and 0 <= x["prob"] <= 1 for x in found)
            assert len(cat["box"]) == 4 and cat["name"] in info["class_names"]
        by_id = c.post("/v1/search", json={"id": 0, "k": 3, "mode": "category"}).json()
        assert by_id["results"][0]["id"] == 0 and by_id["results"][0]["distance"] == 0
        assert len(c.post("/v1/search", files={"image": ("0.png", image)}).json()["results"]) == 10


def test_writes_persist_before_the_answer(dsh, tmp_path):
    idx, digits = dsh
    upload = sorted(digits.glob("7/*.png"))[0].read_bytes()
    with client(idx, token=TOKEN, allow_root=str(digits)) as c:
        r = c.post("/v1/items", headers=AUTH, files=[("image", ("mine.png", upload)), ("image", ("b.png", png()))])
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        assert len(ids) == 2 and r.json()["count"] == 56 and r.json()["failures"] == []
        assert len(open_index(idx)) == 56                                # saved before the answer
        item = c.get(f"/v1/items/{ids[0]}").json()
        assert item["name"] == "mine.png" and (idx / "uploads").is_dir() and item["path"].startswith(str(idx))
        assert c.get(f"/v1/items/{ids[0]}/image").content == upload
        found = c.post("/v1/search", files={"image": ("q.png", upload)}, data={"radius": "0"}).json()["results"]
        assert ids[0] in [x["id"] for x in found]
        r = c.post("/v1/items", headers=AUTH, json={"paths": ["1/" + sorted(digits.glob("1/*.png"))[0].name]})
        assert r.status_code == 201 and r.json()["count"] == 57
        assert c.get(f"/v1/items/{r.json()['ids'][0]}").json()["path"] == str(sorted(digits.glob("1/*.png"))[0])
        r = c.delete(f"/v1/items/{ids[0]}", headers=AUTH)
        assert r.json() == {"removed": ids[0], "count": 56}
        assert len(open_index(idx)) == 56
        assert_error(c.get(f"/v1/items/{ids[0]}/thumbnail"), 404, str(ids[0]))


def test_a_running_server_picks_up_what_other_writers_save(dsh):
    """Another process (``deephash index add``, ``deephash up``, another worker) changes the folder: the
    server answers from the new index within a refresh period, and its own next write keeps that change."""
    import time

    from deephash.retrieval import update_index

    idx, _ = dsh
    with client(idx, token=TOKEN, refresh_s=0.05) as c:
        first = c.get("/v1/info").json()["count"]
        with update_index(idx) as other:
            gone = int(other.ids[0])
            other.remove([gone])
        for _ in range(100):
            if c.get("/v1/info").json()["count"] == first - 1:
                break
            time.sleep(0.05)
        assert c.get("/v1/info").json()["count"] == first - 1
        assert_error(c.get(f"/v1/items/{gone}"), 404, str(gone))
        r = c.post("/v1/items", headers=AUTH, files=[("image", ("b.png", png()))])
        assert r.status_code == 201 and r.json()["count"] == first
    assert len(open_index(idx)) == first and gone not in open_index(idx).ids


def test_every_refusal_is_json_with_its_status(dsh, tmp_path):
    idx, digits = dsh
    text_as_jpg = ("photo.jpg", b"this is not an image", "image/jpeg")
    with client(idx) as c:                                               # no token configured
        assert_error(c.post("/v1/items", headers=AUTH, files={"image": ("a.png", png())}), 403, "--token",
                     "DEEPHASH_TOKEN")
        assert_error(c.delete("/v1/items/0", headers=AUTH), 403, "--token")
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    (digits.parent / "link-out.png").unlink(missing_ok=True)
    link = digits / "0" / "link-out.png"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    try:
        with client(idx, token=TOKEN, allow_root=str(digits), max_upload_mb=0.01) as c:
            assert_error(c.delete("/v1/items/0"), 401, "Bearer")
            assert_error(c.delete("/v1/items/0", headers={"Authorization": "Bearer wrong"}), 401, "Bearer")
            assert_error(c.delete("/v1/items/0", headers={"Authorization": TOKEN}), 401)
            big = png((80, 80))
            assert len(big) > 0.01 * 2 ** 20
            assert_error(c.post("/v1/search", files={"image": ("big.png", big)}), 413, "limit")
            chunked = c.post("/v1/items", headers={**AUTH, "Content-Type": "application/json"},
                             content=iter([b'{"paths": ["', b"x" * 20000, b'"]}']))  # no Content-Length
            assert "content-length" not in chunked.request.headers
            assert_error(chunked, 413, "limit")
            assert_error(c.post("/v1/search", files={"image": text_as_jpg}), 422, "photo.jpg")
            assert_error(c.post("/v1/items", headers=AUTH, files={"image": text_as_jpg}), 422, "photo.jpg")
            for bad in ("../outside.png", str(outside), "0/link-out.png", "0/../../outside.png"):
                assert_error(c.post("/v1/items", headers=AUTH, json={"paths": [bad]}), 403, "outside the allowed root")
            assert_error(c.post("/v1/items", headers=AUTH, json={"paths": ["0/nope.png"]}), 404, "nope.png")
            assert_error(c.post("/v1/items", headers=AUTH, json={"paths": ["x" * 5000]}), 422, "file name")
            for call in (c.get("/v1/items/999"), c.get("/v1/items/999/image"), c.get("/v1/items/999/thumbnail"),
                         c.delete("/v1/items/999", headers=AUTH), c.post("/v1/search", json={"id": 999})):
                assert_error(call, 404, "999")
            assert_error(c.post("/v1/search", json={"code": "zz"}), 422, "hexadecimal")
            assert_error(c.post("/v1/search", json={"code": "abcdef"}), 422, "4 hex digits")
            assert_error(c.post("/v1/search", json={"id": 1, "k": 0}), 422, "k must be")
            assert_error(c.post("/v1/search", json={"id": 1, "mode": "fuzzy"}), 422, "mode")
            assert_error(c.post("/v1/search", json={"id": 1, "mode": "category"}), 422, "IAH")
            assert_error(c.post("/v1/search", json={"id": 1, "code": "abcd"}), 422, "exactly one")
            assert_error(c.post("/v1/search", json={"id": 1, "extra": 2}), 422, "extra")
            assert_error(c.post("/v1/search", content=b"{not json", headers={"Content-Type": "application/json"}),
                         422, "JSON")
            assert_error(c.post("/v1/search", content=b"k=1", headers={"Content-Type": "text/plain"}), 415,
                         "multipart")
            assert_error(c.post("/v1/search", files={"other": ("a.png", png())}), 422, "'image'")
            assert_error(c.post("/v1/search", files={"image": ("a.png", png())}, data={"k": "ten"}), 422, "k must")
            assert_error(c.get("/v1/items/abc"), 422, "item_id")
            assert_error(c.get("/v1/items/1/thumbnail", params={"size": 5000}), 422, "size")
            assert_error(c.get("/no/such/route"), 404)
        bomb = io.BytesIO()
        Image.new("1", (8000, 8000)).save(bomb, "PNG")                   # 64 Mpixels in a few kB
        with client(idx, token=TOKEN) as c:
            assert len(bomb.getvalue()) < 2 ** 20
            assert_error(c.post("/v1/search", files={"image": ("bomb.png", bomb.getvalue())}), 413, "8000x8000")
            assert_error(c.post("/v1/items", headers=AUTH, files={"image": ("bomb.png", bomb.getvalue())}), 413,
                         "pixels")
            assert_error(c.post("/v1/items", headers=AUTH, json={"paths": ["0/001.png"]}), 403, "--allow-root")
        crash = create_app(Settings(str(idx)))
        crash.state.service.index.info = lambda: 1 / 0
        with TestClient(crash, raise_server_exceptions=False) as c:
            r = c.get("/v1/info")
            assert_error(r, 500, "server log")
            assert "ZeroDivision" not in r.text
    finally:
        link.unlink()
    assert len(open_index(idx)) == 54                                    # nothing was written


def test_concurrent_image_queries_are_encoded_together(served_indexes):
    idx = open_index(served_indexes["dsh"])
    images = [Path(md["path"]).read_bytes() for md in idx.get_metadata(idx.ids[:8])]
    app = create_app(Settings(str(served_indexes["dsh"]), batch_wait_ms=300))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            one = (await c.post("/v1/search", files={"image": ("0.png", images[0])}, data={"k": "3"})).json()
            before = app.state.batcher.batches
            many = await asyncio.gather(*[c.post("/v1/search", files={"image": (f"{n}.png", im)}, data={"k": "3"})
                                          for n, im in enumerate(images)])
            return one, before, [r.json() for r in many]

    one, before, many = asyncio.run(go())
    assert app.state.batcher.batches - before < 4                       # 8 queries in (almost always) 1 batch
    assert many[0]["results"] == one["results"]
    assert [r["query"] for r in many] == [f"{n}.png" for n in range(8)]
    assert all(r["results"][0]["distance"] == 0 for r in many)


def test_micro_batcher_groups_by_key_and_fails_a_batch_together():
    """One call of ``fn`` per key in a batch; when that call raises, every request in it gets the error (the
    batcher's promise: a batch fails together), other keys of the same batch and later batches are answered."""
    calls = []

    def fn(key, items):
        calls.append((key, list(items)))
        if "poison" in items:
            raise ValueError("broken model: cannot encode poison")
        return [f"{key}:{i}" for i in items]

    async def go():
        b = MicroBatcher(fn, max_batch=4, max_wait_ms=50)
        # gather queues all six before the batcher's task first runs: batch 1 = the first four, batch 2 = the rest
        out = await asyncio.wait_for(asyncio.gather(
            b.submit("k", 0), b.submit("other", "x"), b.submit("k", "poison"), b.submit("k", 1),
            b.submit("k", 2), b.submit("k", 3), return_exceptions=True), timeout=10)
        await b.close()
        return out, b.batches, b.items

    out, batches, items = asyncio.run(go())
    assert calls == [("k", [0, "poison", 1]), ("other", ["x"]), ("k", [2, 3])]  # the bad item shared a call
    failed = [out[0], out[2], out[3]]
    assert all(isinstance(e, ValueError) and str(e) == "broken model: cannot encode poison" for e in failed)
    assert out[1] == "other:x" and out[4:] == ["k:2", "k:3"]
    assert (batches, items) == (3, 6)


def test_a_failing_image_batch_answers_each_request_with_the_error(served_indexes):
    """Through the service: a batch of image queries whose encode fails answers every request in it with the
    error's status and message (not 500, not a hang); the next query is served."""
    from deephash.errors import InvalidInputError

    idx = open_index(served_indexes["dsh"])
    images = [Path(md["path"]).read_bytes() for md in idx.get_metadata(idx.ids[:3])]
    blank = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(blank, "PNG")
    # the batch runs as soon as the four are queued (or 5 s after the first): all four share it
    app = create_app(Settings(str(served_indexes["dsh"]), max_batch=4, batch_wait_ms=5000, warm_up=False))
    index = app.state.service.index
    search, sizes = index.search, []

    def failing_search(images=None, **kw):
        sizes.append(len(images))
        if any(np.asarray(im).max() == 0 for im in images):
            raise InvalidInputError("cannot encode a blank image")
        return search(images=images, **kw)

    index.search = failing_search

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            posts = [c.post("/v1/search", files={"image": (f"{n}.png", im)}, data={"k": "3"})
                     for n, im in enumerate([*images, blank.getvalue()])]
            batch = await asyncio.gather(*posts)
            app.state.batcher.max_wait = 0.01                # a lone query need not wait for company
            after = await c.post("/v1/search", files={"image": ("a.png", images[0])}, data={"k": "3"})
            return batch, after

    batch, after = asyncio.run(go())
    assert sizes[0] == 4                                     # the blank image shared its batch with three good ones
    for r in batch:
        assert_error(r, 422, "cannot encode a blank image")
    assert after.status_code == 200 and after.json()["results"][0]["distance"] == 0


def test_http_and_cli_refuse_bad_search_arguments_in_the_same_words(served_indexes, tmp_path):
    """One check of search arguments (``ImageIndex.check_search``) serves both entry points."""
    index = served_indexes["dsh"]
    query = tmp_path / "q.png"
    query.write_bytes(png())
    cases = [(["--radius", "-1"], {"radius": "-1"}), (["--mode", "fuzzy"], {"mode": "fuzzy"}),
             (["--mode", "category"], {"mode": "category"}), (["--rerank", "2"], {"rerank": "2"})]
    with client(index, warm_up=False) as c:
        for flags, form in cases:
            r = CliRunner().invoke(cli, ["search", str(index), "--image", str(query), *flags])
            assert r.exit_code == 2, r.output
            detail = c.post("/v1/search", files={"image": ("q.png", png())}, data=form).json()["detail"]
            assert r.output.strip() == f"error: {detail}", (flags, r.output)


def test_an_endpoint_is_one_new_file_in_routes(served_indexes, tmp_path, monkeypatch):
    """docs/architecture.md's example endpoint, dropped into the routes package, is served with nothing
    registered: ``routes.routers()`` finds it."""
    import re
    import sys

    from deephash.service import routes

    doc = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    source = re.search(r"`service/routes/neighbours.py`:\n\n```python\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "neighbours.py").write_text(source)
    monkeypatch.setattr(routes, "__path__", [*routes.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "deephash.service.routes.neighbours", raising=False)
    with client(served_indexes["dsh"], warm_up=False) as c:
        me = int(open_index(served_indexes["dsh"]).ids[4])
        r = c.get(f"/v1/items/{me}/neighbours", params={"k": 3})
        assert r.status_code == 200 and len(r.json()["results"]) == 3 and r.json()["results"][0]["distance"] == 0
        assert_error(c.get(f"/v1/items/{me}/neighbours", params={"k": 0}), 422, "k must be 1 to")
        assert_error(c.get("/v1/items/99999/neighbours"), 404, "99999")
        assert "/v1/items/{item_id}/neighbours" in c.get("/openapi.json").json()["paths"]
    monkeypatch.delitem(sys.modules, "deephash.service.routes.neighbours")


def test_serve_command_refuses_bad_settings(served_indexes, tmp_path):
    run = CliRunner().invoke
    r = run(cli, ["serve", str(served_indexes["dsh"]), "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output
    r = run(cli, ["serve", str(tmp_path / "none")])
    assert r.exit_code == 2 and "error:" in r.output
    r = run(cli, ["serve", str(served_indexes["dsh"]), "--allow-root", str(tmp_path / "none")])
    assert r.exit_code == 2 and "--allow-root" in r.output


def test_concurrent_code_queries_share_one_scan(served_indexes):
    app = create_app(Settings(str(served_indexes["dsh"]), batch_wait_ms=300, warm_up=False))
    codes = [open_index(served_indexes["dsh"]).codes[i].tobytes().hex() for i in range(6)]

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await asyncio.gather(*[c.post("/v1/search", json={"code": h, "k": 4}) for h in codes])

    answers = [r.json() for r in asyncio.run(go())]
    assert app.state.code_batcher.batches < 3 and app.state.code_batcher.items == 6
    assert [a["query"] for a in answers] == codes                       # each answer is its own query's
    assert all(a["results"][0]["distance"] == 0 and len(a["results"]) == 4 for a in answers)
