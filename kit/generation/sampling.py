"""Diversity by design: what each generated conversation is about, drawn per index from data files.

A generator asked for "a conversation about nanochat" a thousand times writes the same one a
thousand times. nanochat's scripts fight this by injecting sampled elements into every prompt; the
kit keeps those elements as data in `knowledge/` (topics by category, personas, dynamics, opener
styles) and draws them here.

Item `i` of a run with seed `s` draws from its own `random.Random(f"{s}:{i}")`, so the same index
always asks the same question, whatever the order in which items run or how often a run resumes.

Two recipes:
- "v2" (nanochat's second generator): a topic category, then a topic in it, a persona, a dynamic,
  and three opener examples from three different opener styles.
- "v1" (nanochat's first generator): five openers from one flat list, nothing else.
- "distill" (kit.generation.distill, for small models): v2's topic, persona and dynamic, and one opener
  from one style, which the composed first user message starts with.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit import paths

RECIPES = ("v1", "v2", "distill")
V1_OPENERS = 5
V2_OPENER_STYLES = 3
V1_CATEGORY = "flat"  # v1's openers have no styles; coverage reports them under this one name


@dataclass(frozen=True)
class Dimensions:
    """The diversity dimensions, as loaded from the knowledge folder."""

    topics: dict[str, list[str]]  # category -> topics
    personas: list[str]
    dynamics: list[str]
    first_messages: dict[str, list[str]]  # style -> openers (recipe v2)
    first_messages_flat: list[str]  # recipe v1


def _load_yaml(path: Path, kind: type) -> dict | list:
    data = paths.read_yaml(path, "diversity dimension file")
    if not isinstance(data, kind) or not data:
        raise ValueError(f"{path}: expected a non-empty {'mapping' if kind is dict else 'list'}")
    values = data.values() if isinstance(data, dict) else [data]
    for items in values:
        if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
            raise ValueError(f"{path}: every list must hold non-empty strings")
    return data


@lru_cache(maxsize=8)
def _load_dimensions(folder: Path) -> Dimensions:
    return Dimensions(
        topics=_load_yaml(folder / "topics.yaml", dict),
        personas=_load_yaml(folder / "personas.yaml", list),
        dynamics=_load_yaml(folder / "dynamics.yaml", list),
        first_messages=_load_yaml(folder / "first_messages.yaml", dict),
        first_messages_flat=_load_yaml(folder / "first_messages_v1.yaml", list),
    )


def load_dimensions(knowledge_dir: str | Path | None = None) -> Dimensions:
    """Read the dimension files (cached per folder); a missing or malformed file names itself."""
    folder = Path(knowledge_dir) if knowledge_dir is not None else paths.knowledge_dir()
    return _load_dimensions(folder.resolve())


def _check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")


def item_rng(seed: int, index: int) -> random.Random:
    """The random stream of one item; a string seed hashes the same on every platform and run."""
    return random.Random(f"{seed}:{index}")


def sample_elements(recipe: str, seed: int, index: int, dims: Dimensions | None = None) -> dict:
    """The diversity elements of item `index`: the same (recipe, seed, index) always gives the same dict.

    Every key is present for both recipes (None where a recipe has no such element), so records of
    either recipe share one meta layout.
    """
    _check_recipe(recipe)
    dims = dims or load_dimensions()
    rng = item_rng(seed, index)
    if recipe == "v1":
        openers = rng.sample(dims.first_messages_flat, min(V1_OPENERS, len(dims.first_messages_flat)))
        return {"recipe": recipe, "seed": seed, "index": index, "topic_category": None, "topic": None,
                "persona": None, "dynamic": None, "first_message_examples": openers,
                "first_message_categories": [V1_CATEGORY] * len(openers)}
    category = rng.choice(sorted(dims.topics))
    topic = rng.choice(dims.topics[category])
    persona = rng.choice(dims.personas)
    dynamic = rng.choice(dims.dynamics)
    n_styles = 1 if recipe == "distill" else V2_OPENER_STYLES
    styles = rng.sample(sorted(dims.first_messages), min(n_styles, len(dims.first_messages)))
    openers = [rng.choice(dims.first_messages[style]) for style in styles]
    return {"recipe": recipe, "seed": seed, "index": index, "topic_category": category, "topic": topic,
            "persona": persona, "dynamic": dynamic, "first_message_examples": openers,
            "first_message_categories": styles}


def _uniform(items: list[str]) -> dict[str, float]:
    """Share of each distinct item under a uniform draw from the list (duplicates add up)."""
    counts = Counter(items)
    return {item: n / len(items) for item, n in counts.items()}


def target_shares(recipe: str, dims: Dimensions | None = None) -> dict[str, dict[str, float]]:
    """The share each element is expected to have in a large run (each inner dict sums to 1).

    A coverage report compares these with the shares it counts in the records' meta. For opener
    styles the share is over all opener examples shown (3 per item in v2, 5 in v1).
    """
    _check_recipe(recipe)
    dims = dims or load_dimensions()
    if recipe == "v1":
        return {"topic_category": {}, "topic": {}, "persona": {}, "dynamic": {},
                "first_message_category": {V1_CATEGORY: 1.0}}
    n_categories = len(dims.topics)
    topic: dict[str, float] = Counter()
    for category, topics in dims.topics.items():
        for name, share in _uniform(topics).items():
            topic[name] += share / n_categories
    return {
        "topic_category": {c: 1 / n_categories for c in dims.topics},
        "topic": dict(topic),
        "persona": _uniform(dims.personas),
        "dynamic": _uniform(dims.dynamics),
        "first_message_category": {s: 1 / len(dims.first_messages) for s in dims.first_messages},
    }
