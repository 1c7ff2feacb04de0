"""`/metrics` as each server exports it: metric families per version (name, type, labels, help) and the
Prometheus text rendering. Pure data and functions: the fakes fill the values from their capacity model.

vLLM's families are read from `vllm/v1/metrics/loggers.py` of each wheel (the ones it registers whatever
the configuration; counters are written `_total`, histograms `_bucket`/`_sum`/`_count`, as
prometheus_client writes them). Dynamo's frontend families are its `dynamo_frontend_*` names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # "gauge" | "counter" | "histogram"
    labels: tuple[str, ...]
    help: str
    source: str = "requests"  # what the fake's capacity model fills it from (a key of its snapshot), "" for 0


_ENGINE = ("model_name", "engine")
_F = Family

_VLLM_COMMON = [
    _F("vllm:num_requests_running", "gauge", _ENGINE, "Number of requests in model execution batches.", "running"),
    _F("vllm:num_requests_waiting", "gauge", _ENGINE, "Number of requests waiting to be processed.", "waiting"),
    _F("vllm:num_requests_waiting_by_reason", "gauge", _ENGINE + ("reason",),
       "Number of requests waiting, broken down by reason.", "waiting_by_reason"),
    _F("vllm:engine_sleep_state", "gauge", _ENGINE + ("sleep_state",),
       "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
       "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.", "sleep_state"),
    _F("vllm:kv_cache_usage_perc", "gauge", _ENGINE, "KV-cache usage. 1 means 100 percent usage.", "kv_usage"),
    _F("vllm:prefix_cache_queries", "counter", _ENGINE,
       "Prefix cache queries, in terms of number of queried tokens.", "prefix_queries"),
    _F("vllm:prefix_cache_hits", "counter", _ENGINE, "Prefix cache hits, in terms of number of cached tokens.",
       "prefix_hits"),
    _F("vllm:external_prefix_cache_queries", "counter", _ENGINE,
       "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of "
       "queried tokens.", ""),
    _F("vllm:external_prefix_cache_hits", "counter", _ENGINE,
       "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached "
       "tokens.", ""),
    _F("vllm:mm_cache_queries", "counter", _ENGINE, "Multi-modal cache queries, in terms of number of queried items.", ""),
    _F("vllm:mm_cache_hits", "counter", _ENGINE, "Multi-modal cache hits, in terms of number of cached items.", ""),
    _F("vllm:num_preemptions", "counter", _ENGINE, "Cumulative number of preemption from the engine.", ""),
    _F("vllm:prompt_tokens", "counter", _ENGINE, "Number of prefill tokens processed.", "prompt_tokens"),
    _F("vllm:prompt_tokens_by_source", "counter", _ENGINE + ("source",),
       "Number of prompt tokens by source.", "prompt_by_source"),
    _F("vllm:prompt_tokens_cached", "counter", _ENGINE,
       "Number of cached prompt tokens (local + external).", "prefix_hits"),
    _F("vllm:generation_tokens", "counter", _ENGINE, "Number of generation tokens processed.", "generation_tokens"),
    _F("vllm:request_success", "counter", _ENGINE + ("finished_reason",),
       "Count of successfully processed requests.", "success"),
]
_HISTOGRAMS = [
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", "prompt_len"),
    ("vllm:request_generation_tokens", "Number of generation tokens processed.", "generation_len"),
    ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ""),
    ("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", ""),
    ("vllm:request_params_n", "Histogram of the n request parameter.", ""),
    ("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", ""),
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ""),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ""),
    ("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", ""),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", ""),
    ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", ""),
    ("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", ""),
    ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", ""),
    ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", ""),
    ("vllm:request_num_preemptions", "Number of preemptions per request.", ""),
    ("vllm:request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill "
     "(excluding cached tokens).", ""),
]
_CACHE_INFO = _F("vllm:cache_config_info", "gauge", ("block_size", "cache_dtype", "engine", "num_gpu_blocks"),
                 "Information of the LLMEngine CacheConfig", "cache_info")


def _hist(rows) -> list[Family]:
    return [_F(n, "histogram", _ENGINE, h, src) for n, h, src in rows]


_032_EXTRA = [_F("vllm:prompt_tokens_cached_by_source", "counter", _ENGINE + ("source",),
                 "Number of cached prompt tokens by source.", "")]

_FRONTEND = ("model",)
METRIC_SETS: dict[str, tuple[Family, ...]] = {
    "vllm-0.31": tuple([_CACHE_INFO] + _VLLM_COMMON + _hist(_HISTOGRAMS)),
    "vllm-0.32": tuple([_CACHE_INFO] + _VLLM_COMMON + _032_EXTRA + _hist(_HISTOGRAMS)),
    "dynamo-frontend": (
        _F("dynamo_frontend_inflight_requests", "gauge", _FRONTEND, "Number of inflight requests", "running"),
        _F("dynamo_frontend_queued_requests", "gauge", _FRONTEND, "Number of requests in HTTP processing queue",
           "waiting"),
        _F("dynamo_frontend_requests", "counter", ("endpoint", "model", "request_type", "status"),
           "Total number of LLM requests processed", "frontend_requests"),
        _F("dynamo_frontend_input_sequence_tokens", "histogram", _FRONTEND, "Input sequence length in tokens",
           "prompt_len"),
        _F("dynamo_frontend_output_sequence_tokens", "histogram", _FRONTEND, "Output sequence length in tokens",
           "generation_len"),
        _F("dynamo_frontend_time_to_first_token_seconds", "histogram", _FRONTEND,
           "Time to first token in seconds", ""),
        _F("dynamo_frontend_inter_token_latency_seconds", "histogram", _FRONTEND, "Inter-token latency in seconds", ""),
        _F("dynamo_frontend_request_duration_seconds", "histogram", _FRONTEND, "Duration of LLM requests", ""),
        _F("dynamo_frontend_cached_tokens", "histogram", _FRONTEND, "Number of cached tokens (prefix cache hits) "
           "per request", ""),
    ),
}
# the Dynamo vLLM worker's system port exports its engine's vLLM families
METRIC_SETS["dynamo-1.6.1-worker"] = METRIC_SETS["vllm-0.31"]

# prometheus_client's default buckets per histogram kind (by name ending)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SECOND_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def buckets_of(name: str) -> tuple:
    return SECOND_BUCKETS if name.endswith("_seconds") else TOKEN_BUCKETS


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(names, values)) + "}"


def _num(v) -> str:
    return repr(float(v))


def render(families: tuple[Family, ...], base: dict, samples: dict) -> str:
    """Prometheus text of `families`. `base`: the common label values (model_name, engine, model); `samples`:
    a source key -> value (a number), {extra label value: number} for a family with one more label than the
    base, or for a histogram a (counts per bucket, sum, count) triple. Everything is computed here, at scrape."""
    out: list[str] = []
    for f in families:
        common = tuple(base.get(k, "") for k in f.labels)
        value = samples.get(f.source, 0) if f.source else 0
        name = f.name + "_total" if f.type == "counter" else f.name
        out.append(f"# HELP {name} {f.help}")
        out.append(f"# TYPE {name} {f.type}")
        if f.type == "histogram":
            counts, total, n = value if isinstance(value, tuple) else ((0,) * len(buckets_of(f.name)), 0, 0)
            acc = 0
            for le, c in zip(buckets_of(f.name), counts):
                acc += c
                out.append(f"{f.name}_bucket{_labels(f.labels + ('le',), common + (_num(le),))} {_num(acc)}")
            out.append(f"{f.name}_bucket{_labels(f.labels + ('le',), common + ('+Inf',))} {_num(n)}")
            out.append(f"{f.name}_count{_labels(f.labels, common)} {_num(n)}")
            out.append(f"{f.name}_sum{_labels(f.labels, common)} {_num(total)}")
        elif isinstance(value, dict):
            for extra, v in value.items():
                extra = extra if isinstance(extra, tuple) else (extra,)
                names = f.labels
                vals = tuple(base.get(k, "") for k in names[:len(names) - len(extra)]) + extra
                out.append(f"{name}{_labels(names, vals)} {_num(v)}")
        else:
            out.append(f"{name}{_labels(f.labels, common)} {_num(value)}")
    return "\n".join(out) + "\n"


def observe(buckets: list, name: str, value: float) -> None:
    """Count `value` into a histogram's per-bucket counts (`buckets`: one slot per bound)."""
    for i, le in enumerate(buckets_of(name)):
        if value <= le:
            buckets[i] += 1
            return


def parse_families(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Family name -> (type, label names) of a Prometheus text (recorded or rendered): for comparing sets."""
    types: dict[str, str] = {}
    labels: dict[str, set] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, kind = line.split(" ", 3)
            types[fam] = kind
            labels.setdefault(fam, set())
        elif line and not line.startswith("#"):
            head = line.split(" ", 1)[0]
            metric, _, rest = head.partition("{")
            fam = next((f for f in (metric, metric.rsplit("_", 1)[0]) if f in types), metric)
            for part in rest.rstrip("}").split(","):
                if "=" in part:
                    k = part.split("=", 1)[0]
                    if k != "le":
                        labels.setdefault(fam, set()).add(k)
    return {f: (types.get(f, "untyped"), frozenset(labels.get(f, ()))) for f in types}
