"""Child process for integration tests: llama.cpp's OpenAI-compatible HTTP server on loopback.

    python tests/llm/llama_server.py MODEL.gguf PORT

Runs ``xllamacpp.Server`` with HTTP on 127.0.0.1:PORT until killed. It lives in its own
process because the in-process HTTP server ignores SIGTERM: tests stop it with SIGKILL.
"""

from __future__ import annotations

import sys
import threading


def main(argv: list[str]) -> int:
    import xllamacpp

    model_path, port = argv[0], int(argv[1])
    params = xllamacpp.CommonParams()
    params.model.path = model_path
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = 0
    params.port = port
    params.hostnames = ["127.0.0.1"]
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    threading.Event().wait()  # serve until killed
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
