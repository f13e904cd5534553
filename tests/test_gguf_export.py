"""kit.training.gguf_export with the real SmolLM2-135M GGUF: an export of the unchanged base reproduces every base
tensor (so the name map and the Q/K permutation are right), the exported file loads in llama.cpp, carries
the kit's chat template, and `python -m kit serve --gguf FILE` serves it and answers a chat request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ctrl_c import default_sigint

from kit.training.base_model import SYSTEM_PROMPT, default_gguf, load_base, with_default_system
from kit.training.gguf_export import ExportError, compare_with_base, export_gguf, gguf_tensors

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base():
    return load_base()


@pytest.fixture(scope="module")
def exported(base, tmp_path_factory) -> Path:
    model, tok = base
    template = with_default_system(tok.hf.chat_template, tok.chat_format.default_system, SYSTEM_PROMPT)
    return export_gguf(model, tmp_path_factory.mktemp("gguf") / "model.gguf", default_gguf(), chat_template=template)


def test_unchanged_base_exports_to_the_base_tensors(base):
    model, _ = base
    differences = compare_with_base(model, default_gguf())
    assert len(differences) == 272
    assert max(differences.values()) < 1e-6, sorted(differences.items(), key=lambda kv: -kv[1])[:3]


def test_a_wrong_permutation_would_show(base):
    """The check can fail: Q weights written without llama.cpp's permutation differ from the base."""
    import gguf
    import numpy as np

    model, _ = base
    reader = gguf.GGUFReader(default_gguf())
    ours = gguf_tensors(model.state_dict(), reader, tied=True)
    raw_q = model.state_dict()["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert not np.allclose(raw_q, ours["blk.0.attn_q.weight"])


def test_missing_tensor_is_an_error(base):
    import gguf

    model, _ = base
    state = dict(model.state_dict())
    del state["model.layers.3.mlp.up_proj.weight"]
    with pytest.raises(ExportError, match="blk.3.ffn_up.weight"):
        gguf_tensors(state, gguf.GGUFReader(default_gguf()), tied=True)


def test_export_loads_in_llama_cpp_with_the_kits_template(exported):
    import gguf
    from llama_cpp import Llama

    reader = gguf.GGUFReader(exported)
    assert SYSTEM_PROMPT in reader.fields["tokenizer.chat_template"].contents()
    assert "SmolLM" not in reader.fields["tokenizer.chat_template"].contents()
    assert exported.stat().st_size < 160e6  # Q8_0: about a byte per weight
    llm = Llama(str(exported), n_ctx=256, n_threads=1, verbose=False)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                     max_tokens=12, temperature=0)
    assert "Paris" in out["choices"][0]["message"]["content"]


def test_kit_serve_serves_the_export(exported):
    env = {**os.environ, "KIT_NO_DOTENV": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kit", "serve", "--gguf", str(exported), "--port", "0", "--threads", "1"],
                            preexec_fn=default_sigint,
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving model at http://127.0.0.1:"), first + proc.stderr.read()
        base_url = first.split(" at ", 1)[1].strip()
        reply = httpx.post(f"{base_url}/chat/completions", timeout=120, json={
            "model": "model", "temperature": 0, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Name a colour."}]}).json()
        assert reply["choices"][0]["message"]["content"].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out


def test_finetune_with_gguf_serves_the_template_training_used(tmp_path):
    """One step on the real model with --gguf: the GGUF carries the very template of the saved tokenizer
    (default system prompt = the kit's), so training, in-process evaluation and serving agree."""
    import gguf

    from kit.training.base_model import chat_messages, load_finetuned
    from kit.training.finetune import finetune
    from tiny_lm import IDENTITY

    result = finetune([IDENTITY], tmp_path / "ft", steps=1, gguf=True, progress=False)
    assert result.gguf == tmp_path / "ft" / "model.gguf"
    _, tok = load_finetuned(result.out_dir)
    served_template = gguf.GGUFReader(result.gguf).fields["tokenizer.chat_template"].contents()
    assert served_template == tok.hf.chat_template and tok.chat_format.default_system == SYSTEM_PROMPT
    question = [{"role": "user", "content": "Who are you?"}]
    assert list(tok.hf.apply_chat_template(question, add_generation_prompt=True, return_dict=True)["input_ids"]) == \
        tok.render_for_completion(chat_messages(question))
