"""Logging an outage once when it starts and once when it ends, not every round."""


class OutageLog:
    def __init__(self, logger, what, consequence):
        self.logger = logger
        self.what = what
        self.consequence = consequence
        self.down = False

    def failed(self, exc):
        if not self.down:
            self.logger.warning("%s unreachable, %s error=%s", self.what, self.consequence, exc)
        self.down = True

    def succeeded(self):
        if self.down:
            self.logger.warning("%s reachable again", self.what)
        self.down = False
