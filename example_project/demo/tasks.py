"""The demo's tasks: a small text-analysis workflow.

`analyse` launches one `count_words` subtask per document and waits for them
(each reports its progress, which the live page shows);
`summarise` is chained after it and totals their results; `headline` returns a
chain (`shout` then `decorate`) and takes its result; `fetch_quote` fails once
and succeeds on its retry. Every step logs, and the lines of a whole tree end up
on its top-level task.
"""

import logging
import time

from django.core.cache import cache

from cq import task
from cq.models import Task


@task
def analyse(cqt, documents):
    cqt.log(f"analysing {len(documents)} documents")
    for name, text in sorted(documents.items()):
        cqt.subtask(count_words, (name, text))
    return len(documents)


@task
def count_words(cqt, name, text):
    words = text.split()
    for done in range(1, len(words) + 1):
        time.sleep(0.03)  # slow enough to watch on the live page
        cqt.progress(done, len(words), f"{name}: word {done}")
    cqt.log(f"{name}: {len(words)} words")
    return {"name": name, "words": len(words)}


@task
def summarise(cqt, documents, analysis_id):
    """Chained after `analyse`: receives its result (the document count) first."""
    counts = list(
        Task.objects.filter(parent_id=analysis_id, func_name=count_words.name).values_list(
            "result", flat=True
        )
    )
    total = sum(count["words"] for count in counts)
    longest = max(counts, key=lambda count: count["words"])["name"]
    cqt.log(f"{documents} documents, {total} words, longest: {longest}")
    return {"documents": documents, "words": total, "longest": longest}


@task
def headline(cqt, title):
    cqt.log(f"making a headline of {title!r}")
    # Returning a task makes this one wait for it and take its result.
    return cqt.subtask(shout, (title,)).chain(decorate, ("*",))


@task
def shout(cqt, text):
    cqt.log("shouting", level=logging.DEBUG)
    return text.upper() + "!"


@task
def decorate(cqt, text, star):
    return f"{star * 3} {text} {star * 3}"


@task(retries=2, retry_exceptions=[ConnectionError])
def fetch_quote(cqt, key):
    """Fails on its first attempt (a flaky service), succeeds on the retry."""
    cache.add(key, 0, 300)
    attempt = cache.incr(key)
    if attempt == 1:
        cqt.log("the quote service timed out", level=logging.WARNING)
        raise ConnectionError("quote service timed out")
    cqt.log(f"fetched on attempt {attempt}")
    return "Simple things should be simple, complex things should be possible."
