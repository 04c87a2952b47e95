#!/usr/bin/env bash
# Fill fuzz/corpus/<target>/ with seed inputs taken from the repository's golden folders and
# committed models (nothing is committed under corpus/). Safe to run again: existing corpus
# entries (what earlier runs found) are kept; seeds are overwritten with the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
root=..

# safetensors_open: small safetensors files (f32, f16, bf16, i64 tensors; model weights). Big
# files (model tables) are left out: libFuzzer mutates small inputs much faster.
dir=corpus/safetensors_open
mkdir -p "$dir"
for f in "$root"/tests/golden/{pool_max_f32_3x1x64_left,pool_mean_f16_3x1x64_right,pool_cls_bf16_3x1x64_left,varlen_mean_f32,normalize_f16,wlp_L6_s0,pool_mean_f32_3x1x64_left_tws}/tensors.safetensors \
         "$root"/tests/golden/cnn_max/model/1_CNN/model.safetensors; do
  [ -f "$f" ] || continue
  name=$(echo "${f#"$root"/tests/golden/}" | tr '/' '_')
  cp "$f" "$dir/seed-$name"
done

# model_folder: byte 0 selects the folder (bits 2-3) and which of its files (bits 0-1) the rest
# replaces; the table below is the one in fuzz_targets/model_folder.rs.
dir=corpus/model_folder
mkdir -p "$dir"
seed() { # seed NAME SELECTOR FILE
  { printf "\\x$(printf %02x "$2")"; cat "$3"; } > "$dir/seed-$1"
}
folders=(
  "models/potion-base-8M-int8-vq2048-d128:modules.json config.json tokenizer.json model.safetensors"
  "tests/golden/wordemb_mean/model:modules.json 1_Pooling/config.json whitespacetokenizer_config.json model.safetensors"
  "tests/golden/cnn_max/model:modules.json 1_CNN/cnn_config.json wordembedding_config.json 1_CNN/model.safetensors"
  "tests/golden/lstm_mean/model:modules.json 1_LSTM/lstm_config.json 2_Pooling/config.json 1_LSTM/model.safetensors"
)
for f in 0 1 2 3; do
  folder=${folders[$f]%%:*}
  read -r -a files <<< "${folders[$f]#*:}"
  for k in 0 1 2 3; do
    file=$root/$folder/${files[$k]}
    # The static folder's tokenizer.json (446 kB) is replaced by the small one below.
    if [ -f "$file" ] && [ "$f$k" != 02 ]; then
      seed "$f$k-$(echo "${files[$k]}" | tr '/' '_')" $((f * 4 + k)) "$file"
    fi
  done
done
# Other pipelines' module lists, read against the wordemb_mean folder.
for list in "$root"/tests/golden/*/model/modules.json; do
  seed "modules-$(basename "$(dirname "$(dirname "$list")")")" 4 "$list"
done
# A small tokenizer.json: a WordPiece model with a few ids (the static folder's real one is
# 446 kB; the target cuts it to 1500 ids, and libFuzzer works better on small inputs).
printf '\x02' > "$dir/seed-tokenizer-small"
cat >> "$dir/seed-tokenizer-small" <<'JSON'
{"version":"1.0","truncation":{"direction":"Right","max_length":8,"strategy":"LongestFirst","stride":0},"padding":null,"added_tokens":[{"id":0,"content":"[PAD]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},{"id":1,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},"pre_tokenizer":{"type":"BertPreTokenizer"},"post_processor":null,"decoder":null,"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"[PAD]":0,"[UNK]":1,"hello":2,"world":3,"the":4,"##s":5,"a":6,"ü":7}}}
JSON

# text_input: line files and JSON arrays of texts (byte 0 selects the reader; see the target).
dir=corpus/text_input
mkdir -p "$dir"
for f in "$root"/tests/golden/{wordemb_mean,bow_binary,static_potion-base-8M-f16}/texts.json; do
  [ -f "$f" ] || continue
  name=$(basename "$(dirname "$f")")
  { printf '\x01'; cat "$f"; } > "$dir/seed-$name-json"
  { printf '\x00'; python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$f" 2>/dev/null || cat "$f"; } > "$dir/seed-$name-lines"
done
printf '\x00first line\r\nsecond line\n\nlast without newline' > "$dir/seed-crlf"
echo "seeded: $(ls corpus/safetensors_open | wc -l) safetensors_open, $(ls corpus/model_folder | wc -l) model_folder, $(ls corpus/text_input | wc -l) text_input"
