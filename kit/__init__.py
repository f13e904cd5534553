"""kit: a research kit for the data-to-tokens pipeline of a small chat LLM.

The package holds all logic; the notebooks in notebooks/ only set parameters and show results.
See docs/ARCHITECTURE.md for the map of modules and the contracts between them.
"""

__version__ = "0.1.0"
