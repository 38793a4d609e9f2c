"""Prometheus metrics.

Counters that the hot path already keeps (frames captured, per-connection totals) are
read at scrape time by a collector instead of being incremented twice; only the two
histograms are observed as events happen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..capture import State
from ..fanout.connections import Registry, StreamKind
from .camera import Camera

KINDS = tuple(StreamKind)
# A `*_created` series per counter and histogram doubles the exposition for a timestamp no
# dashboard of a camera uses.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.encode_seconds = Histogram(
            "edge_encode_seconds",
            "Time to JPEG-encode one frame (once per frame, shared by all clients).",
            ["camera"],
            buckets=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256),
            registry=self.registry,
        )
        self.frame_age = Histogram(
            "edge_frame_age_seconds",
            "Age of a frame when it is handed to a client's connection (now minus capture time).",
            ["camera", "kind"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )

    def bind(self, cameras: Mapping[str, Camera], streams: Registry) -> None:
        self.registry.register(_StateCollector(cameras, streams))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, cameras: Mapping[str, Camera], streams: Registry) -> None:
        self.cameras = cameras
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        captured = CounterMetricFamily(
            "edge_frames_captured", "Real (not placeholder) frames, passed through or encoded.", labels=["camera"]
        )
        up = GaugeMetricFamily("edge_camera_streaming", "1 while the camera delivers real frames.", labels=["camera"])
        fps = GaugeMetricFamily("edge_camera_fps", "Measured capture rate.", labels=["camera"])
        sent = CounterMetricFamily("edge_frames_sent", "Frames sent to clients.", labels=["camera", "kind"])
        dropped = CounterMetricFamily(
            "edge_frames_dropped", "Frames a client skipped because it was not ready.", labels=["camera", "kind"]
        )
        sent_bytes = CounterMetricFamily("edge_bytes_sent", "Frame bytes sent to clients.", labels=["camera", "kind"])
        # Counted here because their log lines are rate-limited per client (logs.py).
        streams = CounterMetricFamily("edge_streams_opened", "Streams opened.", labels=["camera", "kind"])
        invalid = CounterMetricFamily(
            "edge_frames_invalid", "Source frames dropped as broken, never sent.", labels=["camera", "reason"]
        )
        idle = GaugeMetricFamily("edge_camera_idle", "1 while the camera idles without viewers.", labels=["camera"])
        passthrough = GaugeMetricFamily(
            "edge_camera_passthrough", "1 when the camera's own JPEG is sent as it is.", labels=["camera"]
        )
        bitrate = GaugeMetricFamily(
            "edge_camera_h264_bitrate_kbps", "An H.264 camera's measured bitrate (last 10 s).", labels=["camera"]
        )
        keyframes = GaugeMetricFamily(
            "edge_camera_keyframe_interval_seconds", "An H.264 camera's measured key-frame interval.", labels=["camera"]
        )
        publish_up = GaugeMetricFamily(
            "edge_publish_up", "1 while edge publishes to the target (§10).", labels=["camera", "target"]
        )
        publish_bytes = CounterMetricFamily(
            "edge_publish_bytes_sent", "Bytes sent to a publish target.", labels=["camera", "target"]
        )
        publish_failures = CounterMetricFamily(
            "edge_publish_failures",
            "Connections to a publish target that failed or ended.",
            labels=["camera", "target"],
        )
        publish_dropped = CounterMetricFamily(
            "edge_publish_units_dropped",
            "Access units a publish target skipped (it was slow, or waited for a key frame).",
            labels=["camera", "target"],
        )
        for cam in self.cameras.values():
            for target in cam.publisher.targets:
                labels = [cam.name, target.shown]
                publish_up.add_metric(labels, 1.0 if target.state == "publishing" else 0.0)
                publish_bytes.add_metric(labels, target.bytes_sent)
                publish_failures.add_metric(labels, target.failures)
                publish_dropped.add_metric(labels, target.units_dropped)
            capture = cam.capture
            if capture.codec == "h264":
                interval, kbps = capture.units.measured()
                bitrate.add_metric([cam.name], kbps)
                if interval is not None:
                    keyframes.add_metric([cam.name], interval)
            captured.add_metric([cam.name], capture.frames_captured)
            up.add_metric([cam.name], 1.0 if capture.state is State.STREAMING else 0.0)
            fps.add_metric([cam.name], capture.measured_fps())
            idle.add_metric([cam.name], 1.0 if capture.idle else 0.0)
            passthrough.add_metric([cam.name], 1.0 if capture.passthrough else 0.0)
            for reason, count in dict(capture.frames_invalid).items():
                invalid.add_metric([cam.name, reason], count)
            for kind in KINDS:
                totals = self.streams.totals_for(cam.name, kind)
                sent.add_metric([cam.name, kind.value], totals.frames_sent)
                dropped.add_metric([cam.name, kind.value], totals.frames_dropped)
                sent_bytes.add_metric([cam.name, kind.value], totals.bytes_sent)
                streams.add_metric([cam.name, kind.value], totals.streams)
        clients = GaugeMetricFamily("edge_clients", "Open stream connections.", labels=["kind"])
        for kind in KINDS:
            clients.add_metric([kind.value], self.streams.count(kind))
        yield from (captured, up, fps, sent, dropped, sent_bytes, streams, invalid, idle, passthrough, clients)
        yield from (bitrate, keyframes, publish_up, publish_bytes, publish_failures, publish_dropped)
