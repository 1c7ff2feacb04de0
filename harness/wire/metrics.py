"""`/metrics` as each server exports it: metric families per version (name, type, labels, help, buckets) and
the Prometheus text rendering. Pure data and functions: the fakes fill the values from their capacity model.

Every set is the recorded one (`metric_rows.py`, generated from scrapes of the real servers). vLLM's text is
written as vLLM's multiprocess registry writes it: label names sorted, counters as `_total` with a `_created`
gauge family after them, histograms as `_bucket`/`_count`/`_sum` then `_created`; Dynamo's as its Rust registry
does (no `_created`, some counters without `_total`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dataclasses import replace

from .metric_rows import DYNAMO_FRONTEND, DYNAMO_FRONTEND_AT_START, DYNAMO_WORKER, VLLM_031, VLLM_032


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # "gauge" | "counter" | "histogram" | "summary"
    labels: tuple[str, ...]  # every label name, sorted as exported
    help: str
    buckets: tuple[float, ...] = ()  # histogram bounds (+Inf added)
    series: tuple[tuple[str, ...], ...] = ()  # the values of its fixed labels, one tuple per series
    created: bool = False  # it writes a `NAME_created` gauge family
    fixed: tuple[str, ...] = ()  # its fixed label names (the rest come from the server: model, engine, handler)
    suffix: bool = True  # a counter is written NAME_total (Dynamo writes some counters under their own name)
    lazy: str = ""  # registered on first use: "value" (once its source has a series), "answered" (first answer)


# what a fake's capacity model fills each family from (a key of its snapshot); the rest stay 0
SOURCES = {
    "vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_waiting_by_reason": "waiting_by_reason", "vllm:engine_sleep_state": "sleep_state",
    "vllm:kv_cache_usage_perc": "kv_usage", "vllm:prefix_cache_queries": "prefix_queries",
    "vllm:prefix_cache_hits": "prefix_hits", "vllm:prompt_tokens": "prompt_tokens",
    "vllm:prompt_tokens_by_source": "prompt_by_source", "vllm:prompt_tokens_cached": "prefix_hits",
    "vllm:generation_tokens": "generation_tokens", "vllm:request_success": "success",
    "vllm:request_prompt_tokens": "prompt_len", "vllm:request_generation_tokens": "generation_len",
    "vllm:cache_config_info": "cache_info", "vllm:lora_requests_info": "lora_info",
    "http_requests": "http_requests",
    "vllm:rl_weight_update_operation_duration_seconds": "weight_ops",
    "vllm:rl_weight_update_operations_in_flight": "weight_ops_in_flight",
    "dynamo_frontend_inflight_requests": "running", "dynamo_frontend_queued_requests": "waiting",
    "dynamo_frontend_requests": "frontend_requests", "dynamo_frontend_input_sequence_tokens": "prompt_len",
    "dynamo_frontend_output_sequence_tokens": "generation_len",
}

# vLLM 0.32's RL weight-operation families (rl/online/metrics.py), exported once an operation ran (recorded)
_WEIGHT_OPS = (
    Family("vllm:rl_weight_update_operation_duration_seconds", "histogram", ("operation",),
           "Duration of one weight-transfer operation.", (0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
           created=True, lazy="value"),
    Family("vllm:rl_weight_update_operations_in_flight", "gauge", ("operation",),
           "Weight-transfer operations currently awaited.", lazy="value"),
)
_VLLM_032 = tuple(Family(*row) for row in VLLM_032) + _WEIGHT_OPS


def _at_first_answer(f: Family, at_start: frozenset) -> Family:
    exported = f.name + "_total" if f.type == "counter" and f.suffix else f.name
    return f if exported in at_start else replace(f, lazy="answered")
METRIC_SETS: dict[str, tuple[Family, ...]] = {
    "vllm-0.32": _VLLM_032,
    "vllm-0.31": tuple(Family(*row) for row in VLLM_031),
    "dynamo-frontend": tuple(_at_first_answer(Family(*row), DYNAMO_FRONTEND_AT_START) for row in DYNAMO_FRONTEND),
    "dynamo-1.6.1-worker": tuple(Family(*row) for row in DYNAMO_WORKER),
}
# metric sets whose server also answers GET /load (vLLM's instrumentator: {"server_load": requests in flight})
LOAD_ROUTE = frozenset({"vllm-0.31", "vllm-0.32"})


def _labels(pairs) -> str:
    pairs = sorted(pairs)
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""


def _num(v) -> str:
    return repr(float(v))


def _series(f: Family, base: dict, value, started: float):
    """(label pairs, value) of each series of `f`: its fixed series (values from a dict keyed by them), else
    one series of the server's labels; a dict value with other keys (handlers) gives a series per key."""
    server = [(k, base.get(k, "")) for k in f.labels if k not in f.fixed]
    if f.series:
        for s in f.series:
            v = value.get(s if len(s) > 1 else s[0], 0) if isinstance(value, dict) else value
            yield server + list(zip(f.fixed, s)), v
    elif isinstance(value, dict):  # series keyed by the server's own labels (e.g. handler, method, status)
        own = [k for k in f.labels if k not in base]
        for key, v in value.items():
            key = key if isinstance(key, tuple) else (key,)
            yield [(k, base[k]) for k in f.labels if k in base] + list(zip(own, key)), v
    else:
        yield server, value


def render(families: tuple[Family, ...], base: dict, samples: dict, started: float = 0.0) -> str:
    """Prometheus text of `families`. `base`: the server's label values (model_name, engine, model); `samples`:
    a source key (SOURCES) -> a number, a dict of series values, or for a histogram an (observed value -> times,
    sum, count) triple, put in buckets here. `started`: the `_created` timestamps. Computed here, at scrape, never per request."""
    out: list[str] = []
    for f in families:
        src = SOURCES.get(f.name)
        value = samples.get(src, 0) if src else 0
        if (f.lazy == "value" and not value) or (f.lazy == "answered" and not samples.get("answered")):
            continue
        rows = list(_series(f, base, value, started))
        name = f.name + "_total" if f.type == "counter" and f.suffix else f.name
        out += [f"# HELP {name} {f.help}", f"# TYPE {name} {f.type}"]
        for pairs, v in rows:
            if f.type == "histogram":
                seen, total, n = v if isinstance(v, tuple) else ({}, 0, 0)
                for le in f.buckets:
                    acc = sum(c for x, c in seen.items() if x <= le)
                    out.append(f"{f.name}_bucket{_labels(pairs + [('le', _num(le))])} {_num(acc)}")
                out.append(f"{f.name}_bucket{_labels(pairs + [('le', '+Inf')])} {_num(n)}")
                out.append(f"{f.name}_count{_labels(pairs)} {_num(n)}")
                out.append(f"{f.name}_sum{_labels(pairs)} {_num(total)}")
            elif f.type == "summary":
                n, total = v if isinstance(v, tuple) else (0, 0)
                out.append(f"{f.name}_count{_labels(pairs)} {_num(n)}")
                out.append(f"{f.name}_sum{_labels(pairs)} {_num(total)}")
            else:
                out.append(f"{name}{_labels(pairs)} {_num(v)}")
        if f.created:
            out += [f"# HELP {f.name}_created {f.help}", f"# TYPE {f.name}_created gauge"]
            out += [f"{f.name}_created{_labels(pairs)} {_num(started)}" for pairs, _ in rows]
    return "\n".join(out) + "\n"


def parse_families(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Family name -> (type, label names) of a Prometheus text (recorded or rendered): for comparing sets."""
    types: dict[str, str] = {}
    labels: dict[str, set] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, current, kind = line.split(" ", 3)
            types[current] = kind
            labels.setdefault(current, set())
        elif line and not line.startswith("#") and current is not None:
            rest = line.split(" ", 1)[0].partition("{")[2]
            for part in rest.rstrip("}").split('",'):
                k = part.split("=", 1)[0]
                if k and k not in ("le", "quantile"):
                    labels[current].add(k)
    return {f: (types[f], frozenset(labels[f])) for f in types}
