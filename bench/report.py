"""The fleet benchmark's text report: one block per section, from the JSON report."""

from __future__ import annotations

from typing import Any

from bench.common import DYNAMO_WRITE_OPS


def _verbs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{verb} {_num(n)}" for verb, n in counts.items()) or "none"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ms(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no samples"
    return (
        f"median {summary['median']} ms, p95 {summary['p95']} ms, p99 {summary['p99']} ms, "
        f"max {summary['max']} ms (n={summary['n']})"
    )


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    direct = report["direct"]
    n = meta["endpoints"]
    lines = [
        f"gco-tasks fleet benchmark - {n} endpoints in {meta['region']}, {meta['cycles']} steady cycles",
        f"{meta['date']}; {meta['machine']} (shared machine: quote medians and ratios)",
        f"mix: {_verbs(direct['mix'])}; records created in {direct['create_records_seconds']} s",
        "",
        "1. Direct calls (fan_out + reconcile_endpoint, no Celery)",
    ]
    lines += _direct_lines(direct)
    lines += _model_lines(report["original_model"])
    if report.get("celery"):
        lines += _celery_lines(report["celery"])
    lines += ["", f"total {meta['total_seconds']} s"]
    return "\n".join(lines)


def _direct_lines(direct: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    first = direct["first_cycle"]
    lines += [
        f"  first cycle (create everything): k8s {_verbs(first['k8s_by_verb'])}; "
        f"DynamoDB writes {first['dynamo_writes']}; wall {first['wall_ms']} ms",
        f"    by resource: {_verbs(first['k8s_requests'])}",
    ]
    conv = direct["converge"]
    lines.append(
        f"  then: all running (and promoted) after {conv['cycles_until_settled']} more cycle(s), "
        f"first cycle without writes: #{conv['cycles_until_quiet']} (their writes: k8s {conv['k8s_writes']}, "
        f"DynamoDB {conv['dynamo_writes']}; {conv['seconds']} s)"
    )
    steady = direct["steady"]
    lines += [
        f"  steady state, per cycle (median of {steady['cycles']}): "
        f"k8s {_verbs(steady['k8s_by_verb_median'])}"
        f"; k8s writes {steady['k8s_writes_max']} (max); DynamoDB writes {steady['dynamo_writes_max']} (max)",
        f"    DynamoDB calls {_verbs(steady['dynamo_calls_median'])}; "
        f"Redis commands {_num(steady['redis_commands_median'])}; actions {steady['actions_total']}",
        f"    fan-out: median {steady['fan_out_ms'].get('median')} ms, "
        f"max {steady['fan_out_ms'].get('max')} ms",
        f"    reconcile_endpoint: {_ms(steady['reconcile_ms'])}",
        f"    cycle wall {steady['cycle_wall_ms_median']} ms -> {steady['endpoints_per_second']} endpoints/s "
        "(one process, sequential)",
    ]
    change = direct["change"]
    cycle = change["cycle"]
    quiet = change["until_quiet"]
    lines += [
        f"  change cycle (image of {change['edited']} endpoints edited: {_verbs(change['edited_kinds'])}):",
        f"    k8s {_verbs(cycle['k8s_requests'])}; DynamoDB writes {cycle['dynamo_writes']} "
        f"({_verbs({k: v for k, v in cycle['dynamo_calls'].items() if k in DYNAMO_WRITE_OPS})})",
        f"    actions {_verbs(cycle['actions'])}; states {_verbs(cycle['states'])}",
        f"    then running again after {quiet['cycles_until_settled']} cycle(s), quiet at "
        f"#{quiet['cycles_until_quiet']} (their writes: k8s {quiet['k8s_writes']}, "
        f"DynamoDB {quiet['dynamo_writes']})",
        "",
    ]
    return lines


def _model_lines(model: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    orig, ours = model["original"], model["fleet"]
    lines += [
        "2. GCO's original monitor, same N, per cycle (" + model["source"] + ")",
        f"  original: {orig['k8s_get']} GET + {orig['k8s_delete_404']} DELETE (404) = {orig['k8s_total']} "
        f"k8s requests ({orig['k8s_writes']} writes), {orig['dynamo_writes']} DynamoDB writes",
        f"  fleet   : {_num(ours['k8s_total'])} k8s requests ({ours['k8s_writes']} writes), "
        f"{ours['dynamo_writes']} DynamoDB writes",
        f"  ratio   : {model['k8s_request_ratio']}x fewer Kubernetes requests; "
        f"Kubernetes writes {orig['k8s_writes']} -> {ours['k8s_writes']}; "
        f"DynamoDB writes {orig['dynamo_writes']} -> {ours['dynamo_writes']}",
        f"  per hour: DynamoDB writes {orig['dynamo_writes_per_hour']} (every 15 s) vs "
        f"{ours['dynamo_writes_per_hour']} (status heartbeat only) = "
        f"{model['dynamo_writes_per_hour_ratio']}x",
    ]
    return lines


def _celery_lines(celery: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines += [
        "",
        f"3. Real worker: {celery['worker']}",
        f"  worker online in {celery['worker_ready_seconds']} s",
    ]
    for index, run_ in enumerate(celery["cycles"], 1):
        lines.append(
            f"  cycle {index}: {run_['reconciled']}/{run_['sent']} reconciled "
            f"in {run_['wall_seconds']} s "
            f"({run_['endpoints_per_second']}/s), fan_out {run_['fan_out_runtime_ms']} ms, "
            f"failed {run_['failed']}, queue after {run_['queue_length_after']}, "
            f"k8s {_verbs(run_['k8s_requests'])}, table unchanged {run_['table_unchanged']}"
        )
    dedup = celery["dedup"]
    lines += [
        f"  median cycle {celery['cycle_wall_seconds_median']} s -> "
        f"{celery['endpoints_per_second_median']} endpoints/s end to end",
        f"  reconcile_endpoint runtime in the worker: {_ms(celery['task_runtime_ms'])}",
        "  dedup, worker stopped, 3 fan-outs: "
        + "; ".join(f"sent {r['sent']} / already pending {r['already_pending']}" for r in dedup["fan_outs"])
        + f" -> queue holds {dedup['queue_length_after']} messages "
        f"(N={dedup['endpoints']}, without dedup {dedup['without_dedup_would_be']})",
    ]
    return lines
