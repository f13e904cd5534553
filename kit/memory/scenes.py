"""The memory benchmark's catalogue: scenes, what is bought in each, personas and phrasings, as data.

Everything the ledger holds is drawn from knowledge/memory_scenes.yaml by code (a sub-scene, one of
its items as the description, an amount in its price range), so no model text can reach the gold
data. The file is checked on load and a mistake names the file and the entry. Scene names are
matched case-insensitively when reading questions back, and stored in the file's spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from kit.memory.rules import subjects, topic_index, turn_problems
from kit.paths import knowledge_dir, read_yaml

SCENES_FILE = "memory_scenes.yaml"
PHRASING_SLOTS = {"greeting_first": set(), "greeting_later": set(), "expense": {"amount", "item", "category"},
                  "confirm": {"amount", "item", "category"}, "closing": set()}


class ScenesError(ValueError):
    """The scenes file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class SubScene:
    scene: str
    name: str
    price: tuple[float, float]
    items: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    subscenes: tuple[SubScene, ...]
    personas: dict[str, tuple[str, ...]]
    small_talk: dict[str, tuple[str, ...]]  # "general", a scene or a sub-scene -> lines
    phrasings: dict[str, tuple[str, ...]]
    path: Path
    reply_topics: dict[str, frozenset[str]]  # word stem -> topics (kit.memory.rules.topic_index)

    @property
    def scenes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sub in self.subscenes:
            out.setdefault(sub.scene, []).append(sub.name)
        return out


def _strings(path: Path, where: str, value: object, slots: set[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise ScenesError(f"{path}: {where} needs a non-empty list of strings")
    if any(ch.isdigit() for s in value for ch in s) and slots is not None and not slots:
        raise ScenesError(f"{path}: {where} holds a number; numbers in the dialogue belong to the ledger")
    for s in value:
        if slots is None:
            continue
        try:
            named = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(s)
                     if m.group("named") or m.group("braced")}
            Template(s).substitute({k: "x" for k in slots})
        except (KeyError, ValueError) as exc:
            raise ScenesError(f"{path}: {where}: {s!r} uses slot {exc}; known: {sorted(slots) or 'none'}") from None
        if named != slots:
            raise ScenesError(f"{path}: {where}: {s!r} must use every one of {sorted(slots)}")
    return tuple(s.strip() for s in value)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The whole file, checked. Raises ScenesError naming the file and the bad entry."""
    path = Path(path) if path else knowledge_dir() / SCENES_FILE
    try:
        data = read_yaml(path, "the scenes catalogue")
    except OSError as exc:
        raise ScenesError(f"{path}: cannot read scenes file ({exc.strerror or exc})") from None
    except ValueError as exc:  # not YAML, or not UTF-8
        raise ScenesError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), dict) or not data["scenes"]:
        raise ScenesError(f"{path}: expected a mapping with 'scenes' (scene -> sub-scene -> price and items)")
    subscenes = []
    for scene, subs in data["scenes"].items():
        if not isinstance(scene, str) or not scene.strip():
            raise ScenesError(f"{path}: scene name {scene!r} is not a non-empty string")
        if not isinstance(subs, dict) or not subs:
            raise ScenesError(f"{path}: scene {scene!r} needs a mapping of sub-scenes")
        if len({str(s).casefold() for s in subs}) != len(subs):
            raise ScenesError(f"{path}: scene {scene!r} lists a sub-scene twice")
        for sub, spec in subs.items():
            where = f"{scene} / {sub}"
            if not isinstance(sub, str) or not sub.strip() or not isinstance(spec, dict):
                raise ScenesError(f"{path}: {where}: needs a name and {{price: [low, high], items: [...]}}")
            price = spec.get("price")
            if (not isinstance(price, list) or len(price) != 2
                    or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in price)
                    or not 0 < price[0] <= price[1]):
                raise ScenesError(f"{path}: {where}: price must be [low, high] with 0 < low <= high")
            items = _strings(path, f"{where}: items", spec.get("items"))
            if any(ch.isdigit() for item in items for ch in item):
                raise ScenesError(f"{path}: {where}: an item holds a digit, which would read as an amount")
            subscenes.append(SubScene(scene.strip(), sub.strip(), (float(price[0]), float(price[1])), items))
    if len({s.scene.casefold() for s in subscenes}) != len({s.scene for s in subscenes}):
        raise ScenesError(f"{path}: two scenes differ only in case")
    scene_names = {s.scene for s in subscenes}
    personas = {str(k): _strings(path, f"personas: {k}", v, set()) for k, v in (data.get("personas") or {}).items()}
    if not personas:
        raise ScenesError(f"{path}: 'personas' needs at least one persona with lines")
    talk = {str(k): _strings(path, f"small_talk: {k}", v, set()) for k, v in (data.get("small_talk") or {}).items()}
    unknown = set(talk) - scene_names - {s.name for s in subscenes} - {"general"}
    if unknown or "general" not in talk:
        raise ScenesError(f"{path}: small_talk needs 'general' and only scene or sub-scene names as keys"
                          + (f" (unknown: {sorted(unknown)})" if unknown else ""))
    raw_topics = data.get("reply_topics")
    if not isinstance(raw_topics, dict) or not raw_topics:
        raise ScenesError(f"{path}: 'reply_topics' needs at least one topic with its words")
    topics = topic_index({str(k): _strings(path, f"reply_topics: {k}", v) for k, v in raw_topics.items()})
    raw = data.get("phrasings") or {}
    missing = set(PHRASING_SLOTS) - set(raw)
    if missing:
        raise ScenesError(f"{path}: phrasings lacks {sorted(missing)}")
    phrasings = {k: _strings(path, f"phrasings: {k}", raw[k], slots) for k, slots in PHRASING_SLOTS.items()}
    _check_turn_rules(path, {**{f"personas: {k}": v for k, v in personas.items()},
                             **{f"small_talk: {k}": v for k, v in talk.items()},
                             **{f"phrasings: {k}": v for k, v in phrasings.items()}})
    answered = {**{f"personas: {k}": v for k, v in personas.items()},
                **{f"small_talk: {k}": v for k, v in talk.items()},
                **{f"phrasings: {k}": phrasings[k] for k in ("greeting_first", "greeting_later", "closing")}}
    for where, texts in answered.items():
        for text in texts:
            if not subjects(text, topics):  # no reply could share a subject with it (kit.memory.rules.off_topic)
                raise ScenesError(f"{path}: {where}: {text!r} names no subject a reply could answer")
    return Catalogue(tuple(subscenes), personas, talk, phrasings, path, topics)


def _check_turn_rules(path: Path, lines: dict[str, tuple[str, ...]]) -> None:
    """A line the kit says in a dialogue must pass the same turn rules as a model's (kit.memory.rules)."""
    for where, texts in lines.items():
        for text in texts:
            filled = Template(text).safe_substitute(amount="12.5", item="a latte", category="Dining")
            problems = turn_problems(filled, [])
            if problems:
                raise ScenesError(f"{path}: {where}: {text!r} breaks a turn rule: {'; '.join(problems)}")


def load_scenes(path: str | Path | None = None) -> dict[str, list[str]]:
    """Scene -> sub-scene names, in file order (see load_catalogue)."""
    return load_catalogue(path).scenes


def canonical_scene(scenes: dict[str, list[str]], name: object) -> str | None:
    """The file's spelling of a scene name given in any case, or None if it is not a scene."""
    if not isinstance(name, str):
        return None
    folded = name.strip().casefold()
    return next((s for s in scenes if s.casefold() == folded), None)


def canonical_subscene(scenes: dict[str, list[str]], scene: str, name: object) -> str | None:
    """The file's spelling of a sub-scene of `scene`, or None if `scene` has no such sub-scene."""
    if not isinstance(name, str):
        return None
    folded = name.strip().casefold()
    return next((s for s in scenes.get(scene, []) if s.casefold() == folded), None)
