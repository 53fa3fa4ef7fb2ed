"""What a search answers: plain dataclasses that the CLI prints and the HTTP service serialises."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SearchResult:
    """One indexed image found for a query. ``category``, ``prob`` and ``box`` are set in category mode: the
    category searched, the indexed image's probability of it and the box (normalised x1, y1, x2, y2) of the
    proposal whose code matched."""

    id: int
    distance: int
    path: str | None = None
    labels: list[str] = field(default_factory=list)
    category: str | None = None
    prob: float | None = None
    box: list[float] | None = None
    metadata: dict = field(default_factory=dict)  # anything else stored with the image
    score: float | None = None  # re-ranked searches: cosine similarity of the feature vectors to the query's

    def to_dict(self) -> dict:
        # Written out rather than dataclasses.asdict, whose deep copy is most of the cost of a served search.
        out = {**self.metadata, "id": self.id, "distance": self.distance}
        for k, v in (("path", self.path), ("labels", self.labels), ("category", self.category),
                     ("prob", self.prob), ("box", self.box), ("score", self.score)):
            if v is not None:
                out[k] = list(v) if isinstance(v, (list, tuple)) else v
        return out


@dataclass
class CategoryQuery:
    """One category searched for a query in category mode: its index, name, the query's probability of it and
    the query's own box for it (normalised)."""

    category: int
    name: str
    prob: float
    box: list[float] | None = None


@dataclass
class QueryResult:
    """The ranked results of one query. In category mode ``results`` holds each searched category's ranked list
    in turn (best category first), every result naming its category; ``categories`` lists those searched."""

    query: str
    results: list[SearchResult]
    mode: str = "semantic"
    categories: list[CategoryQuery] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {"query": self.query, "mode": self.mode, "results": [r.to_dict() for r in self.results]}
        if self.categories:
            out["categories"] = [asdict(c) for c in self.categories]
        return out

    def groups(self) -> list[tuple[CategoryQuery | None, list[SearchResult]]]:
        """Results per searched category (one group of everything in semantic mode)."""
        if not self.categories:
            return [(None, self.results)]
        return [(c, [r for r in self.results if r.category == c.name]) for c in self.categories]
