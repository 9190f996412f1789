"""Every word list Dossier uses, in one place: stopwords, calendar words, question cues, attribution verbs.

The lists are general English, not grown to fit questions seen in evaluation. A word's importance in a
question comes from its rarity (`assistant.rarity`), not from being listed here.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# General English function words.
FUNCTION_WORDS = _words(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    """
)
# Words so common in news that they tell one article from another no better than "the" does.
NEWS_STOPWORDS = _words(
    """
    said says say according told tell week year years month months day days recently latest new news report
    reported reports one two many much
    """
)
STOPWORDS = FUNCTION_WORDS | NEWS_STOPWORDS
QUESTION_WORDS = _words("what which who whom whose when where why how")
# Auxiliaries a question is built with ("did", "is"): no content of their own.
AUXILIARIES = _words("did does do is are was were has have had will would can could should may might")
PRONOUNS = _words("he she they it its his her their them that this those these there")

# Words that negate a statement: "not found on normal cells" says the opposite of "found on normal cells".
NEGATIONS = _words("not no never none nor nothing neither without cannot n't")

NUMBER_WORDS = _words(
    """
    zero one two three four five six seven eight nine ten eleven twelve dozen dozens hundred hundreds thousand
    thousands million millions billion billions
    """
)

MONTHS: dict[str, int] = {
    name: number
    for number, spellings in enumerate(
        [
            "january jan",
            "february feb",
            "march mar",
            "april apr",
            "may",
            "june jun",
            "july jul",
            "august aug",
            "september sep sept",
            "october oct",
            "november nov",
            "december dec",
        ],
        start=1,
    )
    for name in spellings.split()
}
MONTH_NAMES = frozenset(name for name in MONTHS if len(name) > 3 or name == "may")
WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
# Days and months are capitalised but name no one.
CALENDAR_WORDS = MONTH_NAMES | WEEKDAYS
RELATIVE_DAYS = ("yesterday", "today", "tonight", "last week", "this week")

# Verbs that attribute speech: a quote is only an answer together with who said it.
ATTRIBUTION_VERBS = _words(
    """
    said says say told tells added adds stated states claimed claims charged wrote writes argued noted insisted
    warned announced explained asked
    """
)

# How a question asks for its answer's type. "how many", "what percentage": a quantity;
# "which company", "who": a name; "when", "what year": a date; "where", "which city": a place.
QUANTITY_ADVERBS = _words("many much long far old big large high fast wide tall deep heavy often")
QUANTITY_NOUNS = _words(
    """
    number numbers figure figures percentage share proportion rate amount price cost fee temperature time score
    total sum toll count
    """
)
# Nouns for people and groups of people: the answer is someone's (or some body's) name.
PERSON_NOUNS = _words(
    """
    person people man woman men women leader president official company companies country countries team
    organization organisation group party nation firm
    """
)
TIME_NOUNS = _words("year date day month")
PLACE_NOUNS = _words("city town state place region village venue")

# A question that opens with one of these leans on the conversation before it.
FOLLOWUP_OPENERS = ("and", "but", "also", "so", "then", "what about", "how about", "and what about")

# Phrases that address a language model rather than a reader. A sentence holding one is an instruction planted
# in an article (prompt injection), never a fact: verification does not let it support an answer. General
# phrasings of the attack, not the wording of any one article.
INSTRUCTION_CUES = (
    r"\b(?:ignore|disregard|forget|override)\b[^.!?]{0,20}?\b(?:previous|prior|above|earlier|preceding|your|system)\b"
    r"[^.!?]{0,20}?\b(?:instructions?|prompts?|rules|guidelines)\b",
    r"\b(?:system|developer)\s+(?:prompt|message|instructions?)\b",
    r"\bnew\s+instructions?\b",
    r"\byou\s+are\s+(?:now\s+)?(?:an?\s+)?(?:ai|assistant|language\s+model|chatbot|llm)\b",
    r"\b(?:as\s+an?|dear)\s+(?:ai|language\s+model|llm|chatbot|assistant)\b",
)


def alternation(words: frozenset[str] | tuple[str, ...]) -> str:
    """A regex alternation of `words`, longest first, for use inside `\\b(...)\\b`."""
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
