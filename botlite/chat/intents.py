"""Small-talk intents (greeting, thanks, help, ...) told apart from real questions.

A message is an intent only when it is made of intent phrases and filler words
and nothing else: "hi", "thanks, that helped" and "hi, how are you?" are;
"hello world program in python" and "hi, what are your opening hours?" are not,
they go to the knowledge base. Phrases match whole tokens, never substrings, so
"this", "which" and "shipping" never look like "hi".
"""
from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from dataclasses import dataclass
from itertools import product
from typing import Iterable, Sequence

__all__ = ["BUILTIN_INTENTS", "Intent", "IntentMatch", "detect_intent", "normalise",
           "respond", "strip_opener"]


@dataclass(frozen=True)
class Intent:
    name: str
    examples: tuple[str, ...]
    responses: tuple[str, ...]

    def __post_init__(self) -> None:
        # Intents built from JSON arrive with lists; tuples keep them hashable.
        object.__setattr__(self, "examples", tuple(self.examples))
        object.__setattr__(self, "responses", tuple(self.responses))
        if not self.name:
            raise ValueError("an intent needs a name")
        if not self.responses:
            raise ValueError("intent %r needs at least one response" % self.name)


@dataclass(frozen=True)
class IntentMatch:
    intent: Intent
    confidence: float


# --- text ------------------------------------------------------------------

_APOSTROPHE = re.compile(r"(?<=\w)['’ʼ`](?=\w)")
_NON_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W_]+(?:['’ʼ`][^\W_]+)*")


def normalise(text: str) -> str:
    """Lowercase words separated by single spaces: "What's up?!" -> "whats up".

    Accents are dropped ("café" -> "cafe"), an apostrophe inside a word is
    removed ("what's" -> "whats", "don't" -> "dont") and any other punctuation
    becomes a space.
    """
    text = unicodedata.normalize("NFKD", text.casefold())
    if not text.isascii():
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHE.sub("", text)
    return _NON_WORD.sub(" ", text).strip()


def _tokens(text: str) -> tuple[str, ...]:
    # "hiii", "heyyy", "byeee": a run of 3+ letters ending a word counts once.
    return tuple(_squash_end(token) for token in normalise(text).split())


def _squash_end(token: str) -> str:
    r"""``token`` with a run of 3 or more of the same letter at its end cut to one.
    A scan, not a regex: ``([^\W\d_])\1{2,}\b`` backtracked over every letter of
    "aaaa…a1" (4,000 characters: 0.8 s a message)."""
    last = token[-1]
    if len(token) < 3 or not last.isalpha() or token[-2] != last or token[-3] != last:
        return token
    start = len(token) - 3
    while start > 0 and token[start - 1] == last:
        start -= 1
    return token[:start + 1]


# --- built-in intents ------------------------------------------------------

def _combine(heads: Iterable[str], tails: Iterable[str]) -> list[str]:
    return ["%s %s" % (head, tail) for head, tail in product(heads, tails)]


_THANKS = ("thanks", "thank you", "thank u", "thankyou", "thanx", "thnx", "thx", "ty",
           "many thanks", "thanks a lot", "thanks a bunch", "thanks a million",
           "thank you very much", "thank you so much", "thanks so much", "thanks very much")
_THANKS_FOR = ("for your help", "for the help", "for helping", "for helping me",
               "for that", "for this", "for the info", "for the information",
               "for the answer", "for answering", "for your time", "for everything",
               "in advance")
_IDENTITY_ASKS = ("are you", "are u", "r u", "are you actually", "are you really",
                  "am i talking to", "am i talking with", "am i chatting with",
                  "am i chatting to", "am i speaking to", "am i speaking with", "is this")
_IDENTITY_KINDS = ("a bot", "a robot", "a chatbot", "a chat bot", "an ai", "ai", "a machine",
                   "a computer", "a program", "a human", "a real person", "a real human",
                   "a person", "an actual person", "a live person", "a human being")
# Phrases the matcher knows beyond each intent's examples: every way to say
# "thanks" with every "for ..." tail, every "are you / am I talking to" with
# every "a bot / a real person".
_MORE_PHRASES = {
    "thanks": _THANKS + tuple(_combine(_THANKS, _THANKS_FOR)),
    "bot_identity": tuple(_combine(_IDENTITY_ASKS, _IDENTITY_KINDS)),
}

BUILTIN_INTENTS: tuple[Intent, ...] = (
    Intent("greeting", (
        "hi", "hii", "hello", "helo", "hallo", "hullo", "hey", "heya", "hiya", "howdy",
        "greetings", "yo", "hola", "hi there", "hello there", "hey there",
        "good morning", "good afternoon", "good evening", "good day", "morning",
    ), (
        "Hi! I'm {bot_name}. How can I help you today?",
        "Hello! What can I help you with?",
        "Hey there! Ask me anything and I'll do my best to help.",
    )),
    Intent("goodbye", (
        "bye", "bye bye", "byebye", "goodbye", "good bye", "see you", "see ya", "cya",
        "see you later", "see you soon", "later", "talk later", "talk to you later", "ttyl",
        "farewell", "good night", "goodnight", "take care", "have a nice day",
        "have a good day", "have a great day", "catch you later", "gotta go", "got to go",
        "i have to go", "thats all", "that is all", "thats it", "that is it", "nothing else",
        "no thanks", "no thank you", "im done", "i am done", "adios", "ciao",
    ), (
        "Goodbye! Come back any time.",
        "Bye for now, and thanks for chatting with {bot_name}!",
        "Take care! I'm here whenever you need me.",
    )),
    Intent("thanks", (
        "thanks", "thank you", "thank you so much", "thanks a lot", "many thanks", "thx",
        "ty", "tysm", "thanks for your help", "thank you for the info", "thanks in advance",
        "cheers", "much appreciated", "appreciated", "appreciate it", "i appreciate it",
        "i appreciate that", "i appreciate your help",
    ), (
        "You're welcome!",
        "Happy to help! Is there anything else you'd like to know?",
        "Any time! Let me know if there's anything else.",
    )),
    Intent("bot_identity", (
        "are you a bot", "are you a robot", "are you a human", "are you a real person",
        "am i talking to a real person", "is this a bot", "who are you", "what are you",
        "who is this", "who am i talking to", "who am i talking with",
        "who am i chatting with", "who am i speaking to",
        "are you real", "are you human", "are you for real",
        "what is your name", "whats your name", "your name", "what are you called",
        "what should i call you", "do you have a name", "tell me about yourself",
        "introduce yourself", "who made you", "who built you", "who created you",
    ), (
        "I'm {bot_name}, a virtual assistant. I answer questions from the information "
        "I've been given.",
        "I'm {bot_name}, an automated assistant, not a human, but I'll do my best to help.",
        "My name is {bot_name}. I'm a chatbot here to answer your questions.",
    )),
    Intent("help", (
        "help", "help me", "help me out", "i need help", "i need some help", "need help",
        "can you help", "can you help me", "could you help me", "can you help me out",
        "please help", "what can you do", "what can you help with",
        "what can you help me with", "what are you able to do", "what are you capable of",
        "what do you do", "what do you know", "what can i ask", "what can i ask you",
        "what questions can i ask", "what should i ask", "how does this work",
        "how do i use this", "how can you help", "how can you help me",
        "show me what you can do", "i have a question", "i have some questions",
        "can i ask a question", "can i ask you something",
    ), (
        "I answer questions using the documents and pages I've been given. Just type your "
        "question in your own words.",
        "Ask me a question in plain words and I'll look for the answer. Short, specific "
        "questions work best.",
        "I'm {bot_name}: ask me anything about the topics on this site and I'll find the "
        "most relevant answer.",
    )),
    Intent("small_talk", (
        "how are you", "how are u", "how r u", "how are you doing", "how are you feeling",
        "how are things", "hows it going", "how is it going", "how is everything",
        "hows everything", "how have you been", "how do you do", "how is your day",
        "hows your day", "how is your day going", "whats up", "what is up", "sup",
        "wassup", "whats new", "are you ok", "are you well", "nice to meet you",
        "pleased to meet you", "good to meet you", "glad to meet you",
    ), (
        "I'm doing great, thanks for asking! What can I help you with?",
        "All good here, thank you! How can I help you today?",
        "Doing well and ready to help! What would you like to know?",
    )),
)

# Words and phrases that carry no request of their own: a message made only of
# these and intent phrases is still small talk ("ok thanks so much guys").
_FILLER_WORDS = frozenset("""
    please pls plz kindly so much very really there today tonight again now ok okay k
    oh ah ahh well alright right yes yeah yep yup sure and also just then guys everyone
    everybody all folks friend friends buddy mate team bot chatbot assistant dear sir
    madam great perfect awesome cool nice lovely excellent brilliant wonderful amazing
    super helpful
""".split())
_FILLER_PHRASES = ("a lot", "a bunch", "a million", "that helped", "that helps",
                   "that was helpful", "that was very helpful", "thats helpful",
                   "that is helpful", "got it", "i see", "you too", "for now", "once again")

# When a message holds several intents the most specific one answers:
# "hi, how are you?" is small talk, "hello, who are you?" is bot_identity,
# "thanks, bye" is goodbye.
_SPECIFICITY = ("bot_identity", "help", "small_talk", "goodbye", "thanks", "greeting")
_OPENER_INTENTS = frozenset({"greeting", "thanks", "small_talk"})


_END = ""  # trie key marking the end of a phrase; no token is empty


@functools.lru_cache(maxsize=None)
def _phrase_trie() -> dict:
    """Nested dicts token -> ...; at a phrase end, _END -> intent name (None: filler).

    Built on first use rather than at import: it costs a few milliseconds that
    `python -m botlite serve` should not pay before it listens.
    """
    trie: dict = {}
    phrases = [(phrase, None) for phrase in _FILLER_PHRASES]
    for intent in BUILTIN_INTENTS:
        phrases += [(phrase, intent.name)
                    for phrase in intent.examples + _MORE_PHRASES.get(intent.name, ())]
    for phrase, name in phrases:
        node = trie
        for token in _tokens(phrase):
            node = node.setdefault(token, {})
        node.setdefault(_END, name)
    return trie


_BUILTIN_BY_NAME = {intent.name: intent for intent in BUILTIN_INTENTS}


def _next_unit(tokens: Sequence[str], start: int,
               name_tokens: tuple[str, ...]) -> tuple[int, str | None, bool]:
    """The longest unit at ``start``: (its end, intent name or None, whether filler)."""
    if name_tokens and tuple(tokens[start:start + len(name_tokens)]) == name_tokens:
        return start + len(name_tokens), None, True
    longest = None
    node = _phrase_trie()
    for position in range(start, len(tokens)):
        node = node.get(tokens[position])
        if node is None:
            break
        if _END in node:
            longest = (position + 1, node[_END], True)
    return longest or (start + 1, None, tokens[start] in _FILLER_WORDS)


def _match_builtin(tokens: tuple[str, ...], bot_name: str | None) -> IntentMatch | None:
    name_tokens = _tokens(bot_name) if bot_name else ()
    found: set[str] = set()
    intent_tokens = 0
    position = 0
    while position < len(tokens):
        end, name, filler = _next_unit(tokens, position, name_tokens)
        if name is not None:
            found.add(name)
            intent_tokens += end - position
        elif not filler:
            return None  # a content word: this is a question, not small talk
        position = end
    if not found:
        return None
    best = next(name for name in _SPECIFICITY if name in found)
    coverage = intent_tokens / len(tokens)
    return IntentMatch(_BUILTIN_BY_NAME[best], round(0.5 + 0.5 * coverage, 3))


# --- custom intents --------------------------------------------------------

CUSTOM_THRESHOLD = 0.8
# Politeness dropped from both sides before comparing with a custom example, so
# "opening hours please" still equals the example "opening hours".
_POLITENESS = frozenset("please pls plz kindly ok okay oh so well just um uh hmm".split())
_STOPWORDS = frozenset("""
    a an the and or but if of to in on at by for with from about as is are was were be
    been am do does did i me my you your we our us it its this that these those there
    what which who whom whose when where why how can could would should will shall may
    might must have has had not no yes
""".split())


def _content(tokens: tuple[str, ...]) -> tuple[str, ...]:
    kept = tuple(token for token in tokens if token not in _POLITENESS)
    return kept or tokens


# (tokens, their set, its size, whether the example has a non-stopword)
_Example = tuple[tuple[str, ...], frozenset[str], int, bool]
# Prepared examples by id(intent); the entry holds the intent itself so its id
# cannot be reused by another object while the entry lives.
_PREPARED: dict[Intent, tuple[_Example, ...]] = {}
_PREPARED_LIMIT = 4096


def _prepared_examples(intent: Intent) -> tuple[_Example, ...]:
    # Keyed by value: the engine rebuilds equal Intent objects on every turn.
    entry = _PREPARED.get(intent)
    if entry is not None:
        return entry
    token_lists = [_content(_tokens(example)) for example in intent.examples]
    sets = [(tokens, frozenset(tokens)) for tokens in token_lists if tokens]
    examples = tuple((tokens, words, len(words), not words <= _STOPWORDS)
                     for tokens, words in sets)
    if len(_PREPARED) >= _PREPARED_LIMIT:
        _PREPARED.clear()
    _PREPARED[intent] = examples
    return examples


def _similarity(tokens: tuple[str, ...], words: frozenset[str], example: _Example) -> float:
    example_tokens, example_words, _, has_content = example
    if tokens == example_tokens:
        return 1.0
    shared = words & example_words
    if has_content and shared <= _STOPWORDS:
        return 0.0  # "what is it that you do for us with this car" is not about "this tool"
    return len(shared) / len(words | example_words)


def _match_custom(tokens: tuple[str, ...], custom: Sequence[Intent]) -> IntentMatch | None:
    tokens = _content(tokens)
    words = frozenset(tokens)
    # Jaccard is at most smaller/larger set size: skip examples that cannot reach it.
    fewest, most = len(words) * CUSTOM_THRESHOLD, len(words) / CUSTOM_THRESHOLD
    best: IntentMatch | None = None
    for intent in custom:
        for example in _prepared_examples(intent):
            if fewest <= example[2] <= most:
                similarity = _similarity(tokens, words, example)
                if similarity >= CUSTOM_THRESHOLD and (
                        best is None or similarity > best.confidence):
                    best = IntentMatch(intent, round(similarity, 3))
    return best


# --- public API ------------------------------------------------------------

def detect_intent(message: str, custom: Sequence[Intent] = (),
                  bot_name: str | None = None) -> IntentMatch | None:
    """The small-talk intent ``message`` is, or None when it asks something real.

    A custom intent whose example (nearly) equals the message wins over the
    built-ins: its bar (Jaccard >= 0.8) is already as strict as theirs. A custom
    intent named like a built-in ("greeting") replaces that built-in's responses.
    ``bot_name`` lets "hey Aria" count as a greeting.
    """
    tokens = _tokens(message)
    if not tokens:
        return None
    match = _match_custom(tokens, custom)
    if match is not None:
        return match
    match = _match_builtin(tokens, bot_name)
    if match is None:
        return None
    override = next((intent for intent in custom if intent.name == match.intent.name), None)
    return IntentMatch(override, match.confidence) if override else match


def respond(match: IntentMatch, bot_name: str, seed: int | str | None = None) -> str:
    """One of the intent's responses, the same one for the same seed, naming the bot.

    Without a seed the first response is used. ``{bot_name}`` is replaced
    literally, so other braces in a custom response are left alone.
    """
    responses = match.intent.responses
    if seed is None:
        index = 0
    else:
        key = "%s\x00%s" % (match.intent.name, seed)
        index = zlib.crc32(key.encode("utf-8")) % len(responses)
    return responses[index].replace("{bot_name}", bot_name or "the assistant")


_QUESTION_STARTERS = frozenset("""
    what whats how hows where wheres when why who whos which can could do does did dont
    is isnt are arent was will would wont should shall may might i im ive id my we our
    any tell please explain show give need want have has quick
""".split())
_SEPARATOR_WITHOUT_BREAK = re.compile(r"\s*|[-'’ʼ`]")
# Punctuation, spaces and emoji left between the opener and the rest; an
# opening quote or bracket belongs to the rest.
_LEADING_BREAK = re.compile(r"^[^\w\"'“‘(\[]+")


def strip_opener(message: str, bot_name: str | None = None) -> str:
    """``message`` without a leading greeting or thanks, for searching the rest.

    "Hi, what are your opening hours?" -> "what are your opening hours?";
    "thanks, and do you ship abroad?" -> "do you ship abroad?". The opener must
    be set off by punctuation or be followed by a question word, so "hello world
    program in python" and "hi-fi speaker setup" are returned unchanged, and a
    message that is nothing but an opener ("hi!") gives "".
    """
    text = unicodedata.normalize("NFC", message)
    words = list(_WORD.finditer(text))
    tokens = [" ".join(_tokens(word.group())) for word in words]
    name_tokens = _tokens(bot_name) if bot_name else ()
    has_opener = False
    cut = None
    position = 0
    while position < len(tokens):
        end, name, filler = _next_unit(tokens, position, name_tokens)
        if name in _OPENER_INTENTS:
            has_opener = True
        elif name is not None or not filler:
            break
        if has_opener and (end == len(tokens) or tokens[end] in _QUESTION_STARTERS or
                           not _SEPARATOR_WITHOUT_BREAK.fullmatch(
                               text[words[end - 1].end():words[end].start()])):
            cut = end
        position = end
    if cut is None:
        return message
    return _LEADING_BREAK.sub("", text[words[cut - 1].end():])
