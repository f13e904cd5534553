"""Shared pytest fixtures, kept in topic modules beside this file:
llm_fixtures (embedded model server, loopback fake OpenAI server) and token_fixtures (a trained tokenizer);
part_timing prints the time each test file and notebook took."""

pytest_plugins = ["llm_fixtures", "token_fixtures", "part_timing"]
