"""Search ranking on a real index (a temp-file SQLite database, and PostgreSQL when
it is reachable): the behaviours chat relies on."""
import peewee
import pytest

from botlite.app import Botlite
from botlite.knowledge import index
from botlite.models import Chatbot, Page, Source
from botlite.settings import load_settings

FILLER = ("The committee meets on the second floor. Minutes are kept in the blue binder. "
          "Visitors sign the register at the front desk. ")


def add_page(bot, title, *sections, url=None):
    """A crawled page of ``bot``: (heading, text) sections, one chunk each."""
    source = Source.get_or_none(Source.chatbot == bot, Source.kind == "website")
    if source is None:
        source = Source.create(id="s-" + bot, chatbot=bot, kind="website", url="http://x/")
    url = url or "http://x/%s.html" % title.lower().replace(" ", "-")
    page = Page.create(source=source.id, url=url, title=title, content_hash=url)
    index.insert_chunks({"source": source.id, "page": page.id, "chatbot_id": bot,
                         "bot": index.bot_token(bot), "url": url, "title": title,
                         "heading": heading, "locator": url, "position": position,
                         "text": text} for position, (heading, text) in enumerate(sections))
    return url


def pages(hits):
    seen = []
    for hit in hits:
        if hit.url not in seen:
            seen.append(hit.url)
    return seen


@pytest.fixture
def sqlite_db(app):
    with app.database.connection_context():
        yield app


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """An app on each backend, with a connection open."""
    values = {"data_dir": str(tmp_path)}
    if request.param == "postgresql":
        values["database_url"] = request.getfixturevalue("postgres_url")
    app = Botlite.open(load_settings(values, environ={}))
    try:
        with app.database.connection_context():
            yield app
    finally:
        app.close()


@pytest.fixture
def library(db):
    return make_library()


def make_library():
    """A small site: one page about each topic, plus pages that mention it in passing."""
    urls = {
        "firewall": add_page("default", "Configuring the Firewall", (
            "Rules", "Packet filtering rules decide which connections are accepted. "
            "Rules are loaded at boot by a service.")),
        "mention": add_page("default", "Office Network", (
            "Overview", "The office network has a printer, a firewall and two switches. "
            + FILLER)),
        "apt-get": add_page("default", "Package Tools", (
            "apt-get", "Run apt-get install with the package name to install software.")),
        "apt": add_page("default", "Getting Things", (
            "Shopping", "The apt reply to get more milk is to install a fridge.")),
        "backup": add_page("default", "Backups", *[
            ("Backups part %d" % n, "Backups of the server run nightly with rsync. " + FILLER)
            for n in range(6)]),
        "restore": add_page("default", "Restoring", (
            "Restore", "To restore a server from backups, copy the rsync snapshot back.")),
    }
    return urls


def test_a_page_titled_by_the_query_beats_a_passing_mention(library):
    hits = index.search("default", "how do I configure the firewall?", 5)
    assert hits[0].url == library["firewall"]
    assert pages(hits).index(library["mention"]) > 0


def test_a_page_does_not_fill_the_results_while_other_pages_match(library):
    hits = index.search("default", "server backups with rsync", 5)
    assert hits[0].url == library["backup"]
    assert [hit.url for hit in hits[:index.PER_PAGE]] == [library["backup"]] * index.PER_PAGE
    assert library["restore"] in pages(hits)


def test_joined_words_are_one_term_and_a_phrase(library):
    assert index.query_terms("How do I use apt-get?") == ["apt-get", "apt"]
    assert index.query_terms("where is /etc/apt/sources.list") == [
        "etc/apt/sources.list", "etc", "apt", "sources", "list"]
    assert index.query_terms("Let's go, don't wait") == ["let", "wait"]
    assert index.search("default", "apt-get", 5)[0].url == library["apt-get"]


def test_question_words_are_not_searched_unless_that_is_all():
    assert index.query_terms("What should I do if I want to install it?") == ["install"]
    assert index.query_terms("Who are you?") == ["who", "are", "you"]


def test_a_question_about_something_absent_scores_low(library):
    covered = index.search("default", "restore the server from backups", 5)
    assert max(hit.score for hit in covered if hit.url == library["restore"]) > 0.8
    absent = index.search("default", "restore the zeppelin hangar", 3)
    assert absent and absent[0].score < 0.5
    assert index.search("default", "zeppelin hangar", 3) == []


def test_light_stemming_matches_forms_of_a_word_but_not_neighbours(sqlite_db):
    add_page("default", "Containers", ("Containers", "Run containers with lxc."))
    add_page("default", "Archive", ("Archive", "The archive contains old installers."))
    matcher = index._Matcher(["installation", "containers"])
    assert matcher.found("Installing and installed: the installer.") == {0}
    assert matcher.found("It contains nothing.") == frozenset()
    assert matcher.found("Two container images") == {1}
    hits = index.search("default", "containers", 5)
    assert hits[0].title == "Containers" and hits[0].score > hits[-1].score


@pytest.mark.parametrize("query", [
    '"unbalanced', "a AND OR NEAR(b", "*", "col:umn", "((((", "NOT", '" OR "', "", "   ",
    "ünïcödé ärger", "'; drop table chunk; --", "apt-get", "-", ".", "a-", "-a", "__",
    "x'y", "it's", "1.2.3", "/etc/", "a+b", "NEAR(apt-get, 2)", "{title}: firewall",
    "firewall*", "^firewall", "firewall -rules", '"firewall rules"',
])
def test_fts_syntax_in_questions_never_raises(library, query):
    assert isinstance(index.search("default", query, 5), list)


def test_other_bots_chunks_never_show_and_never_crowd_out(db):
    Chatbot.create(id="other", name="Other")
    for n in range(index.CANDIDATES + 5):
        add_page("other", "Llamas %d" % n, ("Llamas", "Llamas graze."))
    mine = add_page("default", "Mine", ("Herd", "Our llamas are called Ada and Bob."))
    hits = index.search("default", "llamas", 5)
    assert [hit.url for hit in hits] == [mine]
    assert index.search("other", "llamas", 5)[0].url.startswith("http://x/llamas")


def test_common_terms_are_searched_without_bm25(sqlite_db, monkeypatch):
    library = make_library()
    used = []
    candidates = index._candidates
    monkeypatch.setattr(index, "_candidates", lambda *args, **kw: (
        used.append(args[2]), candidates(*args, **kw))[1])
    monkeypatch.setattr(index, "MATCH_BUDGET", 0)  # every query is too broad for BM25...
    monkeypatch.setattr(index, "COMMON", 1)  # ...and every term common
    hits = index.search("default", "restore server backups rsync", 5)
    assert used[-1] == index._NEWEST
    assert hits and hits[0].url in (library["restore"], library["backup"])
    assert all(0 <= hit.score <= 1 for hit in hits)
    monkeypatch.setattr(index, "COMMON", 2000)  # BM25 over the rarest term only
    assert index.search("default", "restore server", 5)[0].url == library["restore"]
    assert used[-1] == index._BY_BM25


def test_broad_queries_rank_chunks_holding_two_terms_or_the_rarest(sqlite_db, monkeypatch):
    library = make_library()
    expressions = []
    candidates = index._candidates
    monkeypatch.setattr(index, "_candidates", lambda bot, expression, ranking: (
        expressions.append(expression), candidates(bot, expression, ranking))[1])
    monkeypatch.setattr(index, "QUORUM_FROM", 0)  # every query is broad
    monkeypatch.setattr(index, "CANDIDATES", 2)
    hits = index.search("default", "restore the server from rsync backups", 5)
    assert " AND " in expressions[0] and len(expressions) == 1
    assert hits[0].url in (library["restore"], library["backup"])
    # Too few chunks hold two terms: every chunk holding one competes.
    expressions.clear()
    monkeypatch.setattr(index, "CANDIDATES", 50)
    hits = index.search("default", "restore the server from rsync backups", 5)
    assert len(expressions) == 2 and " AND " not in expressions[1]
    assert hits[0].url in (library["restore"], library["backup"])


def test_a_term_counted_only_up_to_common_still_keeps_bm25_within_budget(sqlite_db, monkeypatch):
    make_library()
    used = []
    candidates = index._candidates
    monkeypatch.setattr(index, "_candidates", lambda *args, **kw: (
        used.append(args[2]), candidates(*args, **kw))[1])
    # Counted up to 1, "firewall" looks like 1 chunk, within the budget; more hold it.
    monkeypatch.setattr(index, "COMMON", 1)
    monkeypatch.setattr(index, "MATCH_BUDGET", 1)
    holding = sqlite_db.database.execute_sql(
        "select count(*) from chunk_index where chunk_index match 'firewall'").fetchone()[0]
    assert holding > 1
    assert index.search("default", "firewall", 5)
    assert used == [index._NEWEST]  # not BM25 over every chunk holding it


def test_a_hyphenated_word_finds_it_run_together(library):
    page = add_page("default", "Unattended Upgrades", (
        "Configuring debconf", "Set the debconf frontend to noninteractive. " + FILLER))
    hits = index.search("default", "non-interactive debconf", 5)
    assert hits[0].url == page and hits[0].score > 0.8
    assert index.search("default", "non-interactive", 5)[0].url == page


def test_a_hyphenated_word_is_weighed_by_the_chunks_holding_either_spelling(library):
    # "noninteractive" is in many chunks, "debconf" in one: the rare word decides,
    # on PostgreSQL too (it counts "non-interactive" with its run-together spelling).
    for n in range(6):
        add_page("default", "Installer %d" % n, (
            "Modes", "The installer runs noninteractive in mode %d. " % n + FILLER))
    debconf = add_page("default", "Debconf", ("Questions", "Debconf asks questions. " + FILLER))
    assert index.search("default", "non-interactive debconf", 5)[0].url == debconf
    terms = ["non-interactive", "debconf"]
    if isinstance(index.database.obj, peewee.PostgresqlDatabase):
        counts = index._counts_postgres("default", terms)
    else:
        counts = index._counts("default", terms)[0]
    assert counts == {"non-interactive": 6, "debconf": 1}


def test_a_long_word_finds_its_two_word_form(sqlite_db):
    fake = add_page("default", "Fake Packages", (
        "Meta-packages", "Meta-packages only depend on other packages. " + FILLER))
    clock = add_page("default", "Clock", ("Time", "Set the time zone with tzdata. " + FILLER))
    add_page("default", "Office", ("Desk", FILLER))
    hits = index.search("default", "what is a metapackage", 5)
    assert hits[0].url == fake and hits[0].score > 0.8
    assert index.search("default", "timezone", 5)[0].url == clock
    # Only splits into two parts of SPLIT_PART letters or more are tried.
    assert index._splits("timezone") == ["time zone"]
    assert index._splits("generator") == ["gene rator", "gener ator"]
    assert index._splits("apt-get") == index._splits("zone") == []


def test_a_long_word_many_chunks_hold_is_not_cut(sqlite_db, monkeypatch):
    clock = add_page("default", "Clock", ("Time", "Set the time zone with tzdata. " + FILLER))
    add_page("default", "Zones", ("Timezone", "The timezone database. " + FILLER))
    monkeypatch.setattr(index, "SPLIT_RARE", 1)  # one chunk holding it is "many"
    assert index._counts("default", ["timezone"])[1]["timezone"] == ["timezone"]
    assert clock not in [hit.url for hit in index.search("default", "timezone", 5)]
    monkeypatch.setattr(index, "SPLIT_RARE", 2)  # one chunk is rare: cut it
    assert index._counts("default", ["timezone"]) == ({"timezone": 2}, {"timezone": ["timezone",
                                                                          "time zone"]})
    assert clock in [hit.url for hit in index.search("default", "timezone", 5)]


def test_a_message_of_long_words_costs_a_bounded_search(sqlite_db):
    # Each cut of a word is a column of the counting statement: a 4,000-letter
    # word, or many long words, must neither exceed SQLite's 2,000 columns nor cost
    # thousands of probes.
    add_page("default", "Clock", ("Time", "Set the time zone with tzdata. " + FILLER))
    assert index._splits("a" * (index.SPLIT_UPTO + 1)) == []
    assert index.search("default", "x" * 4000, 5) == []
    statements = []
    connection = sqlite_db.database.connection()
    connection.set_trace_callback(statements.append)
    try:
        words = " ".join("timezone" + chr(97 + i % 26) * 16 for i in range(100))
        assert index.search("default", "timezone " + words, 5)[0].title == "Clock"
    finally:
        connection.set_trace_callback(None)
    columns = max(statement.count("count(*)") for statement in statements)
    assert columns <= index.MAX_QUERY_TERMS + index.MAX_SPLITS
