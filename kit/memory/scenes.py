"""The consumption scenes: categories and their sub-scenes, kept as editable data in knowledge/.

Names are matched case-insensitively when checking what a model wrote, and always stored in the
spelling of the YAML file, so answers and questions use one canonical name per scene.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kit.paths import knowledge_dir

SCENES_FILE = "memory_scenes.yaml"


class ScenesError(ValueError):
    """The scenes file is missing or malformed; the message names the file and the entry."""


def load_scenes(path: str | Path | None = None) -> dict[str, list[str]]:
    """Scene -> sub-scenes, in file order. Raises ScenesError naming the file and the bad entry."""
    path = Path(path) if path else knowledge_dir() / SCENES_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenesError(f"{path}: cannot read scenes file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenesError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ScenesError(f"{path}: expected a mapping of scene -> list of sub-scenes")
    scenes: dict[str, list[str]] = {}
    for scene, subs in data.items():
        if not isinstance(scene, str) or not scene.strip():
            raise ScenesError(f"{path}: scene name {scene!r} is not a non-empty string")
        if not isinstance(subs, list) or not subs or not all(isinstance(s, str) and s.strip() for s in subs):
            raise ScenesError(f"{path}: scene {scene!r} needs a non-empty list of sub-scene names")
        if len({s.casefold() for s in subs}) != len(subs):
            raise ScenesError(f"{path}: scene {scene!r} lists a sub-scene twice")
        scenes[scene.strip()] = [s.strip() for s in subs]
    if len({s.casefold() for s in scenes}) != len(scenes):
        raise ScenesError(f"{path}: two scenes differ only in case")
    return scenes


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
