"""``deephash index build|add|remove|info``: manage an on-disk Hamming index."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..codes import CodesFile
from ..errors import DeephashError
from ..index import ENGINES, HammingIndex, index_from_codes
from ._app import app

index_app = typer.Typer(help="Build and maintain a Hamming index of binary codes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command()
def build(
    codes: Path = typer.Option(..., "--codes", help="codes file (.npz) written by `deephash encode`"),
    out: Path = typer.Option(..., "--out", help="index directory to create or overwrite"),
    engine: str = typer.Option("auto", "--engine", help=f"default search engine: {'|'.join(ENGINES)}"),
    mih_m: int = typer.Option(None, "--mih-m", help="MIH substrings (default: about bits/log2(n))"),
    ivf_nlist: int = typer.Option(None, "--ivf-nlist", help="faiss-ivf lists (default: about sqrt(n))"),
    ivf_nprobe: int = typer.Option(16, "--ivf-nprobe", help="faiss-ivf lists scanned per query (approximate "
                                   "engine: more lists, higher recall)"),
) -> None:
    """Build an index from a codes file; ids, paths and labels become per-id metadata."""
    cf = CodesFile.load(codes)
    index = index_from_codes(cf, engine=engine, mih_m=mih_m, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe)
    index.save(out)
    typer.echo(f"indexed {len(index)} codes of {cf.bits} bits into {out}"
               + (f" (padded to {index.bits})" if index.bits != cf.bits else ""))


@index_app.command()
def add(
    index_dir: Path = typer.Option(..., "--index", help="index directory"),
    codes: Path = typer.Option(..., "--codes", help="codes file (.npz) with the codes to add"),
) -> None:
    """Add the codes of a codes file (their ids must be new) and save."""
    index = HammingIndex.load(index_dir, mmap=False)
    cf = CodesFile.load(codes)
    if cf.bits != index.code_bits:
        raise DeephashError(f"{codes} holds {cf.bits}-bit codes but the index holds {index.code_bits}-bit codes")
    index.add(cf.codes, ids=cf.ids, metadata=cf.metadata_rows())
    index.save(index_dir)
    typer.echo(f"added {len(cf)} codes; index holds {len(index)}")


@index_app.command()
def remove(
    index_dir: Path = typer.Option(..., "--index", help="index directory"),
    ids: str = typer.Option(..., "--ids", help="comma-separated ids, e.g. 1,2,3"),
) -> None:
    """Remove codes by id and save."""
    try:
        wanted = [int(s) for s in ids.split(",") if s.strip()]
    except ValueError as e:
        raise DeephashError(f"--ids must be comma-separated integers, got {ids!r}") from e
    index = HammingIndex.load(index_dir, mmap=False)
    n = index.remove(wanted)
    index.save(index_dir)
    typer.echo(f"removed {n} codes; index holds {len(index)}")


@index_app.command()
def info(index_dir: Path = typer.Option(..., "--index", help="index directory")) -> None:
    """Print the index manifest summary as JSON (checksums are verified)."""
    typer.echo(json.dumps(HammingIndex.load(index_dir).info(), indent=2))
