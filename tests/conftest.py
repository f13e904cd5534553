"""Shared pytest fixtures, kept in topic modules beside this file:
llm_fixtures (embedded model server, loopback fake OpenAI server) and token_fixtures (a trained tokenizer)."""

pytest_plugins = ["llm_fixtures", "token_fixtures"]
