"""The worker's log format when the project sets none for cq.

Django's default logging gives cq's loggers no handler: Python's last-resort
handler then prints WARNING lines bare (no time, no level, no logger) and drops
INFO, so a new worker looks silent. `runworker cq-tasks` therefore gives the
`cq` logger a handler of its own, INFO and up with times, unless the project's
LOGGING already says something about cq's lines; then that LOGGING rules
alone, so nothing is printed twice and a chosen level is kept.
"""

import logging

# The shape of the quick start's LOGGING snippet, so both read the same.
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configured() -> bool:
    """Whether the project's logging decides where cq's lines go: a handler on
    the root logger (cq's lines propagate to it), or a handler, a level or a
    disabled flag on `cq` or one of its child loggers."""
    if logging.getLogger().handlers:
        return True
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name != "cq" and not name.startswith("cq."):
            continue
        # Placeholders stand for parents nobody configured.
        if isinstance(logger, logging.Logger) and (
            logger.handlers or logger.level != logging.NOTSET or logger.disabled
        ):
            return True
    return False


def install_default() -> logging.Handler | None:
    """Give `cq` a stderr handler at INFO with times, unless `configured()`;
    returns the handler added, or None."""
    if configured():
        return None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("cq")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
