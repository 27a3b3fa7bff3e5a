"""The one prepared GPU run that `cargo xtask gpu-bundle` packs (run on the GPU machine, in
one call of under 10 minutes: `python3 gpu_run.py`, from the bundle's folder):

1. CUDA against the CPU, with `dpo` on both, on the TRL fixture's tiny Qwen2 (the real
   Qwen2.5 tokenizer, closed-form weights written here with transformers): `dpo eval` metrics
   within 1e-4, a 10-step `dpo train` loss trajectory within 1e-3 relative in f32 and within
   2e-2 in bf16.
2. Throughput on Qwen2.5-1.5B-shaped weights (random, written here with transformers'
   `Qwen2Config` and `save_pretrained`), LoRA r 16 on all linear layers and full fine-tuning,
   bf16, 4 pairs per step, 512 prompt + 512 completion tokens, gradient checkpointing off and
   on: `dpo train` and TRL's DPOTrainer with the same data and settings. s/step, pairs/s,
   tokens/s, peak GPU memory (nvidia-smi, sampled every 50 ms, for both), MFU (6 · params ·
   tokens for full fine-tuning, 4 · params · tokens for LoRA — no weight gradients — plus
   2 · params · tokens for the reference forward, over the card's dense bf16 peak).
3. One Markdown table on stdout and in $OUT/gpu-table.md, raw numbers in $OUT/gpu-results.json.

`dpo` travels xz-compressed (./dpo.xz) and is unpacked into the work folder first.
Needs the GPU machine's PyTorch, transformers, peft and accelerate; TRL and the packages it
needs beyond those come from ./wheels. Never run at build or test time."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "/tmp"))
WORK = Path(os.environ.get("GPU_RUN_WORK", "/tmp/dpo-gpu-run"))
DPO = WORK / "dpo"  # unpacked from ./dpo.xz
STEPS = int(os.environ.get("GPU_RUN_STEPS", "8"))
# Dense bf16 tensor-core peak of the card, for MFU (H100/H200 SXM: 989 TFLOP/s).
PEAK_FLOPS = float(os.environ.get("GPU_PEAK_BF16_FLOPS", "989e12"))


def log(message):
    print(f"gpu_run: {message}", file=sys.stderr, flush=True)


def cuda_library_dirs():
    dirs = []
    for entry in sys.path:
        candidate = Path(entry) / "nvidia" / "cu13" / "lib"
        if candidate.is_dir():
            dirs.append(str(candidate))
    return dirs


def unpack_dpo():
    import lzma
    with lzma.open(HERE / "dpo.xz") as packed, open(DPO, "wb") as binary:
        shutil.copyfileobj(packed, binary)
    DPO.chmod(0o755)


def install_wheels():
    target = WORK / "pylib"
    wheels = sorted((HERE / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--target", str(target), *map(str, wheels)], check=True)
    sys.path.insert(0, str(target))


def dpo_env(cpu):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(cuda_library_dirs() + [env.get("LD_LIBRARY_PATH", "")])
    env.pop("RUST_LOG", None)
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


class MemoryPeak:
    """The GPU's used memory, sampled with nvidia-smi while a run lasts (MiB)."""

    def __init__(self):
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while self.running:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.peak = max(self.peak, max(int(v) for v in out.split()))
            except Exception:
                pass
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def run_dpo(args, cpu=False):
    command = [str(DPO), *args]
    log(" ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, env=dpo_env(cpu))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def losses(output_dir):
    lines = (Path(output_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(l)["loss"] for l in lines if "loss" in json.loads(l)]


def fixture_model(directory):
    """The TRL fixture's tiny Qwen2 (tests/fixtures/make_dpo_fixtures.py): same config and
    closed-form weights, with the real tokenizer."""
    import torch
    from safetensors.torch import save_file
    fixture = json.loads((HERE / "data" / "dpo_trl.json").read_text())
    config = dict(fixture["config"])
    directory.mkdir(parents=True, exist_ok=True)
    from transformers import Qwen2Config, Qwen2ForCausalLM
    model = Qwen2ForCausalLM(Qwen2Config(**config, attention_dropout=0.0))
    tensors = {}
    for name, parameter in model.state_dict().items():
        seed = sum(name.encode()) % 97
        index = torch.arange(parameter.numel(), dtype=torch.float64)
        if name.endswith("norm.weight"):
            values = 1.0 + 0.1 * torch.sin(0.37 * index + seed)
        elif name.endswith(".bias"):
            values = 0.01 * torch.sin(0.53 * index + seed)
        else:
            values = 0.05 * torch.sin(0.71 * index + seed)
        tensors[name] = values.to(torch.float32).reshape(parameter.shape).contiguous()
    model.config.save_pretrained(directory)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(HERE / "tokenizer" / name, directory / name)


def qwen_1_5b_model(directory):
    """Qwen2.5-1.5B-Instruct's shapes, random weights, bf16 safetensors."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    if (directory / "config.json").exists():
        return
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, max_position_embeddings=32768, attention_dropout=0.0,
                         torch_dtype="bfloat16")
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(HERE / "tokenizer" / name, directory / name)
    del model
    torch.cuda.empty_cache()


def long_pairs(path, pairs=16):
    """Standard rows of 512 prompt tokens and 512 completion tokens (` hello`, ` yes` and ` no`
    are single Qwen2.5 tokens; the EOS makes each completion 513)."""
    with open(path, "w") as f:
        for i in range(pairs):
            f.write(json.dumps({"prompt": " hello" * 512, "chosen": " yes" * 512, "rejected": " no" * 512}) + "\n")


def parity(results):
    tiny = WORK / "fixture-model"
    fixture_model(tiny)
    data = HERE / "data" / "pairs.jsonl"
    cpu = run_dpo(["eval", "--model", str(tiny), "--data", str(data), "--set", "use_cpu=true"], cpu=True)
    gpu = run_dpo(["eval", "--model", str(tiny), "--data", str(data)])
    worst = max(abs(cpu[k] - gpu[k]) for k in cpu if isinstance(cpu[k], float))
    results["eval_max_abs_difference"] = worst
    trajectories = {}
    for name, settings, cpu_run in [("cpu f32", ["use_cpu=true"], True), ("cuda f32", [], False),
                                    ("cuda bf16", ["bf16=true"], False)]:
        out = WORK / f"ten-steps-{name.replace(' ', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        args = ["train", "--model", str(tiny), "--data", str(data), "--output-dir", str(out), "--max-steps", "10",
                "--learning-rate", "1e-3", "--set", "logging_steps=1", "--set", "per_device_train_batch_size=8",
                "--set", "lr_scheduler_type=\"constant\""]
        for setting in settings:
            args += ["--set", setting]
        run_dpo(args, cpu=cpu_run)
        trajectories[name] = losses(out)
    base = trajectories["cpu f32"]
    for name, tolerance in [("cuda f32", 1e-3), ("cuda bf16", 2e-2)]:
        worst = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(base, trajectories[name]))
        results[f"loss_max_relative_difference_{name.replace(' ', '_')}"] = worst
        results[f"loss_within_{tolerance}_{name.replace(' ', '_')}"] = worst <= tolerance
    results["eval_within_1e-4"] = results["eval_max_abs_difference"] <= 1e-4
    results["trajectories"] = trajectories


def parameter_count():
    d, ff, layers, vocab, kv = 1536, 8960, 28, 151936, 256
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * ff
    return layers * per_layer + vocab * d


def row(trainer, mode, checkpointing, runtime, peak_mib, results_rows):
    pairs_per_s = STEPS * 4 / runtime
    tokens_per_s = pairs_per_s * 2 * (512 + 513)
    flops_per_token = (6 if mode == "full" else 4) * parameter_count() + 2 * parameter_count()
    results_rows.append({"trainer": trainer, "mode": mode, "gradient_checkpointing": checkpointing,
                         "s_per_step": runtime / STEPS, "pairs_per_s": pairs_per_s, "tokens_per_s": tokens_per_s,
                         "peak_gpu_mib": peak_mib, "mfu": tokens_per_s * flops_per_token / PEAK_FLOPS})


def throughput_dpo(model, data, results_rows):
    for mode in ["lora", "full"]:
        for checkpointing in [False, True]:
            out = WORK / f"dpo-{mode}-{checkpointing}"
            shutil.rmtree(out, ignore_errors=True)
            args = ["train", "--model", str(model), "--data", str(data), "--output-dir", str(out),
                    "--max-steps", str(STEPS), "--learning-rate", "1e-5",
                    "--config", str(HERE / "configs" / f"{mode}.toml"),
                    "--set", f"gradient_checkpointing={str(checkpointing).lower()}"]
            with MemoryPeak() as memory:
                summary = run_dpo(args)
            row("dpo train (candle, CUDA)", mode, checkpointing, summary["train_runtime"], memory.peak, results_rows)


def throughput_trl(model, data, results_rows):
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    rows = [json.loads(l) for l in Path(data).read_text().splitlines() if l.strip()]
    tokenizer = AutoTokenizer.from_pretrained(model)
    name = f"TRL {trl.__version__} (transformers {transformers.__version__}, torch {torch.__version__})"
    for mode in ["lora", "full"]:
        for checkpointing in [False, True]:
            args = DPOConfig(output_dir=str(WORK / f"trl-{mode}-{checkpointing}"), beta=0.1, learning_rate=1e-5,
                             lr_scheduler_type="constant", per_device_train_batch_size=4, max_steps=STEPS,
                             max_length=1100, logging_steps=1, save_strategy="no", report_to=[], seed=42,
                             bf16=True, gradient_checkpointing=checkpointing,
                             model_init_kwargs={"dtype": torch.bfloat16})
            peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                              task_type="CAUSAL_LM") if mode == "lora" else None
            trainer = DPOTrainer(model=str(model), args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer, peft_config=peft)
            with MemoryPeak() as memory:
                result = trainer.train()
            row(name, mode, checkpointing, result.metrics["train_runtime"], memory.peak, results_rows)
            del trainer
            torch.cuda.empty_cache()


def table(results):
    card = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip()
    lines = [f"GPU: {card}. Qwen2.5-1.5B-shaped weights, bf16, 4 pairs per step, 512 prompt + 512 completion "
             f"tokens, {STEPS} steps.", "",
             "| trainer | mode | checkpointing | s / step | pairs / s | tokens / s | peak GPU MiB | MFU |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results["throughput"]:
        lines.append(f"| {r['trainer']} | {r['mode']} | {'on' if r['gradient_checkpointing'] else 'off'} | "
                     f"{r['s_per_step']:.3f} | {r['pairs_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['peak_gpu_mib']} | {100 * r['mfu']:.1f}% |")
    lines += ["", f"CUDA vs CPU: dpo eval max |Δ| {results.get('eval_max_abs_difference')}; 10-step loss max relative "
                  f"Δ f32 {results.get('loss_max_relative_difference_cuda_f32')}, bf16 "
                  f"{results.get('loss_max_relative_difference_cuda_bf16')}"]
    return "\n".join(lines)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {"throughput": []}
    unpack_dpo()
    install_wheels()
    try:
        parity(results)
    except Exception as error:  # keep going: the throughput rows are still worth having
        results["parity_error"] = str(error)
        log(f"parity failed: {error}")
    model = WORK / "qwen2.5-1.5b-shaped"
    qwen_1_5b_model(model)
    data = WORK / "long_pairs.jsonl"
    long_pairs(data)
    throughput_dpo(model, data, results["throughput"])
    try:
        throughput_trl(model, data, results["throughput"])
    except Exception as error:
        results["trl_error"] = str(error)
        log(f"TRL failed: {error}")
    results["seconds"] = time.time() - started
    text = table(results)
    print(text)
    (OUT / "gpu-table.md").write_text(text + "\n")
    (OUT / "gpu-results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
