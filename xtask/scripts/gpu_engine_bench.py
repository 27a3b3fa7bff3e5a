"""The one prepared GPU run of the inference engines that `cargo xtask gpu-engine-bundle` packs
(run on the GPU machine, in one call of under 10 minutes: `python3 gpu_engine_bench.py`, from
the bundle's folder). On one model file of Qwen2.5-1.5B-Instruct's shapes with Q4_K_M's block
types (random weights, generated there by our benchmark with llama.cpp's Qwen2 vocabulary, so
every GGUF engine reads the same bytes), 512-token prompt, 128 greedy tokens:

1. our wgpu engine on Vulkan (`engine_shapes`, each kernel plan named in PLANS);
2. llama.cpp's `llama-bench` (pp512, tg128, all layers on the GPU), built there from the
   source in ./llama.cpp.tar.xz with CUDA, and with Vulkan too where `glslc` and the Vulkan
   headers exist;
3. transformers' `generate` in bf16 on a Qwen2.5-1.5B-shaped model (random weights from its
   config: the model card's quick start path);
4. `dpo bench --engine candle` on CUDA, when the bundle holds the CUDA `dpo` (./dpo.xz).

One Markdown table on stdout and in $OUT/gpu-engine-table.md, each engine's raw output in
$OUT/. A step that fails is reported as failed and the others still run. Never run at build or
test time."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "/tmp"))
WORK = Path(os.environ.get("GPU_RUN_WORK", "/tmp/dpo-gpu-engine-bench"))
PROMPT_TOKENS = 512
DECODE_TOKENS = 128
# The plans our engine runs: what the adapter gets (on an NVIDIA GPU: f16 tiles, subgroup
# sums), the same without subgroup sums, and the previous row layout for prompts.
PLANS = os.environ.get("ENGINE_PLANS", "auto,lanes:16/tiled-f16x32,lanes:16/rows:1x4")
JOBS = str(os.cpu_count() or 8)


def log(message):
    print(f"gpu_engine_bench: {message}", file=sys.stderr, flush=True)


def run(command, log_name, timeout, env=None, cwd=None):
    """Runs `command`, its output kept in $OUT/`log_name`; returns the output (raises on failure)."""
    log(" ".join(str(c) for c in command))
    started = time.time()
    result = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    output = result.stdout + result.stderr
    (OUT / log_name).write_text(output)
    log(f"  exit {result.returncode} after {time.time() - started:.0f} s")
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {result.returncode}: {output[-2000:]}")
    return result.stdout


def cuda_library_dirs():
    dirs = []
    for entry in sys.path:
        candidate = Path(entry) / "nvidia" / "cu13" / "lib"
        if candidate.is_dir():
            dirs.append(str(candidate))
    return dirs


def unpack_xz(name, target):
    import lzma

    with lzma.open(HERE / name) as packed, open(target, "wb") as binary:
        shutil.copyfileobj(packed, binary)
    target.chmod(0o755)


def gpu_name():
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown GPU"


def our_engine(model):
    """engine_shapes writes the model file, then prints a table row per plan."""
    bench = WORK / "engine_shapes"
    unpack_xz("engine_shapes.xz", bench)
    vocabulary = WORK / "llama.cpp" / "models" / "ggml-vocab-qwen2.gguf"
    output = run(
        [bench, "--plans", PLANS, "--write-gguf", model, "--vocabulary", vocabulary],
        "engine_shapes.txt",
        timeout=300,
    )
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d.]+", cells[2]):
            rows.append((f"wgpu (ours), Vulkan, plan {cells[0]}", cells[2], cells[3]))
    adapter = re.search(r"adapter: (.*)", output)
    return rows, adapter.group(1) if adapter else "?"


def build_llama_cpp(backend):
    source = WORK / "llama.cpp"
    build = WORK / f"llama.cpp-build-{backend}"
    flags = {
        "cuda": ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90", "-DGGML_CUDA_FA=OFF"],
        "vulkan": ["-DGGML_VULKAN=ON"],
    }[backend]
    run(
        ["cmake", "-S", source, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
         "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", *flags],
        f"llama.cpp-{backend}-configure.txt",
        timeout=120,
    )
    run(
        ["cmake", "--build", build, "--target", "llama-bench", "-j", JOBS],
        f"llama.cpp-{backend}-build.txt",
        timeout=420,
    )
    return build / "bin" / "llama-bench"


def llama_bench(binary, model, backend):
    output = run(
        [binary, "-m", model, "-p", PROMPT_TOKENS, "-n", DECODE_TOKENS, "-ngl", "99",
         "-r", "3", "-o", "json"],
        f"llama-bench-{backend}.json",
        timeout=180,
    )
    prefill = decode = None
    for test in json.loads(output):
        if test["n_prompt"] == PROMPT_TOKENS and test["n_gen"] == 0:
            prefill = test["avg_ts"]
        if test["n_gen"] == DECODE_TOKENS and test["n_prompt"] == 0:
            decode = test["avg_ts"]
    return (f"llama.cpp llama-bench, {backend.upper()}", f"{prefill:.1f}", f"{decode:.1f}")


def transformers_generate():
    """transformers' generate in bf16: first token after the prompt, then 128 greedy tokens."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=151_936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32_768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(device="cuda", dtype=torch.bfloat16).eval()
    prompt = torch.randint(0, 151_000, (1, PROMPT_TOKENS), device="cuda")

    def timed(new_tokens):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, eos_token_id=None, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - started

    timed(4)  # warm-up
    first = min(timed(1) for _ in range(3))
    whole = min(timed(DECODE_TOKENS + 1) for _ in range(2))
    prefill = PROMPT_TOKENS / first
    decode = DECODE_TOKENS / (whole - first)
    import transformers

    name = f"transformers {transformers.__version__} generate, torch {torch.__version__}, bf16"
    return (name, f"{prefill:.1f}", f"{decode:.1f}")


def candle_cuda(model):
    dpo = WORK / "dpo"
    unpack_xz("dpo.xz", dpo)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(cuda_library_dirs() + [env.get("LD_LIBRARY_PATH", "")])
    output = run(
        [dpo, "bench", "--engine", "candle", "--model", model, "--prompt-tokens", PROMPT_TOKENS,
         "--decode-tokens", DECODE_TOKENS],
        "dpo-bench-candle-cuda.txt",
        timeout=300,
        env=env,
    )
    row = json.loads(output.strip().splitlines()[-1])
    return ("candle quantized_qwen2 (`dpo bench`), CUDA",
            f"{row['prefill_tokens_per_second']:.1f}", f"{row['decode_tokens_per_second']:.1f}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with tarfile.open(HERE / "llama.cpp.tar.xz") as source:
        source.extractall(WORK / "llama.cpp")
    model = WORK / "qwen2.5-1.5b-shaped-q4_k_m.gguf"
    rows, failures = [], []
    card = gpu_name()

    def attempt(what, step):
        try:
            result = step()
            rows.extend(result if isinstance(result, list) else [result])
        except Exception as error:  # noqa: BLE001 — every failure is reported, the rest runs
            log(f"{what} failed: {error}")
            failures.append(f"{what}: {str(error).splitlines()[0][:300]}")

    adapter = "?"

    def ours():
        nonlocal adapter
        found, adapter = our_engine(model)
        return found

    attempt("our engine", ours)
    if model.exists():
        attempt("llama.cpp CUDA", lambda: llama_bench(build_llama_cpp("cuda"), model, "cuda"))
        if shutil.which("glslc"):
            attempt("llama.cpp Vulkan",
                    lambda: llama_bench(build_llama_cpp("vulkan"), model, "vulkan"))
        else:
            failures.append("llama.cpp Vulkan: not built (no glslc on this machine)")
        if (HERE / "dpo.xz").exists():
            attempt("candle on CUDA", lambda: candle_cuda(model))
    attempt("transformers", transformers_generate)

    table = [
        f"Qwen2.5-1.5B-Instruct shapes, Q4_K_M block types (random weights), "
        f"{PROMPT_TOKENS}-token prompt, {DECODE_TOKENS} greedy tokens; GPU: {card}; "
        f"wgpu adapter: {adapter}",
        "",
        "| engine | prefill tok/s | decode tok/s |",
        "|---|---:|---:|",
        *[f"| {name} | {prefill} | {decode} |" for name, prefill, decode in rows],
    ]
    if failures:
        table += ["", "Not measured:", *[f"- {failure}" for failure in failures]]
    text = "\n".join(table) + "\n"
    (OUT / "gpu-engine-table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
