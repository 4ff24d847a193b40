"""`python -m bench.worker SECONDS [runworker options]`: a real
`runworker cq-tasks` that knows the bench's no-op task.

SIGALRM ends the process after SECONDS whatever happens to the bench (even
`kill -9`), so no worker outlives the bench's time bound. With
CQ_BENCH_COUNT_SQL set, the worker counts its SQL and adds the counts to the
metrics Redis when it stops; with CQ_BENCH_SQL_LIVE set, it publishes its
running totals there every second (bench.sqlcount.live_totals).
"""

import os
import signal
import sys


def main(argv):
    seconds, *options = argv
    # SIGALRM's default action terminates the process: the hard bound.
    signal.alarm(int(seconds))
    import django

    django.setup()
    from django.core.management import ManagementUtility

    from cq.conf import settings as cq_settings

    from . import tasks  # noqa: F401  (registers the no-op task)
    from .sqlcount import ENV, LIVE_ENV, SQLCounter

    live = os.environ.get(LIVE_ENV)
    counter = SQLCounter().install() if os.environ.get(ENV) or live else None
    if counter is not None and live:
        counter.publish_every(live)
    try:
        ManagementUtility(["runworker", "runworker", cq_settings.CHANNEL, *options]).execute()
    finally:
        if counter is not None and os.environ.get(ENV):
            counter.report(os.environ[ENV])


if __name__ == "__main__":
    main(sys.argv[1:])
