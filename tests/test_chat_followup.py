"""A follow-up question is answered in the light of the one before it, in the same
session; a question that stands alone is not touched by the past."""
import uuid

import pytest

from botlite.chat.followup import SessionMemory, is_follow_up, resolve
from botlite.db import write_transaction
from botlite.knowledge import index
from botlite.knowledge.chunk import Chunk as TextChunk
from botlite.models import Source
from conftest import wait_for
from test_chat import ask

# Short pages in the manner of git's and PostgreSQL's documentation.
PAGES = {
    "https://docs.example/git-branch.html": ("git-branch(1)", [
        "Create a new branch with git branch followed by the new branch name; it starts "
        "at the current commit. To switch to it, use git switch.",
        "Delete a branch with git branch -d followed by its name. The branch must be "
        "fully merged in its upstream branch; use -D to delete it irrespective of its "
        "merged status."]),
    "https://docs.example/git-commit.html": ("git-commit(1)", [
        "Record changes to the repository with git commit. Use git commit --amend to "
        "replace the tip of the current branch by creating a new commit.",
        "To undo the last commit but keep its changes in the working tree, run git reset "
        "HEAD~1."]),
    "https://docs.example/app-pgdump.html": ("pg_dump", [
        "pg_dump is a utility for backing up a PostgreSQL database. It makes consistent "
        "backups even if the database is being used concurrently.",
        "To restore a dump in the custom format, use pg_restore. A plain-text dump is "
        "restored by feeding it to psql."]),
    # What the follow-ups alone would find: each holds their one word.
    "https://docs.example/git-restore.html": ("git-restore(1)", [
        "Restore specified paths in the working tree with git restore. It can also "
        "restore the content in the index with --staged."]),
    "https://docs.example/app-dropdb.html": ("dropdb", [
        "To delete a database, use dropdb followed by its name. Only the owner of the "
        "database can delete it."]),
    "https://docs.example/editor.html": ("The editor", [
        "In the editor, press Ctrl+Z to undo the last edit; to undo it again, press "
        "Ctrl+Z once more."]),
}


@pytest.fixture
def docs(app):
    with app.database.connection_context():
        for url, (title, texts) in PAGES.items():
            source = Source.create(id=uuid.uuid4().hex, chatbot="default", kind="website",
                                   title=title, url=url, status="ready")
            chunks = [TextChunk(text, None, None, i) for i, text in enumerate(texts)]
            with write_transaction():
                index.insert_chunks(index.chunk_rows(source, chunks, url=url, title=title))
    return app


@pytest.mark.parametrize("first, follow_up, expected_url, expected_text", [
    ("How do I create a branch in git?", "and how do I delete it?", "git-branch.html",
     "git branch -d"),
    ("How can I back up a PostgreSQL database?", "how do I restore that?",
     "app-pgdump.html", "pg_restore"),
    ("How do I record my changes with a commit?", "and how do I undo it?",
     "git-commit.html", "git reset HEAD~1"),
])
def test_a_follow_up_is_answered_about_the_previous_question(
        client, docs, first, follow_up, expected_url, expected_text):
    session = "s-" + uuid.uuid4().hex[:8]
    assert ask(client, first, session=session).json["answer_source"] == "knowledge"
    answer = ask(client, follow_up, session=session).json
    assert answer["answer_source"] == "knowledge", answer
    assert answer["sources"][0]["url"].endswith(expected_url)
    assert expected_text in answer["reply"]
    # Asked with no question before it, the follow-up finds another page first.
    alone = ask(client, follow_up, session="other-" + session).json
    assert not alone["sources"] or not alone["sources"][0]["url"].endswith(expected_url)


def test_a_question_that_stands_alone_is_not_touched_by_the_past(client, docs):
    session = "s-" + uuid.uuid4().hex[:8]
    ask(client, "How do I create a branch in git?", session=session)
    answer = ask(client, "How do I restore a PostgreSQL dump with pg_restore?",
                 session=session).json
    assert answer["sources"][0]["url"].endswith("app-pgdump.html")
    assert all("git-branch" not in s["url"] for s in answer["sources"])


def test_a_follow_up_in_another_process_finds_the_question_in_the_transcript(
        client, docs, app):
    """Another web process (or a restart) has not seen the first question."""
    session = "s-" + uuid.uuid4().hex[:8]
    ask(client, "How can I back up a PostgreSQL database?", session=session)
    app.session_memory = SessionMemory()  # this process forgets: as if it were another
    with app.database.connection_context():
        wait_for(lambda: app.turn_log.flush() or True)
    answer = ask(client, "how do I restore that?", session=session).json
    assert "pg_restore" in answer["reply"]


@pytest.mark.parametrize("question, leans", [
    ("and how do I undo that?", True),
    ("can they be nested?", True),
    ("what about Windows?", True),
    ("Can you explain that in more detail?", True),
    ("how do I delete it?", True),
    ("only the last 5 commits please", True),
    ("how do I update it to the newest upstream commit?", True),
    ("How do I configure it to sign every commit with my GPG key?", False),
    ("How do I create a virtual environment?", False),
    ("How do I restore a PostgreSQL dump with pg_restore?", False),
    ("What is the difference between git merge and git rebase?", False),
])
def test_what_counts_as_a_follow_up(question, leans):
    assert is_follow_up(question) is leans
    assert (resolve(question, "previous question") != question) is leans
    assert resolve(question, None) == question


def test_memory_forgets_old_questions_and_keeps_a_chain_short():
    now = [0.0]
    memory = SessionMemory(clock=lambda: now[0], max_sessions=2)
    memory.remember("b", "s1", " ".join("w%d" % n for n in range(100)),
                    [{"url": "https://x/a.html", "source_id": "1"}, {"source_id": "2"}])
    previous = memory.previous("b", "s1")
    assert previous.question.split()[0] == "w60"  # the latest 40 words
    assert previous.pages == {"https://x/a.html", "2"}
    memory.remember("b", "s2", "two", [])
    memory.remember("b", "s3", "three", [])
    assert ("b", "s1") not in memory.questions  # least recently used forgotten
    now[0] += 31 * 60
    assert memory.previous("b", "s3") is None
