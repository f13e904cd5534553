"""Does a model know who it is? Held-out identity probes, scored per fact, through any endpoint.

Identity conversations exist to change what a chat model says about itself; this module measures
that change. The probes, the facts they check and the foreign identities a model must not claim are
hand-written data in knowledge/identity/ (never training data: tests/test_identity.py checks that no
probe is a user message of any training file).

Scoring, per answer (kit.facts.fact_verdict):
- each fact the probe checks is asserted: one of its patterns matches, no negation governs a mention ("not
  under the MIT license", "I'm not nanochat"), no contradiction of the knowledge base fails it
  (knowledge/identity/contradictions.yaml: "trained ... in 2019", "closed source", "I can browse the web");
- no fact at all is denied or contradicted, and no foreign identity is claimed (`foreign_identity_claims`:
  "I am X", "my name is X", "made by X", "As X, ..."; "I'm not ChatGPT" and "far behind GPT-4" pass);
- every sentence of the answer is kept by the truth check (kit.truth, the check generation and `kit validate
  --knowledge` apply): an answer that states the asked fact but adds a claim the knowledge base does not
  make ("trained by Andrej Karpathy's team at Stanford University", "in 2019"), contradicts it or flatters
  fails, whatever the probe; `untrue` lists each such sentence and why;
- a probe asked in another language is answered in it (kit.language: the share of that language's common
  words, knowledge/identity/languages.yaml): "I'm nanochat" states the name but does not answer "Comment tu
  t'appelles ?";
- the probe passes when all hold. The identity score is the share of scored probes that pass. The score
  before the negation, contradiction, language and truth checks is kept beside it (`score_mentioned`), with the number
  of answers each check turned from pass to fail (`flipped`), so the two scorers compare on the same answers.
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

import asyncio
import json
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import paths
from kit.secrets import scrub
from kit.facts import KINDS, NEW_CHECKS, NO_FOREIGN, IdentityData, Probe, knowledge_system_prompt
from kit.facts import default_data as _default_data
from kit.facts import score_answer as _fact_score
from kit.language import default_languages, language_verdict
from kit.truth import false_sentences

MAX_TOKENS = 96
# the checks that can turn an answer whose words are there from pass to fail, as `identity eval` reports them
CHECKS = (*NEW_CHECKS, "language", "truth")


# ---------------------------------------------------------------- scoring

def score_answer(probe: Probe, answer: str, data: IdentityData | None = None) -> dict:
    """kit.facts.score_answer, the truth check of every sentence (kit.truth, against the knowledge base and the
    probe's user turns) and, for a probe in another language than English, the answer's language
    (kit.language). `untrue` is [{sentence, verdict, reason, k_precision}] of the sentences the truth check does
    not keep; `language` is kit.language.language_verdict's (None for an English probe). Either fails the
    answer, and `flipped_by` gains "language" or "truth" when the answer passed before the checks."""
    scored = _fact_score(probe, answer, data)
    sources = " ".join([m["content"] for m in probe.history if m["role"] == "user"] + [probe.question])
    if probe.lang != "en":  # the truth check's stop-list is English: "je suis un petit modèle" claims nothing new
        sources += " " + " ".join(sorted(default_languages().words[probe.lang]))
    untrue = [v.as_dict() for v in false_sentences(answer, sources=sources)]
    # the name is the same in every language: "I'm nanochat" states it, but does not answer a French question
    language = None if probe.lang == "en" else language_verdict(answer, probe.lang, question=probe.question)
    wrong_language = language is not None and not language["ok"]
    flipped_by = scored["flipped_by"] + [check for check, hit in (("language", wrong_language), ("truth", untrue))
                                         if hit and scored["pass_mentioned"]]
    return {**scored, "pass": scored["pass"] and not untrue and not wrong_language, "untrue": untrue,
            "language": language, "flipped_by": flipped_by}


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
    # the scoring before the negation and contradiction checks, on the same answers, and what each check changed
    passed_mentioned = sum(r.get("pass_mentioned", r["pass"]) for r in scored)
    flipped = {check: sum(check in r.get("flipped_by", ()) for r in scored) for check in CHECKS}
    flipped["any"] = sum(bool(r.get("flipped_by")) for r in scored)
    untrue = sum(bool(r.get("untrue")) for r in scored)
    return {"score": passed / len(scored) if scored else None, "passed": passed, "scored": len(scored),
            "not_scored": len(rows) - len(scored), "per_fact": per_fact, "per_kind": per_kind,
            "score_mentioned": passed_mentioned / len(scored) if scored else None,
            "passed_mentioned": passed_mentioned, "flipped": flipped,
            "untrue": untrue, "untrue_share": untrue / len(scored) if scored else None}


def rescore(rows: list[dict], data: IdentityData | None = None) -> list[dict]:
    """Rows (from `evaluate_identity` or a saved result, perhaps scored by an older scorer) scored again
    with today's rules: the same answers, so two scorers can be compared side by side."""
    data = data or _default_data()
    probes = {p.id: p for p in data.probes}
    out = []
    for row in rows:
        row = dict(row)
        if row.get("error") is None:
            probe = probes.get(row["probe"]) or Probe(row["probe"], row["kind"], row["question"], tuple(row["facts"]))
            row.update(score_answer(probe, row["answer"], data))
        out.append(row)
    return out


@dataclass
class IdentityResult:
    """Per-probe rows (probe, kind, question, answer, facts, foreign, denied, contradicted, untrue, pass,
    mentioned, pass_mentioned, flipped_by, error) and the figures; `untrue_share`: the share of scored answers
    with a sentence the truth check does not keep."""

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
    score_mentioned: float | None = None  # the score before the negation and contradiction checks
    passed_mentioned: int = 0
    flipped: dict = field(default_factory=dict)  # check -> answers it turned from pass to fail
    untrue: int = 0  # answers with a sentence the truth check does not keep
    untrue_share: float | None = None

    def table(self):
        """One row per probe as a DataFrame: facts as `name+ creator-`, foreign claims, pass."""
        import pandas as pd

        return pd.DataFrame([{
            "probe": r["probe"], "kind": r["kind"], "question": r["question"], "answer": r["answer"],
            "facts": " ".join(f"{f}{'+' if ok else '-'}" for f, ok in r["facts"].items()),
            "foreign": ", ".join(r["foreign"]),
            "wrong": ", ".join([f"not {f}" for f in r.get("denied", ())] + list(r.get("contradicted", ()))),
            "untrue": " | ".join(f"{u['verdict']}: {u['sentence']} ({u['reason']})" for u in r.get("untrue", ())),
            "pass": None if r["error"] else r["pass"],
            "pass_before_checks": None if r["error"] else r.get("pass_mentioned", r["pass"]),
            "error": r["error"] or ""} for r in self.rows])

    def passed_without(self, check: str) -> int:
        """Probes that would pass without `check`: those that pass, and those it alone failed. The distill
        recipe keeps only what the truth check keeps, so a student of that data is scored with the
        filter it was made with; this is its score without it."""
        return sum(_passes(r, check) for r in self.rows if r["error"] is None)

    def paired_with(self, other: "IdentityResult", without: str | None = None) -> tuple[list[bool], list[bool]]:
        """Pass/fail of this result and `other` on the probes both scored, in one order: the input of
        `kit.stats.paired_gain`, which compares two models on the same probes. `without`: a check left out
        (as `passed_without`)."""
        theirs = {r["probe"]: _passes(r, without) for r in other.rows if r["error"] is None}
        both = [r for r in self.rows if r["error"] is None and r["probe"] in theirs]
        return [_passes(r, without) for r in both], [theirs[r["probe"]] for r in both]

    def sentences(self) -> dict:
        """Over the scored answers, split as the truth check splits them (kit.truth.sentences, an unfinished last
        sentence counted): {answers, sentences, untrue (sentences the truth check does not keep), per_answer (mean
        sentences per answer)}. A short answer has fewer sentences that can be untrue: the share of untrue
        sentences compares answers of different lengths where the share of answers with one cannot."""
        from kit.truth import sentences

        scored = [r for r in self.rows if r["error"] is None]
        n = sum(len(sentences(r["answer"])) for r in scored)
        return {"answers": len(scored), "sentences": n, "untrue": sum(len(r.get("untrue") or ()) for r in scored),
                "per_answer": n / len(scored) if scored else None}

    def facts_table(self):
        """Per fact (and no_foreign): how many answers were asked for it, how many stated it, the share."""
        import pandas as pd

        return pd.DataFrame([{"fact": f, "asked": v["asked"], "hit": v["hit"], "rate": v["rate"]}
                             for f, v in self.per_fact.items()])

    def as_dict(self) -> dict:
        return {"score": self.score, "passed": self.passed, "scored": self.scored, "not_scored": self.not_scored,
                "per_fact": self.per_fact, "per_kind": self.per_kind, "score_mentioned": self.score_mentioned,
                "passed_mentioned": self.passed_mentioned, "flipped": self.flipped, "untrue": self.untrue,
                "untrue_share": self.untrue_share,
                "model": self.model, "source": self.source,
                "system_prompt": self.system_prompt, "elapsed_s": self.elapsed_s, **self.meta, "rows": self.rows}

    def summary(self) -> str:
        score = "n/a" if self.score is None else f"{self.score:.2f}"
        line = f"identity score {score} ({self.passed}/{self.scored} probes passed) for {self.model} via {self.source}"
        return line + (f"; {self.not_scored} not scored (request failed)" if self.not_scored else "")

    def checks_summary(self) -> str:
        """What the negation, contradiction, language and truth checks changed, on the same answers."""
        if self.score_mentioned is None:
            return "no answers scored"
        turned = ", ".join(f"{check} {self.flipped.get(check, 0)}" for check in CHECKS)
        return (f"before the negation, contradiction, language and truth checks: {self.score_mentioned:.2f} "
                f"({self.passed_mentioned}/{self.scored}); answers each check turned from pass to fail: {turned} "
                f"({self.flipped.get('any', 0)} in all); answers with a sentence the truth check does not keep: "
                f"{self.untrue}/{self.scored}")


def _passes(row: dict, without: str | None = None) -> bool:
    """A row's pass, or (`without` a check) its pass had that check been left out."""
    return bool(row["pass"]) or (without is not None and row.get("flipped_by") == [without])


# ---------------------------------------------------------------- asking a model

def default_system_prompt() -> str:
    """The system prompt training uses (kit.training.base_model.SYSTEM_PROMPT), so the model is evaluated as
    it was taught: SmolLM2's chat template inserts "You are a helpful AI assistant named SmolLM, trained by
    Hugging Face" when a conversation has no system message, a foreign identity; the neutral prompt names
    none and leaves the answer to what the weights learnt. Imported here only when asked: base_model
    loads torch, and scoring saved answers needs none."""
    from kit.training.base_model import SYSTEM_PROMPT

    return SYSTEM_PROMPT


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
                      data: IdentityData | None = None, show_progress: bool = True, cache: bool = True,
                      timeout: float | None = None, item_timeout: float | None = None) -> IdentityResult:
    """Ask every probe greedily and score the answers (see the module docstring).

    endpoint/model: an OpenAI-compatible server (None: the environment, else the embedded model);
    checkpoint: a finetune output folder (or HF folder / GGUF) run in process instead, or an already
    loaded (model, tokenizer) pair from kit.training.base_model (a notebook loads once, asks often); gguf: a GGUF
    file served on loopback for the evaluation, as `kit serve --gguf` serves it. system_prompt:
    default the one training uses; knowledge=True puts the knowledge base there instead (the
    "told every fact" reference). limit: that many probes spread over the kinds. out: a JSON file.
    cache=False asks the server even for replies in the reply cache; timeout (seconds per request) and
    item_timeout (all attempts at one) bound an endpoint's requests (None: the client's defaults).
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
        from kit.llm.client import DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S, connect, run_sync

        embedded = gguf is None and not endpoints_from_env(endpoint, model)

        async def ask() -> tuple[list, str]:
            async with connect(endpoint, model, gguf=gguf and paths.resolve(gguf), concurrency=concurrency,
                               cache_dir=str(paths.cache_dir()) if cache else None,
                               timeout=timeout or DEFAULT_TIMEOUT_S,
                               item_timeout=item_timeout or DEFAULT_ITEM_TIMEOUT_S) as client:
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
            row.update({"facts": {f: False for f in probe.checks}, "foreign": [], "denied": [], "contradicted": [],
                        "untrue": [], "language": None, "pass": False, "mentioned": {f: False for f in probe.checks},
                        "pass_mentioned": False,
                        "flipped_by": []})
        rows.append(row)
    result = IdentityResult(rows=rows, model=model_name, source=source, system_prompt=system,
                            elapsed_s=round(time.perf_counter() - started, 2),
                            meta={"knowledge": knowledge, "max_tokens": max_tokens, "temperature": 0.0,
                                  "probes_file": paths.display_path(data.folder / "probes.yaml")},
                            **summarize(rows, data))
    if out is not None:
        _write_json(out, result.as_dict())
    return result


def is_result(path: Path) -> bool:
    """Whether `path` holds what `evaluate_identity(out=...)` writes (replacing it loses one evaluation's JSON)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and {"rows", "score", "per_fact"} <= set(value)


def _write_json(path: str | Path, value: dict) -> None:
    with paths.atomic_write(paths.resolve(path)) as tmp:
        tmp.write_text(json.dumps(scrub(value), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


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


# ---------------------------------------------------------------- showing a result

def _wrapped(text: str, width: int, indent: str = "    ") -> list[str]:
    """Every word of `text`, wrapped: a reader checks a verdict against the whole answer."""
    return textwrap.wrap(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent) or [indent]


def _failed_only_by(checks: list[str]) -> str:
    """' (fails only by the truth check)': the answer would pass without these checks."""
    if not checks:
        return ""
    named = checks[0] if len(checks) == 1 else f"{', '.join(checks[:-1])} and {checks[-1]}"
    return f" (fails only by the {named} check{'s' if len(checks) > 1 else ''})"


def format_result(result: IdentityResult, answer_width: int = 100) -> str:
    """The per-probe table (each answer in full, wrapped under its row), the per-fact and per-kind figures,
    the score, and what the negation and contradiction checks changed, as text."""
    lines = [f"{'probe':<16} {'pass':<4} {'facts':<24} {'foreign':<14} wrong (denied, contradicted)", "-" * answer_width]
    for r in result.rows:
        mark = "-" if r["error"] else ("yes" if r["pass"] else "no")
        facts = " ".join(f"{f}{'+' if ok else '-'}" for f, ok in r["facts"].items())
        wrong = ", ".join([f"not {f}" for f in r.get("denied", ())] + list(r.get("contradicted", ())))
        turned = _failed_only_by(r.get("flipped_by") or [])
        lines.append(f"{r['probe']:<16} {mark:<4} {facts:<24} {', '.join(r['foreign']):<14} {wrong}{turned}".rstrip())
        lines += _wrapped(f"(not scored: {r['error']})" if r["error"] else r["answer"], answer_width)
        if r.get("language") and not r["language"]["ok"]:
            lines += _wrapped(f"language: {r['language']['why']}", answer_width, indent="      ! ")
        for u in r.get("untrue", ()):  # the sentence that failed and why, under the answer
            lines += _wrapped(f"{u['verdict']}: {u['sentence']!r}, {u['reason']}", answer_width, indent="      ! ")
    lines += ["", f"{'fact':<14} {'stated':>8}  share"]
    for name, v in list(result.per_fact.items()) + [("", None)] + list(result.per_kind.items()):
        if v is None:
            lines += ["", f"{'kind':<14} {'passed':>8}  share"]
            continue
        rate = "n/a" if v["rate"] is None else f"{v['rate']:.2f}"
        lines.append(f"{name:<14} {v['hit']:>3}/{v['asked']:<4}  {rate}")
    lines += ["", result.summary(), result.checks_summary()]
    return "\n".join(lines)


def full_text(frame):
    """A DataFrame shown with every cell in full, wrapped (pandas cuts text at 50 characters by default):
    for a notebook's answer tables."""
    return (frame.style.hide(axis="index")
            .set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"}))

