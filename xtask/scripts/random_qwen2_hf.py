"""A Hugging Face directory of a Qwen2 with Qwen2.5-1.5B-Instruct's shapes and random weights
(transformers' own initialisation, seed 0, f32), with the tokenizer of TOKENIZER_DIR, for
`cargo xtask bench-train-memory --qwen-1.5b`: the real 1.5B model's weights cannot be fetched
here, and memory does not depend on their values.

Usage: python3 random_qwen2_hf.py TOKENIZER_DIR OUT_DIR
Needs torch, transformers; not used at run time."""

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM


def main():
    tokenizer_dir, out = sys.argv[1], Path(sys.argv[2])
    if (out / "config.json").exists():
        return
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, max_position_embeddings=32768, attention_dropout=0.0,
                         bos_token_id=151643, eos_token_id=151645)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)


if __name__ == "__main__":
    main()
