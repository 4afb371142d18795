"""Small-talk intents: whole phrases only, openers told apart from questions."""
import pytest

from botlite.chat.intents import (BUILTIN_INTENTS, Intent, IntentMatch, detect_intent,
                                  normalise, respond, strip_opener)


def _name(message, **kwargs):
    match = detect_intent(message, **kwargs)
    return match.intent.name if match else None


@pytest.mark.parametrize("message, intent", [
    ("hi", "greeting"),
    ("Hello!", "greeting"),
    ("hey there", "greeting"),
    ("good morning :)", "greeting"),
    ("Good evening everyone", "greeting"),
    ("howdy", "greeting"),
    ("yo", "greeting"),
    ("Hiiii!!!", "greeting"),
    ("heyyy", "greeting"),
    ("thanks!", "thanks"),
    ("thank you so much", "thanks"),
    ("thanks, that helped", "thanks"),
    ("Thank you very much for your help!", "thanks"),
    ("thx", "thanks"),
    ("ty", "thanks"),
    ("cheers mate", "thanks"),
    ("much appreciated", "thanks"),
    ("thanks a lot", "thanks"),
    ("bye", "goodbye"),
    ("ok bye", "goodbye"),
    ("see ya!", "goodbye"),
    ("that's all", "goodbye"),
    ("good night", "goodbye"),
    ("talk later", "goodbye"),
    ("no thanks", "goodbye"),
    ("who are you?", "bot_identity"),
    ("are you a bot", "bot_identity"),
    ("Are you a real person?", "bot_identity"),
    ("am I talking to a human?", "bot_identity"),
    ("what's your name?", "bot_identity"),
    ("what is your name", "bot_identity"),
    ("what can you do?", "help"),
    ("help", "help"),
    ("help me please", "help"),
    ("I need help", "help"),
    ("how does this work?", "help"),
    ("what can I ask?", "help"),
    ("how are you doing today?", "small_talk"),
    ("how's it going", "small_talk"),
    ("what's up", "small_talk"),
    ("nice to meet you", "small_talk"),
])
def test_pure_small_talk_is_an_intent(message, intent):
    assert _name(message) == intent


@pytest.mark.parametrize("message", [
    "this", "which", "shipping", "thigh", "they", "thankful", "hiking", "helpful",
    "byte", "history", "Which plan is this?", "They shipped my thigh brace",
    "I am thankful for the quick shipping",
])
def test_words_that_merely_contain_an_intent_word_never_match(message):
    assert detect_intent(message) is None


@pytest.mark.parametrize("message", [
    "hello world program in python",
    "thank you note templates",
    "what does the help() function print",
    "how do I say goodbye in french",
    "hi-fi speaker setup",
    "greetings card sizes",
    "help desk opening hours",
    # a question about "you people", consistently left to the knowledge base
    "who are you people's biggest competitor",
    "how are you supposed to configure nginx",
    "what's up with my order?",
    "I need help with my invoice",
    "thanks for the refund, when will it arrive?",
])
def test_questions_that_contain_an_intent_phrase_are_not_intents(message):
    assert detect_intent(message) is None


@pytest.mark.parametrize("message", [
    "hi, what are your opening hours?",
    "Hello there! Do you ship to Canada?",
    "hey, can I return a sale item",
])
def test_an_opener_followed_by_a_real_question_is_left_to_the_knowledge_base(message):
    assert detect_intent(message) is None


@pytest.mark.parametrize("message, intent", [
    ("hi, how are you?", "small_talk"),     # the more specific intent answers
    ("hello, who are you?", "bot_identity"),
    ("hey, I need help", "help"),
    ("thanks, bye", "goodbye"),
    ("hi and thanks", "thanks"),
])
def test_a_message_with_several_intents_gets_the_most_specific(message, intent):
    assert _name(message) == intent


def test_confidence_is_how_much_of_the_message_the_intent_phrases_cover():
    def confidence(message):
        return detect_intent(message).confidence
    assert confidence("thanks") == confidence("hi, how are you?") == 1.0
    assert 0.5 < confidence("thanks, that helped") < confidence("thank you so much") == 1.0
    assert 0.5 < confidence("ok bye") < 1.0


def test_the_bot_name_counts_as_filler_only_when_given():
    assert _name("hey Aria!", bot_name="Aria") == "greeting"
    assert _name("thanks Aria Bot", bot_name="Aria Bot") == "thanks"
    assert detect_intent("hey Aria!") is None


@pytest.mark.parametrize("message", ["", "   ", "?!", ":)", "ok", "please"])
def test_empty_or_filler_only_messages_are_no_intent(message):
    assert detect_intent(message) is None


def test_every_builtin_intent_has_examples_and_a_few_friendly_responses():
    names = {intent.name for intent in BUILTIN_INTENTS}
    assert names == {"greeting", "goodbye", "thanks", "bot_identity", "help", "small_talk"}
    for intent in BUILTIN_INTENTS:
        assert intent.examples and 2 <= len(intent.responses) <= 4
        assert _name(intent.examples[0]) == intent.name
    assert any("{bot_name}" in r for intent in BUILTIN_INTENTS for r in intent.responses)


@pytest.mark.parametrize("text, expected", [
    ("What's UP?!", "whats up"),
    ("  Café   au\tlait ", "cafe au lait"),
    ("don’t", "dont"),
    ("hi-fi_speaker", "hi fi speaker"),
    ("ＨＥＬＬＯ", "hello"),
    ("", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


# --- custom intents --------------------------------------------------------

HOURS = Intent("opening_hours", ("What are your opening hours?", "when are you open"),
               ("We're open 9 to 5, Monday to Friday.",))


@pytest.mark.parametrize("message, confidence", [
    ("what are your opening hours", 1.0),
    ("What are your OPENING hours??", 1.0),
    ("what are your opening hours please", 1.0),    # politeness is ignored
    ("opening hours what are your", 1.0),            # same words, any order
    ("what are your usual opening hours", 0.833),
])
def test_a_custom_intent_matches_messages_that_nearly_equal_an_example(message, confidence):
    match = detect_intent(message, custom=[HOURS])
    assert match == IntentMatch(HOURS, confidence)


@pytest.mark.parametrize("message", [
    "what are your opening hours on sundays",   # Jaccard 5/7 is below 0.8
    "opening",
    "are you open on public holidays",
])
def test_a_custom_intent_does_not_match_a_different_question(message):
    assert detect_intent(message, custom=[HOURS]) is None


def test_sharing_only_stopwords_with_a_custom_example_is_no_match():
    tool = Intent("tool", ("what is it that you do for us with this tool",), ("...",))
    assert detect_intent("what is it that you do for us with this car", custom=[tool]) is None
    assert detect_intent("what is it that you do for us with this tool", custom=[tool])


def test_a_custom_example_made_of_stopwords_still_matches_itself():
    about = Intent("about_us", ("who are you",), ("We are Acme, since 1999.",))
    assert detect_intent("Who are you?", custom=[about]).intent is about


def test_a_custom_intent_beats_a_builtin_that_matches_the_same_message():
    welcome = Intent("welcome", ("hi there",), ("Welcome to Acme!",))
    assert _name("hi there", custom=[welcome]) == "welcome"
    assert _name("hi", custom=[welcome]) == "greeting"


def test_the_best_custom_intent_wins():
    open_now = Intent("open_now", ("are you open now",), ("Yes!",))
    match = detect_intent("are you open now", custom=[HOURS, open_now])
    assert match == IntentMatch(open_now, 1.0)


def test_a_custom_intent_named_like_a_builtin_replaces_its_responses():
    greeting = Intent("greeting", (), ("Welcome to Acme, I'm {bot_name}!",))
    match = detect_intent("hey there!", custom=[greeting])
    assert match.intent is greeting
    assert respond(match, "Aria") == "Welcome to Acme, I'm Aria!"


def test_intents_from_json_lists_are_hashable_and_need_a_response():
    intent = Intent("faq", ["a b"], ["c"])
    assert intent.examples == ("a b",) and intent.responses == ("c",)
    assert hash(intent)
    with pytest.raises(ValueError):
        Intent("faq", ["a b"], [])
    with pytest.raises(ValueError):
        Intent("", ["a b"], ["c"])


def test_a_custom_intent_object_is_prepared_once_and_stays_correct():
    first = Intent("one", ("alpha beta",), ("1",))
    assert _name("alpha beta", custom=[first]) == "one"
    assert _name("alpha beta", custom=[first]) == "one"
    second = Intent("two", ("gamma delta",), ("2",))
    assert _name("gamma delta", custom=[first, second]) == "two"


# --- respond -----------------------------------------------------------------

def test_respond_names_the_bot_and_is_deterministic_per_seed():
    match = detect_intent("who are you?")
    replies = {respond(match, "Aria", seed="session-%d" % i) for i in range(40)}
    assert len(replies) > 1
    assert all("{bot_name}" not in reply for reply in replies)
    assert any("Aria" in reply for reply in replies)
    for seed in ("session-1", 7, "abc"):
        assert respond(match, "Aria", seed) == respond(match, "Aria", seed)


def test_respond_without_a_seed_uses_the_first_response():
    match = detect_intent("hi")
    assert respond(match, "Aria") == "Hi! I'm Aria. How can I help you today?"


def test_respond_leaves_other_braces_of_a_custom_response_alone():
    intent = Intent("json", ("give me json",), ('Send {"a": 1} to {bot_name}',))
    assert respond(IntentMatch(intent, 1.0), "Aria", seed=3) == 'Send {"a": 1} to Aria'


# --- strip_opener --------------------------------------------------------------

@pytest.mark.parametrize("message, rest", [
    ("hi, what are your opening hours?", "what are your opening hours?"),
    ("Hello there! Do you ship to Canada?", "Do you ship to Canada?"),
    ("hey bot, can I return a sale item", "can I return a sale item"),
    ("thanks, and do you ship abroad?", "do you ship abroad?"),
    ("Hi what are your opening hours", "what are your opening hours"),
    ("good morning :) I need a refund", "I need a refund"),
    ("hi, how are you? what's the refund policy", "what's the refund policy"),
    ("Hey 👋 where is the shop?", "where is the shop?"),
    ('hi, "Pro plan" pricing?', '"Pro plan" pricing?'),
    ("hi!", ""),
])
def test_strip_opener_removes_a_leading_greeting_or_thanks(message, rest):
    assert strip_opener(message) == rest


def test_strip_opener_removes_the_bot_name_when_given():
    assert strip_opener("Hi Aria - I need a refund", bot_name="Aria") == "I need a refund"


@pytest.mark.parametrize("message", [
    "hello world program in python",
    "thank you note templates",
    "hi-fi speaker setup",
    "greetings card sizes",
    "how are you supposed to configure nginx",
    "who are you people's biggest competitor",
    "help desk opening hours",
    "what are your opening hours?",
    "",
])
def test_strip_opener_leaves_questions_that_start_with_an_intent_word(message):
    assert strip_opener(message) == message
