"""TRL's DPO training speed on CPU, for `cargo xtask bench-train`: the same models, data and
settings `dpo train` runs, one JSON object per model on stdout.

Writes two Hugging Face directories under WORKDIR that both trainers read: `tiny-hf` (a
2-layer, width-64 Qwen2 with the real Qwen2.5 tokenizer, seeded random weights) and
`qwen-0.5b-hf` (the GGUF dequantized by transformers). Then trains LoRA DPO (r 8, α 16, q/v
projections, batch BATCH, STEPS steps, constant learning rate, f32, no gradient checkpointing)
with TRL's DPOTrainer and reports its `train_runtime`.

Usage: python3 trl_train_bench.py MODEL.gguf DATA.jsonl WORKDIR STEPS BATCH
Needs trl >= 0.27.2, transformers, torch, peft, datasets, gguf (CPU); not used at run time."""

import json
import sys
from pathlib import Path

import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from trl import DPOConfig, DPOTrainer


def hf_models(gguf_path: Path, workdir: Path):
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tiny = workdir / "tiny-hf"
    if not (tiny / "config.json").exists():
        torch.manual_seed(0)
        config = Qwen2Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
                             tie_word_embeddings=True, max_position_embeddings=32768, attention_dropout=0.0)
        Qwen2ForCausalLM(config).save_pretrained(tiny)
        tokenizer.save_pretrained(tiny)
    real = workdir / "qwen-0.5b-hf"
    if not (real / "config.json").exists():
        model = Qwen2ForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
        # transformers refuses to re-save a model loaded from GGUF; write its (dequantized)
        # tensors and a plain config directly.
        settings = model.config.to_dict()
        settings.pop("quantization_config", None)
        settings["architectures"] = ["Qwen2ForCausalLM"]
        real.mkdir(parents=True, exist_ok=True)
        Qwen2Config(**settings).save_pretrained(real)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                   if not (model.config.tie_word_embeddings and k == "lm_head.weight")}
        save_file(tensors, str(real / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(real)
    return [("tiny", tiny), ("qwen2.5-0.5b", real)]


def main():
    gguf_path, data, workdir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    steps, batch = int(sys.argv[4]), int(sys.argv[5])
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    # The objectives timed: DPO's sigmoid, and MPO's weighted list (TRL 1.x).
    losses = [("sigmoid", dict(loss_type=["sigmoid"])),
              ("mpo", dict(loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0]))]
    for (name, model_dir), (loss, loss_settings) in [(m, l) for m in hf_models(gguf_path, workdir) for l in losses]:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        args = DPOConfig(output_dir=str(workdir / f"trl-{name}-{loss}"), beta=0.1, learning_rate=1e-4,
                         lr_scheduler_type="constant", per_device_train_batch_size=batch, max_steps=steps,
                         logging_steps=1, save_strategy="no", report_to=[], seed=42, use_cpu=True, bf16=False,
                         fp16=False, gradient_checkpointing=False, model_init_kwargs={"dtype": torch.float32},
                         **loss_settings)
        peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                          task_type="CAUSAL_LM")
        trainer = DPOTrainer(model=str(model_dir), args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft)
        result = trainer.train()
        print(json.dumps({
            "trainer": f"TRL {trl.__version__} (transformers {transformers.__version__}, torch {torch.__version__})",
            "model": name,
            "loss": loss,
            "loss_settings": loss_settings,
            "model_dir": str(model_dir),
            "steps": steps,
            "train_runtime": result.metrics["train_runtime"],
            "seconds_per_step": result.metrics["train_runtime"] / steps,
            "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
