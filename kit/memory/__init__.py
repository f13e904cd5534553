"""The memory benchmark: multi-session expense-tracking dialogues whose questions have computed answers.

The kit plans each dated session's expenses first (the ledger, drawn from knowledge/memory_scenes.yaml),
then a model (the embedded SmolLM2 by default, any OpenAI-compatible endpoint otherwise) writes a
dialogue that carries them: turn by turn for a small model, in one reply for a large one; every turn is
checked. The kit computes the answers of eight question types from the ledger, and then asks models
those questions with the sessions that came before (all, the last, or a ranker's top k). Modules:

    rules      the rules every turn passes (markup, leaks, numbers, cut sentences, copies)
    scenes     the catalogue: scenes, items and prices, personas, phrasings (knowledge/memory_scenes.yaml)
    ledger     transactions and the computations behind every answer
    questions  the eight question types, de-duplication, positions, the rephrase guard
    sessions   the plan (the ledger first) and the one-call recipe with its checks
    turns      the turns recipe: one model turn at a time, verified, best of K
    rephrase   questions rewritten by the model, kept only when they keep their facts
    dataset    assembling and writing records (`generate`)
    rankers    BM25, newest-first and all: which sessions a question is asked with
    evaluate   asking a model the questions and scoring its answers (`evaluate`)
    retrieval  the ledger oracle and evidence recall@k
    plot       the timeline and accuracy per category
    cli        `python -m kit memory generate|eval`
"""
