"""Prompts as data: the knowledge base and the templates live in `knowledge/`, this module fills them.

Templates are plain text with named `$slots` (Python's `string.Template`), so a teacher can edit the
wording without touching code, and a missing or misspelt slot fails loudly instead of leaking a
literal `$topic` into a thousand prompts. The shipped templates put everything shared (knowledge,
rules, output format) first and the item's own elements last: servers that cache a common prompt
prefix (llama.cpp, vLLM, OpenAI) then process only the short tail of each new prompt. The JSON schema sent with every request is here too: it
constrains the shape (roles, at least two messages) wherever the endpoint enforces schemas.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from string import Template

from kit import paths

TEMPLATES = {"v1": "v1.txt", "v2": "v2.txt"}
REASK_TEMPLATE = "reask.txt"
SCHEMA_NAME = "conversation"
MIN_MESSAGES = 2
MAX_MESSAGES = 12  # keeps a rambling small model from filling its whole token budget with turns


def _folder(knowledge_dir: str | Path | None) -> Path:
    return Path(knowledge_dir) if knowledge_dir is not None else paths.knowledge_dir()


def load_knowledge(knowledge_dir: str | Path | None = None) -> str:
    """The knowledge base (self_knowledge.md) as one string."""
    path = _folder(knowledge_dir) / "self_knowledge.md"
    try:
        return paths.read_utf8(path).strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: knowledge base is missing") from None


def load_template(name: str, knowledge_dir: str | Path | None = None) -> Template:
    path = _folder(knowledge_dir) / "prompts" / name
    try:
        return Template(paths.read_utf8(path).strip())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: prompt template is missing") from None


def _fill(template: Template, name: str, **slots: str) -> str:
    try:
        return template.substitute(**slots)
    except KeyError as exc:
        raise ValueError(f"prompt template {name} uses slot ${exc.args[0]}, which the kit does not fill "
                         f"(known: {', '.join(sorted(slots))})") from None
    except ValueError as exc:  # a lone '$' in the text: Template wants '$$'
        raise ValueError(f"prompt template {name}: {exc} (write a literal dollar sign as $$)") from None


class PromptFiles:
    """The knowledge base and templates of one knowledge folder, each read when first needed and then
    kept. A bulk run holds one (kit.generation.generate): it renders a prompt per item from the same
    files, and looking at them again per item cost more than the rest of building the prompt. The
    module's functions below make a fresh one per call, so they see a file edited in between."""

    def __init__(self, knowledge_dir: str | Path | None = None):
        self.folder = _folder(knowledge_dir)
        self._templates: dict[str, Template] = {}

    @cached_property
    def knowledge(self) -> str:
        return load_knowledge(self.folder)

    @cached_property
    def knowledge_lines(self) -> frozenset[str]:
        return frozenset(self.knowledge.splitlines())

    def template(self, name: str) -> Template:
        if name not in self._templates:
            self._templates[name] = load_template(name, self.folder)
        return self._templates[name]

    def render(self, elements: dict) -> str:
        """`render_prompt`."""
        recipe = elements["recipe"]
        name = TEMPLATES[recipe]
        openers = "\n".join(f"- {m}" for m in elements["first_message_examples"])
        slots = {"knowledge": self.knowledge, "first_message_examples": openers}
        if recipe == "v2":
            slots.update(topic=elements["topic"], persona=elements["persona"], dynamic=elements["dynamic"])
        return _fill(self.template(name), name, **slots)

    def instructions(self, prompt: str, elements: dict, min_chars: int = 20) -> list[str]:
        """`instruction_lines`."""
        left_out = self.knowledge_lines | {f"- {m}" for m in elements["first_message_examples"]}
        lines = [line for line in prompt.splitlines() if line not in left_out]
        return [text for line in lines if len(text := line.strip().removeprefix("- ").strip()) >= min_chars]

    def reask(self, prompt: str, reply: str, problems: list[str]) -> list[dict]:
        """`reask_messages`."""
        listed = "\n".join(f"- {p}" for p in problems)
        follow_up = _fill(self.template(REASK_TEMPLATE), REASK_TEMPLATE, problems=listed)
        return [{"role": "user", "content": prompt},
                {"role": "assistant", "content": reply},
                {"role": "user", "content": follow_up}]


def render_prompt(elements: dict, knowledge_dir: str | Path | None = None) -> str:
    """The generation prompt for one item, from its sampled elements (see kit.generation.sampling)."""
    return PromptFiles(knowledge_dir).render(elements)


def instruction_lines(prompt: str, elements: dict, knowledge_dir: str | Path | None = None,
                      min_chars: int = 20) -> list[str]:
    """The prompt's own instructions, line by line (bullets dropped): every line of at least
    `min_chars` characters that is neither the knowledge base nor an example opener. A conversation
    that contains one has copied its instructions ("The user is: a journalist ...") instead of
    following them; quoting the knowledge base is the point, and an opener is only a style example."""
    return PromptFiles(knowledge_dir).instructions(prompt, elements, min_chars)


def reask_messages(prompt: str, reply: str, problems: list[str],
                   knowledge_dir: str | Path | None = None) -> list[dict]:
    """The conversation that asks again: the prompt, the unusable reply, and what was wrong with it."""
    return PromptFiles(knowledge_dir).reask(prompt, reply, problems)


def conversation_schema(grammar: bool = False) -> dict:
    """JSON schema of a generated conversation: {"messages": [{"role", "content"}, ...]}.

    The portable form (OpenAI strict mode, vLLM, OpenRouter) pins the role `enum` and `minItems`/
    `maxItems`; turn order is left to kit.rules. With `grammar=True` (servers that compile the
    schema into a sampling grammar, like llama.cpp's) it pins the turn order too: a choice of
    exact-length tuples (2, 4, ... MAX_MESSAGES messages) whose roles alternate user/assistant and whose
    contents are non-empty, so a small model cannot produce the structural errors it is prone to.
    OpenAI's strict mode refuses `anyOf` of tuples and `minLength`, hence the two forms.
    """
    if grammar:
        def message(role: str) -> dict:
            return {"type": "object",
                    "properties": {"role": {"const": role}, "content": {"type": "string", "minLength": 1}},
                    "required": ["role", "content"], "additionalProperties": False}

        shapes = [{"type": "array", "prefixItems": [message("user" if k % 2 == 0 else "assistant") for k in range(n)]}
                  for n in range(MIN_MESSAGES, MAX_MESSAGES + 1, 2)]
        messages = {"anyOf": shapes}
    else:
        item = {"type": "object",
                "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {"type": "string"}},
                "required": ["role", "content"], "additionalProperties": False}
        messages = {"type": "array", "minItems": MIN_MESSAGES, "maxItems": MAX_MESSAGES, "items": item,
                    "description": "Turns alternating user/assistant, starting with user, ending with assistant"}
    return {"type": "object", "properties": {"messages": messages}, "required": ["messages"],
            "additionalProperties": False}
