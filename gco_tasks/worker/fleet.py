"""The adapters of one worker process, wired from the settings: the composition root.

Where it stands in the flow: under the tasks, beside the flows. More in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from kubernetes.client import ApiClient

from gco_tasks.adapters import dynamo_metrics
from gco_tasks.adapters.cluster import ClusterGateway, load_api_client
from gco_tasks.adapters.events import EventRecorder
from gco_tasks.adapters.locks import RegionState
from gco_tasks.adapters.ratelimit import RedisWritePacer
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.adapters.streams import StreamReader
from gco_tasks.core.config import Settings
from gco_tasks.core.rendering import RenderOptions


@dataclass
class Fleet:
    """The adapters one worker process uses."""

    settings: Settings
    store: EndpointStore
    cluster: ClusterGateway
    state: RegionState
    render_options: RenderOptions
    events: EventRecorder
    #: The configurations this process's fan-outs ran under (``fanout.FanOutPorts.configurations_run``).
    configurations_run: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def from_settings(cls, settings: Settings, api_client: ApiClient | None = None) -> Fleet:
        """Adapters for ``settings``; the Kubernetes client from in-cluster config or ``KUBECONFIG`` unless
        one is given (tests and benchmarks pass one pointed at their API server)."""
        api_client = api_client or load_api_client()
        store = EndpointStore.from_settings(settings)
        dynamo_metrics.instrument_dynamodb(store.client, settings.region)
        state = RegionState.from_settings(settings)
        pacer = RedisWritePacer(
            state.client, state.keys.kube_write_bucket, settings.kube_write_rate, settings.kube_write_burst
        )
        timeout = settings.k8s_api_timeout
        return cls(
            settings=settings,
            store=store,
            cluster=ClusterGateway(api_client, settings.inference_namespace, timeout, pacer=pacer),
            state=state,
            render_options=RenderOptions.from_settings(settings),
            events=EventRecorder(api_client, settings.region, pacer=pacer),
        )

    @cached_property
    def stream(self) -> StreamReader:
        """The table's DynamoDB Stream for this region (``STREAM_POLL_SECONDS``), built on first use."""
        return StreamReader.from_store(self.store, self.state.client, self.settings.region)
