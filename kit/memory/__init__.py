"""The memory benchmark: multi-session expense-tracking dialogues whose questions have computed answers.

A model (the embedded SmolLM2 by default, any OpenAI-compatible endpoint otherwise) writes one dated
session at a time, a dialogue plus the transactions it recorded; the kit checks that every transaction
is really in the dialogue, computes the answers of eight question types from the transactions it kept,
and then asks models those questions with only the sessions that came before. Modules:

    scenes     the consumption scenes (knowledge/memory_scenes.yaml)
    ledger     transactions and the computations behind every answer
    questions  the eight question types, de-duplication, positions, the rephrase guard
    sessions   asking the model for sessions and checking what it wrote
    dataset    planning, assembling and writing records (`generate`)
    evaluate   asking a model the questions and scoring its answers (`evaluate`)
    plot       accuracy per category as a bar chart
    cli        `python -m kit memory generate|eval`
"""
