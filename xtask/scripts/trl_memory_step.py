"""One LoRA DPO step with TRL, for `cargo xtask bench-train-memory`: the caller measures this
process's peak RSS; this prints one JSON object with TRL's `train_runtime` for the step.

LoRA r 16, α 32 on the q/v projections, `per_device_train_batch_size` PAIRS, `max_length`
MAX_LENGTH (prompt + completion, TRL's `keep_start` truncation), f32 on the CPU, gradient
checkpointing when CHECKPOINTING is 1 — the settings `dpo train` runs beside it.

Usage: python3 trl_memory_step.py MODEL_DIR DATA.jsonl OUT_DIR MAX_LENGTH CHECKPOINTING PAIRS
Needs trl, peft, torch, transformers, datasets (CPU); not used at run time."""

import json
import sys

import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer


def main():
    model_dir, data, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    max_length, checkpointing, pairs = int(sys.argv[4]), sys.argv[5] == "1", int(sys.argv[6])
    rows = [json.loads(line) for line in open(data) if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = DPOConfig(output_dir=out_dir, beta=0.1, learning_rate=1e-4, lr_scheduler_type="constant",
                     per_device_train_batch_size=pairs, max_steps=1, max_length=max_length,
                     logging_steps=1, save_strategy="no", report_to=[], seed=42, use_cpu=True, bf16=False,
                     fp16=False, gradient_checkpointing=checkpointing,
                     model_init_kwargs={"dtype": torch.float32})
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=peft)
    result = trainer.train()
    print(json.dumps({
        "trainer": f"TRL {trl.__version__} (transformers {transformers.__version__}, torch {torch.__version__})",
        "train_runtime": result.metrics["train_runtime"],
        "threads": torch.get_num_threads(),
    }), flush=True)


if __name__ == "__main__":
    main()
