"""llama.cpp's CPU speed on a GGUF, for `cargo xtask bench`: prefill of a PROMPT_TOKENS-token
prompt and greedy decode of DECODE_TOKENS tokens on THREADS threads (default 2), printed as one
JSON object.

Needs llama-cpp-python (pip install llama-cpp-python==0.3.36); not used at run time."""

import json
import sys
import time

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_c

# llama.cpp's AMX weight repacking (an "extra buffer type") segfaults inside some VMs; the
# plain CPU kernels compute the same model (as in tests/fixtures/make_fixtures.py).
_default_model_params = llama_cpp_c.llama_model_default_params


def _model_params_without_extra_buffers():
    params = _default_model_params()
    params.use_extra_bufts = False
    return params


llama_cpp_c.llama_model_default_params = _model_params_without_extra_buffers

model_path, prompt_tokens, decode_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
llm = llama_cpp.Llama(model_path, n_ctx=prompt_tokens + decode_tokens + 8, n_batch=512,
                      n_threads=threads, n_threads_batch=threads, verbose=False)
text = ("The quick brown fox jumps over the lazy dog while the committee reviews the quarterly "
        "report on renewable energy, transport and housing. ")
tokens = []
while len(tokens) < prompt_tokens:
    tokens += llm.tokenize(text.encode(), add_bos=False)
tokens = tokens[:prompt_tokens]

started = time.perf_counter()
llm.eval(tokens)
prefill_seconds = time.perf_counter() - started
started = time.perf_counter()
for _ in range(decode_tokens):
    next_token = llm.sample(temp=0.0)
    llm.eval([next_token])
decode_seconds = time.perf_counter() - started
print(json.dumps({
    "engine": "llama.cpp",
    "device": f"cpu ({llama_cpp.__version__})",
    "threads": threads,
    "prompt_tokens": prompt_tokens,
    "prefill_tokens_per_second": prompt_tokens / prefill_seconds,
    "decode_tokens": decode_tokens,
    "decode_tokens_per_second": decode_tokens / decode_seconds,
}))
