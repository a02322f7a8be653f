"""Which model searches which collections: the searched collections grouped by the model each was built with.

A search embeds its text once per model and scores each collection with its own model; the caller says how a
collection's model is found (`ModelFor`: the server's model registry, or one model for all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.errors import ServerError
from server.search.text_embedder import TextEmbedder
from server.store.store import Collection

# (model, its text embedder) that a collection was built with; raises a ServerError (409) naming the model and
# how to make it available when it cannot be loaded
ModelFor = Callable[[Collection], tuple[Any, TextEmbedder]]


@dataclass
class ModelGroup:
    """Collections of one model identity, with the model and text embedder that search them."""

    model: Any
    embed_text: TextEmbedder
    cols: list[Collection] = field(default_factory=list)

    @property
    def identity(self) -> str:
        """The model identity every collection of the group was built with."""
        return str(self.model.identity)


def one_model(model: Any, embed_text: TextEmbedder) -> ModelFor:
    """A ModelFor that serves only `model`: a collection of another model is refused, naming both."""

    def model_for(col: Collection) -> tuple[Any, TextEmbedder]:
        col.check_model(model.identity)
        return model, embed_text

    return model_for


def group_by_model(cols: list[Collection], model_for: ModelFor, named: bool,
                   skipped: list[dict[str, str]]) -> list[ModelGroup]:
    """Groups in the collections' order; a collection whose model cannot be loaded raises when it was named,
    else it is added to `skipped` with the reason (another collection's source may still load the model)."""
    groups: dict[str, ModelGroup] = {}
    failed: list[tuple[Collection, ServerError]] = []
    for col in cols:
        if col.identity in groups:
            groups[col.identity].cols.append(col)
            continue
        try:
            model, embed = model_for(col)
        except ServerError as e:
            failed.append((col, e))
            continue
        groups[col.identity] = ModelGroup(model, embed, [col])
    for col, err in failed:
        if col.identity in groups:
            groups[col.identity].cols.append(col)
        elif named:
            raise err
        else:
            skipped.append({"collection": col.name, "model": col.identity, "reason": err.detail})
    return list(groups.values())


def example_group(cols: list[Collection], owner: Collection, model_for: ModelFor, named: bool,
                  skipped: list[dict[str, str]]) -> ModelGroup:
    """The one group a search by example tiles or feedback runs in: the owner's model and the collections of it;
    a collection of another model raises when named, else is skipped (vectors of two models never compare)."""
    model, embed = model_for(owner)
    group = ModelGroup(model, embed)
    for col in cols:
        if col.identity == owner.identity:
            group.cols.append(col)
        elif named:
            col.check_model(owner.identity)
        else:
            skipped.append({"collection": col.name, "model": col.identity,
                            "reason": f"built with model {col.identity!r}; a search by example tiles compares "
                                      f"vectors of their own model ({owner.identity!r}) only: search it by text"})
    return group
