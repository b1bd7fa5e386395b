#!/usr/bin/env bash
# Derive examples/mmlu-pro/data/ from the published MMLU-Pro outputs (see data/MANIFEST.md).
#
#   examples/mmlu-pro/derive.sh DIR
#
# DIR holds the unzipped eval_results/model_outputs_<model>_5shots.json files of the public
# GitHub repository TIGER-AI-Lab/MMLU-Pro at commit f418b11 (Apache-2.0). The published
# files are read by rgd's own importer (`[data] type = "mmlu_pro"`), split per subject 60/40
# (seed 0), embedded by rgd's MiniLM, and written by `rgd export --format parquet` as
# data/train.parquet and data/test.parquet. Needs a build with the `files` and `candle`
# features (the default) and the `minilm` asset (`rgd assets fetch minilm`). Not run by the
# tests: its output is committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$1" && pwd)"
rgd="${RGD:-${CARGO_TARGET_DIR:-$here/../../target}/release/rgd}"
# the open-weight models whose run covers all 12,032 questions (DeepSeek-Coder-V2's file
# has 10,394 entries, 43 of them not records, so it is left out; gemini-* are closed API models)
models=(
  Llama-2-7b=Llama-2-7b-hf Llama-2-13b=Llama-2-13b-hf Llama-2-70b=Llama-2-70b-hf
  Llama-3-8B=Meta-Llama-3-8B Llama-3-70B=Meta-Llama-3-70B
  Llama-3.1-8B=Meta-Llama-3_1-8B Llama-3.1-8B-Instruct=Meta-Llama-3_1-8B-Instruct
  Llama-3.1-70B=Meta-Llama-3_1-70B Llama-3.1-70B-Instruct=Meta-Llama-3_1-70B-Instruct
  Mistral-7B-v0.1=Mistral-7B-v0.1 Mistral-7B-v0.2=Mistral-7B-v0.2-hf
  Mistral-7B-Instruct-v0.1=Mistral-7B-Instruct-v0.1 Mistral-7B-Instruct-v0.2=Mistral-7B-Instruct-v0.2
  Mixtral-8x7B=Mixtral-8x7B-v0.1 Mixtral-8x7B-Instruct=Mixtral-8x7B-Instruct-v0.1
  Phi-3-mini=Phi-3-mini-4k-instruct mathstral-7B=mathstral-7B gemma-7b=gemma-7b
  Qwen1.5-7B-Chat=Qwen1.5-7B-Chat Qwen1.5-72B-Chat=Qwen1.5-72B-Chat Qwen1.5-110B=Qwen1.5-110B
  Yi-6B=Yi-6B Yi-6B-Chat=Yi-6b-Chat Yi-34B=Yi-34B
  command-r-v01=c4ai-command-r-v01 jamba-1.5-large=jamba-1.5-large
)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  printf '[data]\ntype = "mmlu_pro"\ntest_share = 0.4\nseed = 0\n\n[data.models]\n'
  for m in "${models[@]}"; do
    printf '"%s" = "%s/model_outputs_%s_5shots.json"\n' "${m%%=*}" "$src" "${m#*=}"
  done
  printf '\n[embedder]\ntype = "minilm"\n\n[cache]\nmode = "off"\n\n[routers.best_single]\ntype = "best_single"\n'
} >"$work/derive.toml"
mkdir -p "$here/data"
"$rgd" export "$work/derive.toml" --out "$here/data" --format parquet
ls -l "$here/data"
