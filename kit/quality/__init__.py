"""Is the data any good: structural and content rules, the quality report beside the reference data,
the LLM judge, and their plots. Notebook 03.
"""
