"""The benchmark's no-op task.

Its body records the completion on the metrics Redis (one pipelined round trip:
INCR, SETNX, SET), like the peers' harness, so that completions are counted
without polling the database and the layer's Redis counters show cq's work only.
"""

from cq import task

from . import metrics

NAME = "bench.noop"


@task(NAME)
def noop(cqt, x):
    metrics.mark_done()
    return x
