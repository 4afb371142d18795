import random
import time

import docx
import pytest

from botlite.knowledge.chunk import Chunk, _sentences, chunk_document
from botlite.knowledge.extract import Document, Section, extract_file

WORDS = ("garden water soil seed harvest apple pumpkin shed winter market spring tomato "
         "irrigation courgette heatwave kilogram tree bed season compost").split()


def prose(seed, paragraphs=12, sentences=(3, 9)):
    """Deterministic paragraphs of short sentences, with the tricky bits in them."""
    rng = random.Random(seed)
    extras = ["e.g. the", "Dr. Smith", "3.5 kg", "U.K. growers", "(see Fig. 2)", "approx. 40"]
    result = []
    for _ in range(paragraphs):
        sentence_list = []
        for _ in range(rng.randint(*sentences)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 18))]
            words.insert(rng.randint(1, len(words) - 1), rng.choice(extras))
            sentence_list.append(" ".join(words).capitalize() + rng.choice(".?!"))
        result.append(" ".join(sentence_list))
    return result


def doc(*sections):
    return Document("t", None, [Section("\n\n".join(paragraphs), heading, locator)
                                for paragraphs, heading, locator in sections])


def contiguous(needle, haystack):
    """Is the list ``needle`` a contiguous run of ``haystack``?"""
    width = len(needle)
    return any(haystack[i:i + width] == needle for i in range(len(haystack) - width + 1))


def by_section(chunks):
    groups = {}
    for chunk in chunks:
        groups.setdefault((chunk.heading, chunk.locator), []).append(chunk)
    return groups


SECTIONS = [
    (prose(1), "Spring", "page 1"),
    (prose(2, paragraphs=3), "Summer", "page 2"),
    (prose(3, paragraphs=20, sentences=(1, 3)), None, "page 3"),
]


def test_chunks_stay_within_bounds():
    chunks = chunk_document(doc(*SECTIONS))
    assert len(chunks) > 10
    for group in by_section(chunks).values():
        assert all(len(chunk.text) <= 1200 for chunk in group)
        # Sentences here are short, so every chunk but a section's last reaches min_chars.
        assert all(len(chunk.text) >= 800 for chunk in group[:-1])
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))


def test_chunks_never_split_words_and_cover_the_whole_text():
    document = doc(*SECTIONS)
    for (heading, locator), group in by_section(chunk_document(document)).items():
        section = next(s for s in document.sections if (s.heading, s.locator) == (heading, locator))
        words = section.text.split()
        for chunk in group:
            assert contiguous(chunk.text.split(), words)
        covered = set()
        for chunk in group:
            tokens = chunk.text.split()
            start = next(i for i in range(len(words)) if words[i:i + len(tokens)] == tokens)
            covered.update(range(start, start + len(tokens)))
        assert covered == set(range(len(words)))


def test_each_chunk_starts_with_the_end_of_the_one_before():
    for group in by_section(chunk_document(doc(*SECTIONS))).values():
        for previous, chunk in zip(group, group[1:]):
            shared = max(size for size in range(1, 151)
                         if previous.text.endswith(chunk.text[:size]))
            assert 50 <= shared <= 150, (previous.text[-160:], chunk.text[:160])
            # Snapped: the overlap starts a sentence or at least a word.
            assert previous.text[-shared - 1] in " \n"


def test_overlap_prefers_a_sentence_start():
    paragraph = " ".join("Sentence number %d has a few words in it." % n for n in range(60))
    chunks = chunk_document(doc(([paragraph], None, None)))
    for chunk in chunks[1:]:
        assert chunk.text.startswith("Sentence number")


def test_chunks_do_not_cross_sections():
    chunks = chunk_document(doc(*SECTIONS))
    assert list(by_section(chunks)) == [("Spring", "page 1"), ("Summer", "page 2"),
                                        (None, "page 3")]
    tiny = chunk_document(doc((["Only a heading"], "A", None), (["Next section text."], "B", None)))
    assert [(c.text, c.heading) for c in tiny] == [("Only a heading", "A"),
                                                   ("Next section text.", "B")]


def test_chunking_is_deterministic():
    first = chunk_document(doc(*SECTIONS))
    second = chunk_document(doc(*SECTIONS))
    assert first == second
    assert all(isinstance(chunk, Chunk) for chunk in first)


def test_whole_paragraphs_are_packed_when_they_fit():
    paragraphs = ["Paragraph %d. %s done." % (n, "word " * 40) for n in range(10)]
    chunks = chunk_document(doc((paragraphs, None, None)))
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.endswith("word done.")


def test_tiny_trailing_piece_joins_the_previous_chunk():
    first = " ".join(["Alpha beta gamma delta."] * 40)[:950].rsplit(" ", 1)[0] + "."
    tail = "A short closing line of about fifty characters."
    chunks = chunk_document(doc(([first, tail], None, None)))
    assert [chunk.text for chunk in chunks] == [first + "\n\n" + tail]


def test_over_long_sentence_is_split_at_word_boundaries():
    sentence = " ".join(random.Random(5).choice(WORDS) for _ in range(1200)) + "."
    chunks = chunk_document(doc(([sentence], None, None)))
    assert len(chunks) > 5
    words = sentence.split()
    for chunk in chunks:
        assert len(chunk.text) <= 1200
        assert contiguous(chunk.text.split(), words)


def test_a_word_longer_than_a_chunk_is_the_only_thing_cut():
    chunks = chunk_document(doc((["x" * 3000], None, None)))
    assert all(len(chunk.text) <= 1200 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks).count("x") >= 3000


def test_whitespace_is_normalised_and_empty_text_gives_no_chunks():
    chunks = chunk_document(doc((["  Some\ttext   with \n odd\u00a0spacing.  ", "", " \n "],
                                 None, None)))
    assert [chunk.text for chunk in chunks] == ["Some text with odd spacing."]
    assert chunk_document(Document(None, None, [])) == []
    assert chunk_document(doc((["", "   "], None, None))) == []


def test_sentence_split_respects_abbreviations_and_decimals():
    text = ("Dr. Smith grew 3.5 kg of beans, e.g. runner beans. Was it enough? "
            "Yes! Mr. J. Brown said so (see Fig. 2). The end")
    assert _sentences(text) == [
        "Dr. Smith grew 3.5 kg of beans, e.g. runner beans.",
        "Was it enough?",
        "Yes!",
        "Mr. J. Brown said so (see Fig. 2).",
        "The end",
    ]



def test_punctuation_runs_split_as_before():
    assert _sentences("Wait... What?! Yes.\u201d Next \u3002Done") == [
        "Wait...", "What?!", "Yes.\u201d", "Next \u3002", "Done"]
    assert _sentences("a.b.c.d " + "." * 50 + "x No end") == ["a.b.c.d " + "." * 50 + "x No end"]


def best_time(text, repeat):
    document = Document(None, None, [Section(text)])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        chunk_document(document)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("adversarial", [
    "a" + "." * 20000,                  # a run of full stops without a space after it
    "a" + "." * 10000 + "\"" * 10000,   # and closing quotes
    "a" + "?!" * 10000,
], ids=["stops", "stops and quotes", "marks"])
def test_chunking_punctuation_runs_takes_linear_time(adversarial):
    """The old sentence-end pattern failed at each position of a run not
    followed by whitespace, scanning the rest of the run each time. Against
    text of the same length full of sentence ends: at most ten times as long,
    plus 50 ms for a busy machine."""
    benign = ("Ab. " * len(adversarial))[:len(adversarial)]
    bound = 10 * best_time(benign, 3) + 0.05
    assert min(best_time(adversarial, 1) for _ in range(3)) <= bound


def test_custom_sizes_and_bad_sizes():
    chunks = chunk_document(doc(*SECTIONS), target=400, max_chars=500, min_chars=300, overlap=60)
    assert all(len(chunk.text) <= 500 for chunk in chunks)
    assert chunk_document(doc(*SECTIONS), overlap=0)[1].text[0].isupper()
    with pytest.raises(ValueError):
        chunk_document(doc(*SECTIONS), target=1300)
    with pytest.raises(ValueError):
        chunk_document(doc(*SECTIONS), overlap=900)


def test_extracted_document_chunks_end_to_end(tmp_path):
    path = tmp_path / "long.docx"
    document = docx.Document()
    for index, paragraphs in enumerate((prose(7), prose(8))):
        document.add_heading("Chapter %d" % (index + 1), level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(path)

    chunks = chunk_document(extract_file(str(path), "docx"))
    assert {chunk.heading for chunk in chunks} == {"Chapter 1", "Chapter 2"}
    assert chunks[0].text.startswith("Chapter 1\n\n")
    assert all(len(chunk.text) <= 1200 for chunk in chunks)


def test_a_code_block_keeps_its_lines_and_is_cut_only_at_line_ends():
    from botlite.knowledge.extract import Document, Section
    code = "\n".join("$ command number %d --with-options" % n for n in range(200))
    text = "Run these:\n\n```\n%s\n```\n\nDone." % code
    chunks = chunk_document(Document("T", None, [Section(text, None, None)]))
    pieces = [c.text for c in chunks]
    assert all(p.count("```") % 2 == 0 for p in pieces)  # every fence closed in its chunk
    shown = "\n".join(line for p in pieces for line in p.split("\n")
                      if line.startswith("$ command"))
    for n in range(200):  # every command whole, on a line of its own
        assert "$ command number %d --with-options" % n in shown.split("\n")
