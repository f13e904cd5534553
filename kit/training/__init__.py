"""Training on the data and measuring its effect: the midtraining task mixture and small GPT (notebook 05),
finetuning a real chat model, its GGUF export and the identity evaluation (notebook 07).
"""
