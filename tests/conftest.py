"""What every lane shares. Fixtures live in tests/fixtures.py (imported by the
lanes' own conftest.py files), so that tests/unit runs without Redis."""

import os


def pytest_collection_modifyitems(session, config, items):
    """CQ_TEST_ROTATE="k/n": start the run k/n of the way through the tests
    and wrap around. tests/lanes.py gives each lane its own start, so lanes
    running side by side do not all reach the heavy tests (which take turns)
    at the same time; and every lane checks that no test depends on another
    having run before it."""
    rotate = os.environ.get("CQ_TEST_ROTATE")
    if not rotate or not items:
        return
    k, n = (int(part) for part in rotate.split("/"))
    # At a module boundary, so that module-scoped fixtures are set up once.
    start = len(items) * k // n
    while 0 < start < len(items) and items[start].module is items[start - 1].module:
        start += 1
    items[:] = items[start:] + items[:start]
