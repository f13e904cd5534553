"""Does a model know who it is? Held-out identity probes, scored per fact, through any endpoint.

Identity conversations exist to change what a chat model says about itself; this module measures
that change. The probes, the facts they check and the foreign identities a model must not claim are
hand-written data in knowledge/identity/ (never training data: tests/test_identity.py checks that no
probe is a user message of any training file).

Scoring, per answer:
- each fact the probe checks is stated (any of the fact's patterns matches, case-insensitive);
- no foreign identity is claimed (`foreign_identity_claims`: "I am X", "my name is X", "made by X",
  "As X, ..."; a mention is not a claim, so "I'm not ChatGPT" and "far behind GPT-4" pass);
- the probe passes when both hold. The identity score is the share of scored probes that pass.
A probe whose request failed is not scored (it says why), so a down endpoint never reads as a model
that answers everything wrong.

Answers come greedily (temperature 0) from an OpenAI-compatible endpoint through kit.llm.client (the
embedded model when none is configured; a served finetuned GGUF, vLLM or an API model the same way),
or in process from a checkpoint folder with transformers. Endpoint replies go through the kit's reply
cache, which is keyed by the server as well as the model name (a served GGUF by its file and mtime), so
two finetunes served under one name never share answers while a re-run asks the base model nothing
new. `retention` measures the other side of a finetune: the masked loss on held-out general
conversations, before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from kit import paths

IDENTITY_DIR = "identity"
KINDS = ("direct", "indirect", "typo", "casual", "multilingual", "adversarial", "multiturn")
NO_FOREIGN = "no_foreign"  # the check every probe makes, reported beside the facts
# The system prompt training uses, so the model is evaluated as it was taught. SmolLM2's chat template
# inserts "You are a helpful AI assistant named SmolLM, trained by Hugging Face" when a conversation
# has no system message, which would tell the model a foreign identity; a neutral one that names no
# identity leaves the answer to what the weights learnt.
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant."
KNOWLEDGE_PROMPT = ("You are the assistant described below. Answer questions about yourself from these "
                    "facts only.\n\n{knowledge}")
MAX_TOKENS = 96


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Fact:
    id: str
    says: str
    patterns: tuple[re.Pattern, ...]

    def stated_in(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    question: str
    checks: tuple[str, ...]
    history: tuple[dict, ...] = ()
    lang: str = "en"

    def messages(self, system_prompt: str | None) -> list[dict]:
        """The conversation to send: the system prompt, the earlier turns, the question."""
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return system + [dict(m) for m in self.history] + [{"role": "user", "content": self.question}]


@dataclass(frozen=True)
class ForeignName:
    name: str
    patterns: tuple[re.Pattern, ...]


@dataclass(frozen=True)
class IdentityData:
    probes: tuple[Probe, ...]
    facts: dict[str, Fact]
    foreign: tuple[ForeignName, ...]
    folder: Path

    @cached_property
    def any_foreign(self) -> re.Pattern:
        """Every foreign name's patterns as one: most texts name none, and one search says so at the
        cost of a single pass instead of one per pattern (validation runs this on every reply)."""
        return re.compile("|".join(f"(?:{p.pattern})" for f in self.foreign for p in f.patterns), re.IGNORECASE)


def _read_yaml(path: Path, key: str) -> list:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a mapping with a list under {key!r}")
    return data[key]


def _compile(path: Path, where: str, patterns: Any) -> tuple[re.Pattern, ...]:
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{path}: {where}: 'patterns' must be a non-empty list of strings")
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{path}: {where}: bad pattern {p!r}: {exc}") from None
    return tuple(compiled)


def _entry(path: Path, i: int, item: Any, required: tuple[str, ...]) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"{path}: entry {i}: expected a mapping, got {type(item).__name__}")
    missing = [k for k in required if not item.get(k)]
    if missing:
        raise ValueError(f"{path}: entry {i} ({item.get('id') or item.get('name') or '?'}): missing {', '.join(missing)}")
    return item


def load_identity_data(folder: str | Path | None = None) -> IdentityData:
    """Probes, facts and foreign names from `folder` (default knowledge/identity/), checked: an unknown
    fact id, a duplicate probe id, a bad pattern or a malformed history is an error naming file and entry."""
    folder = Path(folder) if folder is not None else paths.knowledge_dir() / IDENTITY_DIR
    facts_path, foreign_path, probes_path = folder / "facts.yaml", folder / "foreign.yaml", folder / "probes.yaml"

    facts: dict[str, Fact] = {}
    for i, item in enumerate(_read_yaml(facts_path, "facts")):
        item = _entry(facts_path, i, item, ("id", "patterns"))
        if item["id"] in facts or item["id"] == NO_FOREIGN:
            raise ValueError(f"{facts_path}: entry {i}: fact id {item['id']!r} is used twice or reserved")
        facts[item["id"]] = Fact(item["id"], str(item.get("says", "")),
                                 _compile(facts_path, f"fact {item['id']}", item["patterns"]))

    foreign = tuple(
        ForeignName(str(item["name"]), _compile(foreign_path, f"name {item['name']}", item["patterns"]))
        for i, item in enumerate(_read_yaml(foreign_path, "foreign"))
        if _entry(foreign_path, i, item, ("name", "patterns")))

    probes: list[Probe] = []
    for i, item in enumerate(_read_yaml(probes_path, "probes")):
        item = _entry(probes_path, i, item, ("id", "kind", "question"))
        where = f"{probes_path}: probe {item['id']}"
        if any(p.id == item["id"] for p in probes):
            raise ValueError(f"{where}: id used twice")
        if item["kind"] not in KINDS:
            raise ValueError(f"{where}: unknown kind {item['kind']!r} (kinds: {', '.join(KINDS)})")
        checks = item.get("checks") or []
        unknown = [c for c in checks if c not in facts]
        if unknown:
            raise ValueError(f"{where}: checks unknown fact(s) {', '.join(map(str, unknown))} "
                             f"(facts: {', '.join(facts)})")
        history = item.get("history") or []
        roles = [m.get("role") if isinstance(m, dict) else None for m in history]
        if roles != ["user", "assistant"] * (len(history) // 2) or any(
                not isinstance(m.get("content"), str) or not m["content"].strip() for m in history):
            raise ValueError(f"{where}: history must be user/assistant pairs with text content")
        probes.append(Probe(str(item["id"]), item["kind"], str(item["question"]), tuple(checks),
                            tuple({"role": m["role"], "content": m["content"]} for m in history),
                            str(item.get("lang", "en"))))
    return IdentityData(tuple(probes), facts, foreign, folder)


@lru_cache(maxsize=1)
def _default_data() -> IdentityData:
    return load_identity_data()


# ---------------------------------------------------------------- claims

# How a speaker names itself: "I am", "my name is", "call me" (and the same in the probes' languages).
_SELF = re.compile(
    r"(?:\bi\s+am|\bi'?m|\bi\s+was|\bmy\s+name\s+is|\bmy\s+name's|\bcall\s+me|\bthis\s+is"
    r"|\bi\s+(?:belong\s+to|come\s+from|work\s+for|run\s+as)"
    r"|\bmy\s+(?:creators?|makers?|developers?|authors?|company|parent\s+company|team|trainers?|base\s+model)\s+(?:is|are|was|were)"
    r"|\byou(?:'re|\s+are)\s+(?:talking|chatting|speaking)\s+(?:to|with)"
    r"|\bje\s+suis|\bje\s+m'appelle|\bmon\s+nom\s+est|\bsoy|\bme\s+llamo|\bmi\s+nombre\s+es"
    r"|\bich\s+bin|\bich\s+hei(?:ss|\u00df)e|\bmein\s+name\s+ist|\bsono|\bmi\s+chiamo|\beu\s+sou|\bmeu\s+nome\s+\u00e9)"
    r"\s+", re.IGNORECASE)
# Words that may stand between "I am" and a name without changing who is named ("I am a large language
# model called X", "I'm an AI from X"). Anything else (not, like, than, behind, comma) breaks the claim,
# which is how comparisons and negations pass. \x00 stands for another foreign name ("I'm Meta's Llama").
_FILLER = (r"a|an|the|actually|really|just|simply|basically|indeed|truly|officially|called|named|known|as|"
           r"model|models|language|large|llm|ai|artificial|intelligence|assistant|chatbot|bot|chat|version|"
           r"variant|of|based|on|from|by|at|built|made|created|developed|trained|designed|programmed|"
           r"fine-?tuned|small|smaller|tiny|little|compact|helpful|friendly|open|source|open-source|instance|"
           r"part|one|member|powered|running|team|company|un|une|una|uno|modelo|mod\u00e8le|modello|ein|eine|"
           r"einer|ia|ki|assistent|asistente|assistente|de|del|von|du|la|le|el|il|lo|di|da|basado|bas\u00e9|"
           r"basiert|auf|sur|en|\x00+(?:'s)?")
_MID = rf"(?:(?:{_FILLER})[\s-]+){{0,8}}"
_SELF_CLAIM = re.compile(rf"(?<![\w']){_MID}$", re.IGNORECASE)
_NEGATED_BEFORE = re.compile(r"(?:\bno|\bnot|\bnever|n't|\bnicht|\bne|\bnon|\bn\u00e3o)\s+$", re.IGNORECASE)
# "made by X": the maker named after a verb of making (English, French, Spanish, Italian, Portuguese, German)
_AGENT = re.compile(
    r"(?:\b(?:created|made|built|developed|trained|designed|programmed|engineered|owned|released|produced|"
    r"fine-?tuned|powered|maintained|funded|invented)\s+(?:by|at)"
    r"|\b(?:cr\u00e9\u00e9e?|d\u00e9velopp\u00e9e?|entra\u00een\u00e9e?|con\u00e7ue?|fait)\s+par"
    r"|\b(?:creado|creada|desarrollado|entrenado|hecho|dise\u00f1ado)\s+por"
    r"|\b(?:creato|sviluppato|addestrato)\s+da|\b(?:criado|desenvolvido|treinado)\s+pel[oa]"
    r"|\b(?:entwickelt|erstellt|trainiert|gebaut|gemacht|programmiert)\s+von)"
    r"\s+(?:the\s+|la\s+|el\s+|le\s+|l')?(?:(?:team|folks|people|engineers|researchers|developers|company|"
    r"equipo|\u00e9quipe)\s+(?:at|from|of|de|von)\s+)?(?:\x00+(?:'s)?\s+)?$", re.IGNORECASE)
_GERMAN_AGENT_AFTER = re.compile(r"^\s*(?:entwickelt|erstellt|trainiert|gebaut|gemacht|programmiert)\b", re.IGNORECASE)
_GERMAN_VON = re.compile(r"\bvon\s+$", re.IGNORECASE)
_MAKER_VERB_AFTER = re.compile(r"^\s*(?:'s\s+\w+\s+)?(?:created|made|built|developed|trained|designed|programmed)\s+me\b",
                               re.IGNORECASE)
_AS_CLAIM = re.compile(rf"^\s*(?:well,?\s+|speaking\s+)?as\s+{_MID}$", re.IGNORECASE)
_AS_AFTER = re.compile(rf"^(?:'s)?(?:[\s-]+(?:{_FILLER})){{0,4}}\s*,", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|me|my|myself|je|j'|moi|yo|soy|fui|ich|mich|mir|bin|eu|sou|io|sono)\b",
                           re.IGNORECASE)
_NOT_SELF = re.compile(r"\b(?:it|he|she|they|them|its|their|his|her|unlike|like|than|compared|versus|vs|similar|"
                       r"other|others)\b", re.IGNORECASE)
_NEGATION_NEAR = re.compile(r"(?:\bno|\bnot|\bnever|n't|\bneither|\bnor|\bnicht|\bnon|\bpas|\bnunca)\b[\w\s']{0,20}$",
                            re.IGNORECASE)
# a sentence with no subject before the verb: "Created by X.", "nanochat, a model trained by X"
_SUBJECTLESS = re.compile(rf"^\s*(?:{_MID})?(?:[\w-]+,?\s+)?(?:{_MID})?$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;:]+(?=\s|$)|\n")


def _sentence_start(text: str, pos: int) -> int:
    starts = [m.end() for m in _SENTENCE_END.finditer(text, 0, pos)]
    return starts[-1] if starts else 0


def foreign_identity_claims(text: str, data: IdentityData | None = None) -> list[str]:
    """The foreign identities `text` claims as its own, in order of first claim, each once.

    A claim: "I am X" / "I'm X" / "my name is X" / "call me X" (a few filler words may stand between:
    "I'm a language model called X"), "created/made/built/developed/trained by X" said of itself,
    "X made me", a sentence opening "As X, ...", and the same in French, Spanish, German, Italian and
    Portuguese. Negations and comparisons are not claims: "I'm not ChatGPT", "I am nanochat, not
    Claude", "far behind GPT-4", "unlike ChatGPT, which was made by OpenAI".
    """
    if not isinstance(text, str) or not text:
        return []
    data = data or _default_data()
    text = text.replace("\u2019", "'")
    if not data.any_foreign.search(text):
        return []
    found: list[tuple[int, int, str]] = []
    for foreign in data.foreign:
        for pattern in foreign.patterns:
            found += [(m.start(), m.end(), foreign.name) for m in pattern.finditer(text) if m.end() > m.start()]
    if not found:
        return []
    found.sort()
    # every name shown as \x00s, so "I'm Meta's Llama" reads as filler before the name
    masked = list(text)
    for start, end, _ in found:
        masked[start:end] = "\x00" * (end - start)
    masked_text = "".join(masked)

    claimed: list[str] = []
    unclaimed: list[int] = []  # where names that were only mentioned start: a subject that is not "I"
    for start, end, name in found:
        sentence = _sentence_start(text, start)
        others = [s - sentence for s in unclaimed if s >= sentence]
        if _is_claim(masked_text[sentence:start], masked_text[end:], others):
            if name not in claimed:
                claimed.append(name)
        else:
            unclaimed.append(start)
    return claimed


def _is_claim(before: str, after: str, mentioned_before: list[int]) -> bool:
    """Is the name between `before` (its sentence so far) and `after` claimed? `mentioned_before`: where
    names that were not claimed start in `before` ("unlike ChatGPT, which was made by X": X is ChatGPT's)."""
    filler = _SELF_CLAIM.search(before)
    if filler is not None:
        head = before[:filler.start()]
        subject = _ends_with_self(head)
        if subject is not None and not _NEGATED_BEFORE.search(head[:subject]):
            return True
    if _AS_CLAIM.search(before) and _AS_AFTER.match(after):
        return True
    agent = _AGENT.search(before)
    if agent is None and _GERMAN_AGENT_AFTER.match(after):
        agent = _GERMAN_VON.search(before)
    if agent is not None:
        lead = before[:agent.start()]
        if _NEGATION_NEAR.search(lead) or _NOT_SELF.search(lead) or any(s < agent.start() for s in mentioned_before):
            return False
        return bool(_FIRST_PERSON.search(lead)) or _SUBJECTLESS.match(lead) is not None
    if _MAKER_VERB_AFTER.match(after):
        return not _NEGATION_NEAR.search(before)
    return False


def _ends_with_self(head: str) -> int | None:
    """Where the first-person subject that ends `head` starts ("... I am " -> the index of "I"), or None."""
    for m in _SELF.finditer(head):
        if m.end() == len(head):
            return m.start()
    return None


# ---------------------------------------------------------------- scoring

def facts_stated(answer: str, fact_ids: tuple[str, ...] | list[str], data: IdentityData | None = None) -> dict[str, bool]:
    """For each fact id, whether `answer` states it."""
    data = data or _default_data()
    return {f: data.facts[f].stated_in(answer) for f in fact_ids}


def score_answer(probe: Probe, answer: str, data: IdentityData | None = None) -> dict:
    """One answer scored: `facts` (fact id -> stated), `foreign` (identities claimed), `pass`."""
    data = data or _default_data()
    facts = facts_stated(answer, probe.checks, data)
    foreign = foreign_identity_claims(answer, data)
    return {"facts": facts, "foreign": foreign, "pass": all(facts.values()) and not foreign}


def summarize(rows: list[dict], data: IdentityData | None = None) -> dict:
    """Score (share of scored probes passed), per fact and per kind, from rows `evaluate_identity` makes.
    Rows with an error are counted as not scored and left out of every share."""
    data = data or _default_data()
    scored = [r for r in rows if r["error"] is None]

    def share(hit: int, asked: int) -> dict:
        return {"hit": hit, "asked": asked, "rate": hit / asked if asked else None}

    per_fact = {f: share(sum(r["facts"][f] for r in scored if f in r["facts"]),
                         sum(f in r["facts"] for r in scored))
                for f in data.facts if any(f in r["facts"] for r in rows)}
    per_fact[NO_FOREIGN] = share(sum(not r["foreign"] for r in scored), len(scored))
    per_kind = {k: share(sum(r["pass"] for r in scored if r["kind"] == k), sum(r["kind"] == k for r in scored))
                for k in KINDS if any(r["kind"] == k for r in rows)}
    passed = sum(r["pass"] for r in scored)
    return {"score": passed / len(scored) if scored else None, "passed": passed, "scored": len(scored),
            "not_scored": len(rows) - len(scored), "per_fact": per_fact, "per_kind": per_kind}


@dataclass
class IdentityResult:
    """Per-probe rows (probe, kind, question, answer, facts, foreign, pass, error) and the figures."""

    rows: list[dict]
    score: float | None
    passed: int
    scored: int
    not_scored: int
    per_fact: dict[str, dict]
    per_kind: dict[str, dict]
    model: str
    source: str
    system_prompt: str
    elapsed_s: float = 0.0
    meta: dict = field(default_factory=dict)

    def table(self):
        """One row per probe as a DataFrame: facts as `name+ creator-`, foreign claims, pass."""
        import pandas as pd

        return pd.DataFrame([{
            "probe": r["probe"], "kind": r["kind"], "question": r["question"], "answer": r["answer"],
            "facts": " ".join(f"{f}{'+' if ok else '-'}" for f, ok in r["facts"].items()),
            "foreign": ", ".join(r["foreign"]),
            "pass": None if r["error"] else r["pass"], "error": r["error"] or ""} for r in self.rows])

    def facts_table(self):
        """Per fact (and no_foreign): how many answers were asked for it, how many stated it, the share."""
        import pandas as pd

        return pd.DataFrame([{"fact": f, "asked": v["asked"], "hit": v["hit"], "rate": v["rate"]}
                             for f, v in self.per_fact.items()])

    def as_dict(self) -> dict:
        return {"score": self.score, "passed": self.passed, "scored": self.scored, "not_scored": self.not_scored,
                "per_fact": self.per_fact, "per_kind": self.per_kind, "model": self.model, "source": self.source,
                "system_prompt": self.system_prompt, "elapsed_s": self.elapsed_s, **self.meta, "rows": self.rows}

    def summary(self) -> str:
        score = "n/a" if self.score is None else f"{self.score:.2f}"
        line = f"identity score {score} ({self.passed}/{self.scored} probes passed) for {self.model} via {self.source}"
        return line + (f"; {self.not_scored} not scored (request failed)" if self.not_scored else "")


# ---------------------------------------------------------------- asking a model

def default_system_prompt() -> str:
    """The system prompt training uses (kit.training.base_model.SYSTEM_PROMPT), imported here only when asked:
    kit.quality.validation imports this module for its claims and must not pay for torch."""
    from kit.training.base_model import SYSTEM_PROMPT

    return SYSTEM_PROMPT


def knowledge_system_prompt() -> str:
    """The knowledge base as a system prompt: the reference row of an API model told every fact."""
    text = (paths.knowledge_dir() / "self_knowledge.md").read_text(encoding="utf-8")
    return KNOWLEDGE_PROMPT.format(knowledge=text.strip())


def select_probes(probes: tuple[Probe, ...] | list[Probe], limit: int | None) -> list[Probe]:
    """`limit` probes spread evenly over the list (so every kind keeps a share), or all of them."""
    probes = list(probes)
    if limit is None or limit >= len(probes):
        return probes
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return [probes[(i * len(probes)) // limit] for i in range(limit)]


async def _ask_endpoint(client, conversations: list[list[dict]], max_tokens: int,
                        show_progress: bool) -> list[tuple[str | None, str | None]]:
    from kit.llm.client import FatalAPIError, RetriesExhausted
    from kit.progress import progress_bar

    with progress_bar(total=len(conversations), desc="probes", unit="q", disable=not show_progress) as bar:
        async def one(messages: list[dict]) -> tuple[str | None, str | None]:
            try:
                completion = await client.complete(messages, temperature=0.0, max_tokens=max_tokens, seed=0)
                return (completion.text or "").strip(), None
            except RetriesExhausted as exc:
                return None, str(exc)
            except FatalAPIError as exc:
                if exc.status == 400:  # this conversation (too long, refused), not the endpoint
                    return None, str(exc)
                raise
            finally:
                bar.update(1)

        return list(await asyncio.gather(*(one(m) for m in conversations)))


def generate_answers(model, tokenizer, conversations: list[list[dict]], *, max_tokens: int = MAX_TOKENS,
                     batch_size: int = 16, show_progress: bool = True) -> list[str]:
    """Greedy answers of an in-process model (kit.training.base_model's tokenizer) to whole conversations, rendered
    with the model's chat template as training renders them; batched with left padding."""
    import torch

    from kit.progress import progress_bar

    prompts = [tokenizer.render_for_completion(c) for c in conversations]
    device = next(model.parameters()).device
    answers: list[str] = []
    with torch.no_grad(), progress_bar(total=len(prompts), desc="probes", unit="q", disable=not show_progress) as bar:
        for lo in range(0, len(prompts), batch_size):
            batch = prompts[lo:lo + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[tokenizer.pad_id] * (width - len(p)) + p for p in batch], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            out = model.generate(ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
            for row in out[:, width:].tolist():
                if tokenizer.eos_id in row:
                    row = row[:row.index(tokenizer.eos_id)]
                answers.append(tokenizer.decode(row).strip())
            bar.update(len(batch))
    return answers


def load_checkpoint(directory: str | Path):
    """(model, tokenizer) from a finetune output folder, or any Hugging Face model folder or GGUF file."""
    from kit.training.base_model import load_base, load_finetuned

    directory = Path(directory)
    return load_finetuned(directory) if (directory / "model.safetensors").is_file() else load_base(directory)


def evaluate_identity(*, endpoint: str | None = None, model: str | None = None,
                      checkpoint: str | Path | tuple | None = None, gguf: str | Path | None = None,
                      system_prompt: str | None = None, knowledge: bool = False, max_tokens: int = MAX_TOKENS,
                      out: str | Path | None = None, limit: int | None = None, concurrency: int = 8,
                      data: IdentityData | None = None, show_progress: bool = True) -> IdentityResult:
    """Ask every probe greedily and score the answers (see the module docstring).

    endpoint/model: an OpenAI-compatible server (None: the environment, else the embedded model);
    checkpoint: a finetune output folder (or HF folder / GGUF) run in process instead, or an already
    loaded (model, tokenizer) pair from kit.training.base_model (a notebook loads once, asks often); gguf: a GGUF
    file served on loopback for the evaluation, as `kit serve --gguf` serves it. system_prompt:
    default the one training uses; knowledge=True puts the knowledge base there instead (the
    "told every fact" reference). limit: that many probes spread over the kinds. out: a JSON file.
    """
    if sum(x is not None for x in (checkpoint, gguf, endpoint or model)) > 1:
        raise ValueError("give one of checkpoint, gguf or endpoint/model")
    if knowledge and system_prompt is not None:
        raise ValueError("give either knowledge=True or a system_prompt, not both")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    data = data or _default_data()
    system = knowledge_system_prompt() if knowledge else (system_prompt or default_system_prompt())
    probes = select_probes(data.probes, limit)
    conversations = [p.messages(system) for p in probes]
    started = time.perf_counter()
    if isinstance(checkpoint, tuple):
        net, tok = checkpoint
        loaded_from = getattr(getattr(net, "kit_load_info", None), "source", None)  # set by kit.training.base_model
        model_name, source = (Path(loaded_from).name if loaded_from else type(net).__name__), "in process"
    elif checkpoint is not None:
        net, tok = load_checkpoint(checkpoint)
        model_name, source = Path(checkpoint).name, f"checkpoint {paths.display_path(checkpoint)}"
    if checkpoint is not None:
        replies = [(a, None) for a in generate_answers(net, tok, conversations, max_tokens=max_tokens,
                                                        show_progress=show_progress)]
    else:
        from kit.llm.endpoints import endpoints_from_env
        from kit.llm.client import connect, run_sync

        embedded = gguf is None and not endpoints_from_env(endpoint, model)

        async def ask() -> tuple[list, str]:
            async with connect(endpoint, model, gguf=gguf and paths.resolve(gguf), concurrency=concurrency) as client:
                return (await _ask_endpoint(client, conversations, max_tokens, show_progress),
                        client.endpoints[0].model)

        replies, model_name = run_sync(ask())
        source = ("embedded model" if embedded else
                  f"{paths.display_path(paths.resolve(gguf))} served by llama.cpp" if gguf is not None else
                  endpoint or "endpoint from the environment")
    rows = []
    for probe, (answer, error) in zip(probes, replies):
        row = {"probe": probe.id, "kind": probe.kind, "question": probe.question, "history": list(probe.history),
               "answer": answer if answer is not None else "", "error": error}
        if error is None:
            row.update(score_answer(probe, answer, data))
        else:
            row.update({"facts": {f: False for f in probe.checks}, "foreign": [], "pass": False})
        rows.append(row)
    result = IdentityResult(rows=rows, model=model_name, source=source, system_prompt=system,
                            elapsed_s=round(time.perf_counter() - started, 2),
                            meta={"knowledge": knowledge, "max_tokens": max_tokens, "temperature": 0.0,
                                  "probes_file": paths.display_path(data.folder / "probes.yaml")},
                            **summarize(rows, data))
    if out is not None:
        _write_json(out, result.as_dict())
    return result


def _write_json(path: str | Path, value: dict) -> None:
    with paths.atomic_write(paths.resolve(path)) as tmp:
        tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- retention

def retention(model_or_dir, tokenizer=None, records: Any = None, *, max_tokens: int = 1024) -> dict:
    """How well a model still predicts held-out general conversations, to compare before and after a
    finetune: {loss (mean nats per supervised assistant token), bits_per_byte, tokens, conversations}.

    model_or_dir: a model with its kit.training.base_model tokenizer, or a folder (`tokenizer` then None).
    records: conversation records, or the path of a JSONL file of them. The figures are
    kit.training.finetune.conversation_loss's: rendered exactly as finetuning renders (same system prompt,
    same masks), so the loss is comparable with the training loss.
    """
    from kit.training.finetune import conversation_loss
    from kit.records import read_records

    if isinstance(model_or_dir, (str, Path)):
        model, tokenizer = load_checkpoint(model_or_dir)
    elif tokenizer is None:
        raise ValueError("retention: give the tokenizer with a model (or a folder instead of the model)")
    else:
        model = model_or_dir
    if isinstance(records, (str, Path)):
        records = read_records(paths.resolve(records)).records
    if not records:
        raise ValueError("retention: no conversations to measure")
    return {**conversation_loss(model, tokenizer, records, max_tokens=max_tokens), "conversations": len(records)}


def side_by_side(questions: list[str], before: list[str], after: list[str]):
    """Answers before and after a finetune, one row per question, as a DataFrame."""
    import pandas as pd

    if not len(questions) == len(before) == len(after):
        raise ValueError(f"side_by_side: {len(questions)} questions, {len(before)} answers before, {len(after)} after")
    return pd.DataFrame({"question": questions, "before": before, "after": after})


# ---------------------------------------------------------------- command line

def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def format_result(result: IdentityResult, answer_width: int = 70) -> str:
    """The per-probe table, the per-fact and per-kind figures and the score, as text."""
    lines = [f"{'probe':<16} {'pass':<4} {'facts':<24} {'foreign':<14} answer", "-" * (62 + answer_width)]
    for r in result.rows:
        mark = "-" if r["error"] else ("yes" if r["pass"] else "no")
        facts = " ".join(f"{f}{'+' if ok else '-'}" for f, ok in r["facts"].items())
        answer = f"(not scored: {r['error']})" if r["error"] else r["answer"]
        lines.append(f"{r['probe']:<16} {mark:<4} {facts:<24} {', '.join(r['foreign']):<14} {_shorten(answer, answer_width)}")
    lines += ["", f"{'fact':<14} {'stated':>8}  share"]
    for name, v in list(result.per_fact.items()) + [("", None)] + list(result.per_kind.items()):
        if v is None:
            lines += ["", f"{'kind':<14} {'passed':>8}  share"]
            continue
        rate = "n/a" if v["rate"] is None else f"{v['rate']:.2f}"
        lines.append(f"{name:<14} {v['hit']:>3}/{v['asked']:<4}  {rate}")
    lines += ["", result.summary()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit identity",
                                     description="identity probes: what a model says about itself")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="ask every probe greedily and score the answers per fact")
    source = ev.add_mutually_exclusive_group()
    source.add_argument("--endpoint", help="OpenAI-compatible base URL (default: environment, else the embedded model)")
    ev.add_argument("--model", help="model name at the endpoint")
    source.add_argument("--checkpoint", help="a `kit finetune` output folder (or HF folder / GGUF) run in process")
    source.add_argument("--gguf", help="a GGUF file (e.g. `kit finetune --gguf`'s model.gguf) served on loopback by llama.cpp")
    ev.add_argument("--out", help="write the result (rows and figures) to this JSON file")
    ev.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    ev.add_argument("--knowledge", action="store_true",
                    help="give the model the knowledge base as its system prompt (a reference row)")
    ev.add_argument("--limit", type=int, help="ask only N probes, spread over the kinds")
    ev.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="answer length limit (default: %(default)s)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("probes", help="list the probes and the facts each checks")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "eval" and args.model and (args.checkpoint or args.gguf):
        parser.error("--model goes with --endpoint, not with --checkpoint or --gguf")
    if args.command == "probes":
        data = _default_data()
        for p in data.probes:
            turns = f" (after {len(p.history) // 2} earlier exchange(s))" if p.history else ""
            print(f"{p.id:<16} {p.kind:<12} {'+'.join(p.checks):<20} {p.question}{turns}")
        print(f"{len(data.probes)} probes; facts: {', '.join(data.facts)}; "
              f"{len(data.foreign)} foreign identities ({paths.display_path(data.folder)})")
        return 0
    for flag, value in (("checkpoint", args.checkpoint), ("gguf", args.gguf)):
        if value is not None and not Path(value).exists():
            print(f"kit identity eval: {flag} not found: {value}", file=sys.stderr)
            return 2
    if args.limit is not None and args.limit < 1:
        print(f"kit identity eval: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    from kit.llm.client import LLMError
    from kit.llm.local_server import LocalServerError

    try:
        result = evaluate_identity(endpoint=args.endpoint, model=args.model, checkpoint=args.checkpoint, gguf=args.gguf,
                                   knowledge=args.knowledge, max_tokens=args.max_tokens, out=args.out,
                                   limit=args.limit, show_progress=not args.no_progress)
    except (ValueError, OSError, LLMError, LocalServerError) as exc:
        print(f"kit identity eval: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kit identity eval: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result.as_dict(), indent=1, ensure_ascii=False) if args.json else format_result(result))
    if args.out:
        print(f"written: {args.out}", file=sys.stderr)
    if result.not_scored:
        first = next(r for r in result.rows if r["error"])
        print(f"kit identity eval: error: {result.not_scored} of {len(result.rows)} probes were not scored: the request "
              f"failed (first, {first['probe']}: {first['error']}); the score is over the {result.scored} answered "
              f"probes only", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
