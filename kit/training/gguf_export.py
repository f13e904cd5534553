"""A finetuned model as a GGUF file that llama.cpp serves (`python -m kit serve --gguf DIR/model.gguf`).

The route that cannot drift from the base model: keep the base GGUF's metadata (architecture
settings, the tokenizer, its special ids) and write every one of its tensors anew from the finetuned
weights. Hugging Face names map to GGUF names through gguf-py's own table. transformers un-permutes
the attention Q and K weights of llama-architecture GGUFs when it loads them (llama.cpp's rotary
embedding pairs dimensions differently), so the export permutes them back; `compare_with_base`
checks that an export of the unchanged base model reproduces the base tensors.

Tensor types: 2-D weights as Q8_0 (8-bit blocks: a quarter of float32, close to lossless for a
135M model), 1-D tensors (norms) as F32, as llama.cpp's own converter does with --outtype q8_0.
The chat template can be replaced (kit.training.finetune writes the one whose default system prompt is
kit.training.base_model.SYSTEM_PROMPT, so serving matches training).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kit.paths import atomic_write

WEIGHT_TYPE = "Q8_0"
_PERMUTED = {"attn_q.weight": "head_count", "attn_k.weight": "head_count_kv"}


class ExportError(ValueError):
    """The model cannot be written into the base GGUF's layout (a tensor missing or of another shape)."""


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ExportError(f"{key} missing from the base GGUF's metadata")
    return field.contents()


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's order of the rotary halves (what its converter does to Hugging Face Q/K weights)."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def gguf_tensors(state_dict: dict[str, torch.Tensor], reader, *, tied: bool) -> dict[str, np.ndarray]:
    """The model's tensors under the base GGUF's names, Q/K permuted back, as float32 numpy arrays.
    Every tensor of the base must be there with its shape; a model tensor with no place in the GGUF is
    an error (the tied output head excepted: the GGUF stores it once, as the embedding)."""
    import gguf

    arch_name = _field(reader, "general.architecture")
    arch = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name), None)
    if arch is None:
        raise ExportError(f"gguf-py does not know the architecture {arch_name!r}")
    names = gguf.get_tensor_name_map(arch, int(_field(reader, f"{arch_name}.block_count")))
    heads = {key: int(_field(reader, f"{arch_name}.attention.{key}")) for key in set(_PERMUTED.values())}
    wanted = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    out: dict[str, np.ndarray] = {}
    for hf_name, tensor in state_dict.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None or name not in wanted:
            if tied and name == "output.weight":
                continue
            raise ExportError(f"model tensor {hf_name} has no place in the base GGUF (mapped to {name})")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if tuple(data.shape) != wanted[name]:
            raise ExportError(f"{hf_name}: shape {tuple(data.shape)} but the base GGUF's {name} is {wanted[name]}")
        suffix = name.split(".", 2)[-1] if name.startswith("blk.") else name
        if arch_name == "llama" and suffix in _PERMUTED:
            data = _permute(data, heads[_PERMUTED[suffix]])
        out[name] = data
    missing = sorted(set(wanted) - set(out))
    if missing:
        raise ExportError(f"the model has no tensor for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} of the base GGUF")
    return out


def export_gguf(model, out_path: str | os.PathLike, base_gguf: str | os.PathLike, *,
                chat_template: str | None = None, name: str | None = None) -> Path:
    """Write `model` (a transformers causal LM, LoRA already merged) as a GGUF at `out_path`, with the
    metadata of `base_gguf` (the GGUF it was loaded from), optionally another chat template and name."""
    import gguf

    reader = gguf.GGUFReader(base_gguf)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    tensors = gguf_tensors(model.state_dict(), reader, tied=tied)
    arch_name = _field(reader, "general.architecture")
    q8 = gguf.GGMLQuantizationType.Q8_0
    replaced = {"tokenizer.chat_template": chat_template, "general.name": name,
                "general.file_type": int(gguf.LlamaFileType.MOSTLY_Q8_0)}
    with atomic_write(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch_name)
        for field in reader.fields.values():
            if field.name == "general.architecture" or field.name.startswith("GGUF."):
                continue  # the writer writes these itself
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            value = replaced.get(field.name)
            writer.add_key_value(field.name, field.contents() if value is None else value, kind, sub_type=sub)
        for t in reader.tensors:  # the base's order
            data = tensors[t.name]
            if data.ndim >= 2 and data.shape[-1] % gguf.GGML_QUANT_SIZES[q8][0] == 0:
                writer.add_tensor(t.name, gguf.quants.quantize(data, q8), raw_dtype=q8)
            else:
                writer.add_tensor(t.name, data.astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out_path)


def compare_with_base(model, base_gguf: str | os.PathLike) -> dict[str, float]:
    """Largest absolute difference per tensor between the model's tensors (in GGUF layout) and the base
    GGUF's, dequantized: near 0 everywhere for the unchanged base model, which shows the name map and
    the Q/K permutation are right (a wrong permutation differs by the size of the weights)."""
    import gguf

    reader = gguf.GGUFReader(base_gguf)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    ours = gguf_tensors(model.state_dict(), reader, tied=tied)
    return {t.name: float(np.abs(gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours[t.name].shape) - ours[t.name]).max())
            for t in reader.tensors}
