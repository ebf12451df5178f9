"""Former name of `ttscli.ray` (rendering on Ray workers): its public names, re-exported."""

from .ray import RayOptions, RayPool, SynthesisWorker, WorkerStats  # noqa: F401
