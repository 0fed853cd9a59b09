"""Rollout health (``core.rollout``) over Deployment, ReplicaSet and pod status dicts as kube-apiserver
1.36 and kwok return them (captured from the real control plane, trimmed), and the status rules that
read it: ``running`` only once the rollout is complete, ``error`` with the reason when it cannot go on."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.rollout import (
    Assessment,
    Phase,
    RolloutDigest,
    assess,
    newest_replica_set,
    pod_problems,
    replica_set_ready,
    template_hash,
    with_pod_problems,
)
from gco_tasks.core.status import Outcome, status_report


def deployment(status: dict[str, Any], generation: int = 2, replicas: int = 2) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "generation": generation,
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        "status": status,
    }


def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    stamp = "2026-11-29T21:52:37Z"
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
        "lastUpdateTime": stamp,
    }


AVAILABLE = condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")

COMPLETE = {
    "availableReplicas": 2,
    "conditions": [
        AVAILABLE,
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            'ReplicaSet "web-5dc8576d67" has successfully progressed.',
        ),
    ],
    "observedGeneration": 2,
    "readyReplicas": 2,
    "replicas": 2,
    "terminatingReplicas": 0,
    "updatedReplicas": 2,
}

#: An image update whose new pod backs off pulling: the old ReplicaSet still serves both replicas.
STUCK = {
    "availableReplicas": 2,
    "conditions": [
        AVAILABLE,
        condition("Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "web-5f9bd995f8" is progressing.'),
    ],
    "observedGeneration": 2,
    "readyReplicas": 2,
    "replicas": 3,
    "terminatingReplicas": 0,
    "unavailableReplicas": 1,
    "updatedReplicas": 1,
}

#: The pods' ServiceAccount does not exist: the ReplicaSet cannot create a single pod.
NO_SERVICE_ACCOUNT = {
    "conditions": [
        condition("Progressing", "True", "NewReplicaSetCreated", 'Created new replica set "nosa-6947fdd4d"'),
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum"),
        condition(
            "ReplicaFailure",
            "True",
            "FailedCreate",
            'pods "nosa-6947fdd4d-" is forbidden: error looking up service account gco-inference/missing-sa: '
            'serviceaccount "missing-sa" not found',
        ),
    ],
    "observedGeneration": 2,
    "terminatingReplicas": 0,
    "unavailableReplicas": 2,
}


def digest(status: dict[str, Any], **kwargs: Any) -> RolloutDigest:
    return RolloutDigest.from_deployment(deployment(status, **kwargs))


def test_complete_only_when_every_replica_runs_the_new_template_and_no_old_one_is_left() -> None:
    assert assess(digest(COMPLETE)) == Assessment(Phase.COMPLETE)
    old_left = {**COMPLETE, "replicas": 3}  # updated and available, but an old pod still serves
    assert assess(digest(old_left)).phase is Phase.PROGRESSING
    assert "1 old still running" in (assess(digest(old_left)).message or "")
    unseen = digest(COMPLETE, generation=3)  # the controller has not seen the latest spec yet
    assert assess(unseen) == Assessment(
        Phase.PROGRESSING, "waiting for the Deployment controller to see the change"
    )
    short = {**COMPLETE, "availableReplicas": 1}
    assert assess(digest(short)).phase is Phase.PROGRESSING


def test_a_stuck_image_update_is_progressing_from_the_deployment_alone_and_needs_its_pods() -> None:
    verdict = assess(digest(STUCK))
    assert verdict.phase is Phase.PROGRESSING and verdict.needs_pods
    assert verdict.message == "1 of 2 replicas updated, 2 available, 2 old still running"


def test_replica_failure_is_failed_with_the_api_servers_words() -> None:
    verdict = assess(digest(NO_SERVICE_ACCOUNT))
    assert verdict.phase is Phase.FAILED and not verdict.needs_pods
    assert verdict.message is not None and verdict.message.startswith("pods cannot be created: pods ")
    assert 'serviceaccount "missing-sa" not found' in verdict.message


def test_progress_deadline_exceeded_is_failed_and_asks_for_the_pods() -> None:
    stuck = copy.deepcopy(STUCK)
    stuck["conditions"][1] = condition(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        'ReplicaSet "web-5f9bd995f8" has timed out progressing.',
    )
    verdict = assess(digest(stuck))
    assert verdict.phase is Phase.FAILED and verdict.needs_pods
    assert "progressDeadlineSeconds" in (verdict.message or "")


def test_a_paused_rollout_is_progressing_not_failed() -> None:
    paused = deployment(STUCK)
    paused["spec"]["paused"] = True
    verdict = assess(RolloutDigest.from_deployment(paused))
    assert verdict == Assessment(Phase.PROGRESSING, "the rollout is paused (spec.paused)")


def test_zero_replicas_and_defaults() -> None:
    stopped = RolloutDigest.from_deployment(deployment({"observedGeneration": 2}, replicas=0))
    assert assess(stopped).phase is Phase.COMPLETE
    bare = RolloutDigest.from_deployment({"kind": "Deployment", "metadata": {"name": "x"}})
    assert bare.spec_replicas == 1 and assess(bare).phase is Phase.PROGRESSING


def test_only_the_conditions_that_explain_a_failure_ride_in_the_digest() -> None:
    long = copy.deepcopy(NO_SERVICE_ACCOUNT)
    long["conditions"][2]["message"] = "x" * 5000
    kept = RolloutDigest.from_deployment(deployment(long))
    assert [c.type for c in kept.conditions] == ["Progressing", "ReplicaFailure"]
    assert len(kept.conditions[1].message) == 600


# --------------------------------------------------------------------------- ReplicaSets and pods


def replica_set(name: str, revision: str, want: int, ready: int, owner: str = "web") -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "pod-template-hash": name.rsplit("-", 1)[1]},
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"kind": "Deployment", "name": owner, "controller": True}],
        },
        "spec": {"replicas": want},
        "status": {"replicas": want, "readyReplicas": ready} if ready else {"replicas": want},
    }


def test_the_newest_replica_set_is_the_highest_revision_the_deployment_owns() -> None:
    old = replica_set("web-5dc8576d67", "1", 2, 2)
    new = replica_set("web-5f9bd995f8", "2", 1, 0)
    stranger = replica_set("web-0000000000", "9", 1, 0, owner="other")
    rolled_back = replica_set("web-1111111111", "3", 2, 2)
    assert newest_replica_set([old, new, stranger], "web") is new
    assert newest_replica_set([old, new, rolled_back], "web") is rolled_back
    assert newest_replica_set([stranger], "web") is None
    assert template_hash(new) == "5f9bd995f8"
    assert replica_set_ready(old) and not replica_set_ready(new)


def pod(name: str, phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "web", "pod-template-hash": "5f9bd995f8"}},
        "status": {"phase": phase, **status},
    }


def waiting(reason: str, message: str, image: str = "vllm/vllm-openai:unpullable", **extra: Any) -> Any:
    return [
        {
            "name": "inference",
            "image": image,
            "ready": False,
            "state": {"waiting": {"reason": reason, "message": message}},
            **extra,
        }
    ]


PULLING = pod(
    "web-5f9bd995f8-n55lk",
    containerStatuses=waiting("ImagePullBackOff", 'Back-off pulling image "vllm/vllm-openai:unpullable"'),
)
SCHEDULER_SAYS = (
    "0/4 nodes are available: 1 node(s) had untolerated taint(s), 3 Insufficient nvidia.com/gpu. no new "
    "claims to deallocate, preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
)
UNSCHEDULABLE = pod(
    "web-5bdc44c799-5n84l",
    conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": SCHEDULER_SAYS}
    ],
)


def test_an_image_that_cannot_be_pulled_is_named_with_its_count() -> None:
    twice = [PULLING, {**PULLING, "metadata": {"name": "web-5f9bd995f8-abcde"}}]
    assert pod_problems(twice) == (
        "image vllm/vllm-openai:unpullable cannot be pulled on 2 of 2 new pods (ImagePullBackOff)"
    )
    starting = pod("web-5f9bd995f8-zzzzz", containerStatuses=waiting("ContainerCreating", ""))
    assert pod_problems([PULLING, starting]) == (
        "image vllm/vllm-openai:unpullable cannot be pulled on 1 of 2 new pods (ImagePullBackOff)"
    )
    assert pod_problems([starting]) is None


def test_unschedulable_pods_quote_the_scheduler() -> None:
    assert (
        pod_problems([UNSCHEDULABLE, UNSCHEDULABLE]) == f"0 of 2 new pods can be scheduled: {SCHEDULER_SAYS}"
    )


def test_crash_loops_and_config_errors_name_the_container() -> None:
    crashing = pod(
        "web-1",
        "Running",
        containerStatuses=waiting(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container=inference",
            image="example/crashloop:1",
            restartCount=3,
            lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
        ),
    )
    assert pod_problems([crashing]) == (
        "container inference (image example/crashloop:1) keeps crashing on 1 of 1 new pods "
        "(CrashLoopBackOff, last exit code 1)"
    )
    no_secret = pod(
        "web-2", containerStatuses=waiting("CreateContainerConfigError", 'secret "hf-token" not found')
    )
    assert pod_problems([no_secret]) == (
        "container inference cannot start on 1 of 1 new pods "
        '(CreateContainerConfigError: secret "hf-token" not found)'
    )


def test_the_words_stay_the_same_while_the_problem_lasts() -> None:
    """The kubelet alternates ErrImagePull and ImagePullBackOff, and a crashing container runs briefly
    between back-offs: the reason must not change with them (each change would be a status write)."""
    err = pod("web-5", containerStatuses=waiting("ErrImagePull", "rpc error: not found"))
    assert pod_problems([err]) == pod_problems([PULLING])
    between = pod(
        "web-6",
        "Running",
        containerStatuses=[
            {
                "name": "inference",
                "image": "example/crashloop:1",
                "ready": False,
                "restartCount": 4,
                "state": {"running": {"startedAt": "2026-11-29T21:53:11Z"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ],
    )
    assert pod_problems([between]) == (
        "container inference (image example/crashloop:1) keeps crashing on 1 of 1 new pods "
        "(CrashLoopBackOff, last exit code 1)"
    )
    recovered = {**between, "status": {**between["status"]}}
    recovered["status"]["containerStatuses"] = [{**between["status"]["containerStatuses"][0], "ready": True}]
    assert pod_problems([recovered]) is None


def test_the_model_sync_init_container_counts_too_and_terminating_pods_do_not() -> None:
    syncing = pod(
        "web-3",
        initContainerStatuses=[
            {
                "name": "model-sync",
                "image": "public.ecr.aws/aws-cli/aws-cli:bad",
                "state": {"waiting": {"reason": "ErrImagePull"}},
            }
        ],
    )
    assert pod_problems([syncing]) == (
        "image public.ecr.aws/aws-cli/aws-cli:bad cannot be pulled on 1 of 1 new pods (ImagePullBackOff)"
    )
    leaving = {**PULLING, "metadata": {**PULLING["metadata"], "deletionTimestamp": "2026-11-29T21:53:11Z"}}
    assert pod_problems([leaving]) is None and pod_problems([]) is None


def test_pod_problems_fail_a_progressing_rollout_and_explain_a_deadline() -> None:
    progressing = Assessment(Phase.PROGRESSING, "1 of 2 replicas updated", needs_pods=True)
    assert with_pod_problems(progressing, None) is progressing
    assert with_pod_problems(progressing, "image x cannot be pulled") == Assessment(
        Phase.FAILED, "image x cannot be pulled"
    )
    deadline = Assessment(Phase.FAILED, "no progress within progressDeadlineSeconds", needs_pods=True)
    assert with_pod_problems(deadline, "image x cannot be pulled").message == (
        "image x cannot be pulled (no progress within progressDeadlineSeconds)"
    )


# --------------------------------------------------------------------------- the status rules


def outcome(status: dict[str, Any], rollout: Assessment | None = None, **overrides: Any) -> Outcome:
    primary = ObservedObject.from_object(deployment(status))
    values: dict[str, Any] = {
        "desired_state": "running",
        "targeted": True,
        "spec_replicas": 2,
        "autoscaling_min": None,
        "primary_before": primary,
        "primary_applied": False,
        "primary_rollout": rollout,
    }
    values.update(overrides)
    return Outcome(**values)


def state(report: Any) -> tuple[str, str | None]:
    assert report is not None
    return report.state, report.error


def test_an_old_replica_set_that_serves_never_reads_running() -> None:
    """Ready and available counts equal the desired ones while the old pods serve: still ``updating``."""
    assert state(status_report(outcome(STUCK))) == ("updating", None)
    assert state(status_report(outcome(COMPLETE))) == ("running", None)
    report = status_report(outcome(COMPLETE))
    assert report is not None and (report.replicas_ready, report.replicas_updated) == (2, 2)


def test_a_rollout_that_cannot_progress_is_an_error_with_its_reason() -> None:
    failed = Assessment(Phase.FAILED, "image x cannot be pulled on 1 of 1 new pods (ImagePullBackOff)")
    assert state(status_report(outcome(STUCK, failed))) == ("error", failed.message)
    canary = Assessment(Phase.FAILED, "pods cannot be created: quota")
    report = status_report(outcome(COMPLETE, Assessment(Phase.COMPLETE), canary_rollout=canary))
    assert state(report) == ("error", "canary: pods cannot be created: quota")
    unfinished_canary = Assessment(Phase.PROGRESSING, "0 of 1 replicas updated")
    report = status_report(outcome(COMPLETE, Assessment(Phase.COMPLETE), canary_rollout=unfinished_canary))
    assert state(report) == ("updating", None)


def test_applied_this_cycle_is_updating_and_deleted_waits_for_the_last_object() -> None:
    assert state(status_report(outcome(COMPLETE, primary_applied=True))) == ("updating", None)
    assert state(status_report(outcome(COMPLETE, canary_applied=True))) == ("updating", None)
    assert state(status_report(outcome(COMPLETE, desired_state="deleted", remaining=True))) == (
        "deleting",
        None,
    )
    assert state(status_report(outcome(COMPLETE, desired_state="deleted"))) == ("deleted", None)


def test_an_autoscaled_endpoint_is_running_only_at_min_replicas_at_least() -> None:
    """A complete rollout of 1 replica while the HPA's minimum is 2: the HPA has not acted yet."""
    one = {**COMPLETE, "availableReplicas": 1, "readyReplicas": 1, "replicas": 1, "updatedReplicas": 1}
    primary = ObservedObject.from_object(deployment(one, replicas=1))
    waiting = status_report(outcome(one, autoscaling_min=2, primary_before=primary))
    assert waiting is not None and (waiting.state, waiting.replicas_desired) == ("updating", 2)
    assert state(status_report(outcome(COMPLETE, autoscaling_min=2))) == ("running", None)


def test_an_unschedulable_pod_waits_out_the_grace_for_a_new_node() -> None:
    """On EKS a new GPU pod is unschedulable until Karpenter or the cluster autoscaler brings a node up:
    within the grace it is no problem yet (the region stays creating/updating), after it the scheduler's
    reason is; a condition without a time counts at once."""
    since = "2026-11-30T00:00:00Z"
    condition = {**UNSCHEDULABLE["status"]["conditions"][0], "lastTransitionTime": since}
    waiting_pod = pod("web-5bdc44c799-5n84l", conditions=[condition])
    start = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert pod_problems([waiting_pod], start + 299, unschedulable_grace_seconds=300) is None
    assert pod_problems([waiting_pod], start + 300, unschedulable_grace_seconds=300) == (
        f"0 of 1 new pods can be scheduled: {SCHEDULER_SAYS}"
    )
    assert pod_problems([UNSCHEDULABLE], start, unschedulable_grace_seconds=300) is not None
    assert pod_problems([waiting_pod], start + 1) is not None, "no grace unless one is given"
