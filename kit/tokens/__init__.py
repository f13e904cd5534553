"""From conversations to training rows: the BPE tokenizer, rendering with loss masks (nanochat's format
and a chat model's template), the token views, packing. Notebook 04.
"""
