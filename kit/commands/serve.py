"""`python -m kit serve`: one local GGUF (default: the embedded SmolLM2-135M) served as an OpenAI-compatible
API on loopback, in the foreground until Ctrl-C (kit.llm.local_server); it prints how to point the kit at
it, and exits 1 when the server cannot start or dies."""

from __future__ import annotations

import argparse

from kit.arguments import port_number
from kit.llm.local_server import DEFAULT_CONTEXT, LocalServerError, default_threads, serving
from kit.paths import argument
from kit.commands.exits import fail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit serve",
                                     description="Serve a local GGUF model as an OpenAI-compatible API on loopback.")
    parser.add_argument("--gguf", type=argument, help="model file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--port", type=port_number, default=8080, help="port on 127.0.0.1 (default 8080; 0 picks a free one)")
    parser.add_argument("--n-ctx", type=int, default=DEFAULT_CONTEXT, help="context length in tokens")
    parser.add_argument("--threads", type=int, help=f"CPU threads (default: all cores but one, here {default_threads()})")
    args = parser.parse_args(argv)
    try:
        with serving(args.gguf, args.port or None, None, args.n_ctx, args.threads, 120.0) as (ep, proc, log_path):
            print(f"serving {ep.model} at {ep.base_url}\n"
                  f"point the kit at it (shell, or a .env file):\n"
                  f"  export OPENAI_BASE_URL={ep.base_url} OPENAI_MODEL={ep.model} KIT_SCHEMA_STYLE=llamacpp\n"
                  f"Ctrl-C stops it.", flush=True)
            proc.wait()
            return fail("serve", f"{ep.gone()}")
    except LocalServerError as exc:
        return fail("serve", str(exc))
    except KeyboardInterrupt:
        print("stopped")
        return 0
