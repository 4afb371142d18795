"""A search costs what its question asks, not what the index holds: a hostile
message of 4,000 characters answers about as fast as a question, and one bot's
searches never read another bot's chunks."""
import random
import statistics
import time

import pytest

from botlite.knowledge import index
from botlite.models import Chatbot, Page, Source

WORDS = ("install configure package network interface kernel module service daemon "
         "mirror archive release security update upgrade firewall router address mail "
         "server client printer driver disk partition volume backup restore user group "
         "password shell script editor terminal window desktop locale keyboard font").split()
FUNCTION = "the of and to a in is it that for on with as at by from this be".split()


def _fill(bot, chunks, seed):
    rng = random.Random(seed)
    Chatbot.get_or_create(id=bot, defaults={"name": bot})
    source = Source.create(id="s-" + bot, chatbot=bot, kind="website", url="http://x/")
    rows, page = [], None
    for n in range(chunks):
        if n % 20 == 0:
            page = Page.create(source=source.id, url="http://x/%s/%d" % (bot, n),
                               title="Page %d" % n, content_hash=str(n))
        text = " ".join(rng.choice(FUNCTION) if rng.random() < 0.45 else rng.choice(WORDS)
                        for _ in range(120))
        rows.append({"source": source.id, "page": page.id, "chatbot_id": bot,
                     "bot": index.bot_token(bot), "url": page.url, "title": page.title,
                     "heading": "Section %d" % n, "locator": page.url, "position": n,
                     "text": text})
    index.insert_chunks(rows)


def _median_ms(bot, message, runs=5):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        index.search(bot, message, 5)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


HOSTILE = [
    "of-the-" * 571,                                   # one joined "word" of 1,142 words
    "the " * 1000,
    " ".join("-".join(random.Random(i).sample(WORDS, 4)) for i in range(300))[:4000],
    " ".join(WORDS * 20)[:4000],                       # every common word
    "x" * 4000,                                        # one overlong "word"
    " ".join("w%dq" % i for i in range(800))[:4000],   # many distinct words
    "install-" * 500,
]


@pytest.fixture
def big_index(sqlite_db):
    _fill("big", 20000, seed=1)
    return sqlite_db


@pytest.fixture
def sqlite_db(app):
    with app.database.connection_context():
        yield app


def test_a_hostile_message_costs_no_more_than_a_question(big_index):
    question = "how do I configure the network interface of the firewall"
    assert index.search("big", question, 5)  # the index answers questions
    baseline = _median_ms("big", question)
    for message in HOSTILE:
        assert len(message) <= 4000
        assert _median_ms("big", message, runs=3) < 10 * baseline + 5, message[:30]


def test_a_bot_never_reads_another_bots_chunks(sqlite_db, monkeypatch):
    """Measured in SQLite's VM steps (progress-handler calls), which do not vary
    with the machine's load: a small bot's search costs the same with a 20,000-chunk
    bot beside it as without."""
    checks = []

    class Counting(index._Budget):
        def __init__(self):
            super().__init__()
            checks.append(self)
    monkeypatch.setattr(index, "_Budget", Counting)
    monkeypatch.setattr(index, "BUDGET_EVERY", 100)
    _fill("small", 40, seed=2)
    question = "configure the network interface kernel module"

    def steps():
        checks.clear()
        assert index.search("small", question, 5)
        return sum(c.checks for c in checks)
    alone = steps()
    _fill("big", 20000, seed=1)
    beside = steps()
    assert beside <= 1.5 * alone + 20, (alone, beside)
    checks.clear()
    index.search("big", question, 5)
    assert sum(c.checks for c in checks) > 10 * beside  # a big bot's search does cost more


def test_a_search_past_its_budget_ends_with_nothing_and_a_warning(big_index, monkeypatch,
                                                                  caplog):
    monkeypatch.setattr(index, "SEARCH_BUDGET_S", 0.0)
    assert index.search("big", "configure the network interface", 5) == []
    assert "stopped after" in caplog.text
    monkeypatch.setattr(index, "SEARCH_BUDGET_S", 5.0)
    assert index.search("big", "configure the network interface", 5)  # handler cleared


def test_query_terms_are_bounded():
    assert index.query_terms("of-the-" * 571) == ["of", "the"]
    assert index.query_terms("x" * 65) == [] and index.query_terms("x" * 64) == ["x" * 64]
    assert len(index.query_terms(" ".join("w%d" % i for i in range(5000)))) == \
        index.MAX_QUERY_TERMS
    # Ordinary joined words are still phrases.
    assert index.query_terms("apt-get sources.list")[:2] == ["apt-get", "apt"]
    seven = "-".join(WORDS[:5])
    assert seven not in index.query_terms(seven) and WORDS[0] in index.query_terms(seven)
