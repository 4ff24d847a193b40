"""Logging an outage once when it starts and once when it ends, not every round;
logging a flood of one warning a few times, not once per occurrence."""

import time


class OutageLog:
    def __init__(self, logger, what, consequence, recovery=""):
        self.logger = logger
        self.what = what
        self.consequence = consequence
        # What resumes when it answers again, said in the same line.
        self.recovery = recovery
        self.down = False

    def failed(self, exc):
        if not self.down:
            self.logger.warning("%s unreachable, %s error=%s", self.what, self.consequence, exc)
        self.down = True

    def succeeded(self):
        if self.down:
            if self.recovery:
                self.logger.warning("%s reachable again, %s", self.what, self.recovery)
            else:
                self.logger.warning("%s reachable again", self.what)
        self.down = False


class Throttled:
    """A warning that may repeat thousands of times a second (a flood of bad
    messages): at most `burst` lines per `every` seconds, then one line saying
    how many were left out."""

    def __init__(self, logger, every=10.0, burst=20):
        self.logger = logger
        self.every = every
        self.burst = burst
        self._window = None
        self._logged = 0
        self._skipped = 0

    def warning(self, message, *args):
        now = time.monotonic()
        if self._window is None or now - self._window >= self.every:
            if self._skipped:
                self.logger.warning(
                    "%s more warnings like this one not logged: " + message, self._skipped, *args
                )
            self._window, self._logged, self._skipped = now, 0, 0
        if self._logged >= self.burst:
            self._skipped += 1
            return
        self._logged += 1
        self.logger.warning(message, *args)
