"""What scripted personas write, and how they write it.

Each archetype has a small vocabulary (what its days are about) and a hand
(how long it writes, how carefully, how urgently); a catalog `style` bends the
hand. Sentences come from a few shared templates filled from the vocabulary,
so adding an archetype means adding words, not prose. Everything is drawn
from the caller's seeded `Random`, so the same day writes the same words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from random import Random
from typing import Any

from persona_runner.drivers.schema_args import Filler


@dataclass(frozen=True)
class Lexicon:
    """What an archetype's days are about."""

    verbs: tuple[str, ...]
    things: tuple[str, ...]
    people: tuple[str, ...]
    places: tuple[str, ...]
    habits: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Hand:
    """How an archetype writes: length, care, urgency, usual mood."""

    sentences: tuple[int, int] = (1, 3)
    detail: float = 0.3  # how often a title gets a "with Sam" / "before friday" tail
    typo_rate: float = 0.0  # share of longer words with a slip of the finger
    trails_off: bool = False  # leaves sentences half-finished
    terse: bool = False  # drops articles, never elaborates
    priority: str | None = None  # the priority it reaches for, if any
    mood: tuple[int, int] = (2, 4)


LEXICONS: dict[str, Lexicon] = {
    "adhd-student": Lexicon(
        ("finish", "start", "email", "review"),
        ("the chem lab report", "bio flashcards", "the group project slides", "my lit reading"),
        ("Prof. Okafor", "Jess Moreno", "Sam Rivera"),
        ("the library", "lab 204", "the dorm"),
        ("Review flashcards", "Drink water", "10 minute tidy"),
        ("school", "bio", "urgent", "maybe"),
    ),
    "ceo-busy": Lexicon(
        ("approve", "review", "sign", "call"),
        ("the Q3 budget", "the board deck", "the hiring plan", "the Acme term sheet"),
        ("Dana Whitfield", "Raj Patel", "Mei Chen"),
        ("HQ 12th floor", "the airport lounge", "Zoom"),
        ("Morning run", "Inbox zero", "No-meeting block"),
        ("board", "finance", "hiring", "exec"),
    ),
    "creative-parent": Lexicon(
        ("buy", "pack", "book", "sign"),
        ("school lunches", "Mia's dentist visit", "the birthday cake", "the permission slip"),
        ("Grandma Rose", "Coach Tanaka", "Priya Nair"),
        ("the school gate", "the park", "the soccer field"),
        ("Sketch 15 minutes", "Family dinner", "Bedtime story"),
        ("family", "kids", "errands", "art"),
    ),
    "solo-dev": Lexicon(
        ("fix", "ship", "refactor", "write"),
        ("the login bug", "the release notes", "the CI pipeline", "the billing webhook"),
        ("Priya Shah", "Tom Becker", "Ana Lima"),
        ("the home office", "the coworking space"),
        ("Commit daily", "Walk after lunch", "Read docs"),
        ("bug", "release", "infra", "idea"),
    ),
    "researcher": Lexicon(
        ("read", "annotate", "rerun", "draft"),
        ("the Müller 2019 paper", "the ablation results", "section 3 of the draft", "the survey dataset"),
        ("Dr. Lindqvist", "Amara Osei", "Jonas Weber"),
        ("the lab", "seminar room B", "the archive"),
        ("Write 500 words", "Read one paper", "Clean the dataset"),
        ("literature", "methods", "draft", "data"),
    ),
    "freelancer": Lexicon(
        ("invoice", "send", "quote", "follow up on"),
        ("the Brightside logo", "the March invoices", "the website proposal", "the client feedback"),
        ("Lena Park", "Marcus Bell", "Ines Duarte"),
        ("the client office", "the cafe downtown"),
        ("Log hours", "Update portfolio", "Stretch break"),
        ("client", "invoice", "design", "admin"),
    ),
    "overwhelmed-newbie": Lexicon(
        ("figure out", "remember", "try", "set up"),
        ("this app", "the bills", "my new phone", "the dentist appointment"),
        ("Mom", "Alex Kim", "Rosa Diaz"),
        ("home", "the bank", "the post office"),
        ("Drink water", "Go to bed early"),
        ("todo", "important", "help"),
    ),
    "technical-founder": Lexicon(
        ("review", "write up", "unblock", "decide on"),
        ("the architecture doc", "the on-call rota", "the v2.3 rollout", "the hiring pipeline"),
        ("Helena Brandt", "Jonas Richter", "Aisha Bello"),
        ("the team room", "the stand-up call"),
        ("Code review hour", "Close the laptop by 7"),
        ("eng", "hiring", "infra", "decision"),
    ),
    "retiree": Lexicon(
        ("call", "book", "water", "post"),
        ("the garden", "the GP appointment", "the birthday card for Ellie", "the library books"),
        ("Ellie Hart", "Dr. Moore", "Joan Fisher"),
        ("the surgery", "the garden centre", "the church hall"),
        ("Morning walk", "Crossword", "Take tablets"),
        ("family", "health", "garden"),
    ),
}
DEFAULT_LEXICON = Lexicon(
    ("do", "check", "plan"),
    ("the weekly plan", "the groceries", "the emails"),
    ("Sam Lee", "Kim Ortiz"),
    ("home", "the office"),
    ("Stretch", "Read"),
    ("general", "personal"),
)

HANDS: dict[str, Hand] = {
    "adhd-student": Hand(trails_off=True, typo_rate=0.05, mood=(2, 5)),
    "ceo-busy": Hand(sentences=(1, 1), detail=0.1, terse=True, priority="high", mood=(3, 5)),
    "creative-parent": Hand(sentences=(2, 3), detail=0.5, typo_rate=0.02),
    "solo-dev": Hand(typo_rate=0.02),
    "researcher": Hand(sentences=(4, 8), detail=0.6, priority="normal", mood=(3, 4)),
    "freelancer": Hand(detail=0.4),
    "overwhelmed-newbie": Hand(sentences=(1, 2), typo_rate=0.12, mood=(1, 3)),
    "technical-founder": Hand(sentences=(2, 4), detail=0.4),
    "retiree": Hand(sentences=(2, 3), detail=0.5, mood=(3, 5)),
}


def styled(hand: Hand, style: str | None) -> Hand:
    """A catalog style on top of the archetype's own hand."""
    if style == "terse":
        return replace(hand, sentences=(1, 1), detail=0.0, terse=True)
    if style == "verbose":
        low, high = hand.sentences
        return replace(hand, sentences=(low + 2, high + 4), detail=0.9, terse=False)
    if style == "typos":
        return replace(hand, typo_rate=max(hand.typo_rate, 0.15))
    return hand


SENTENCES = (
    "Need to {verb} {thing} before {when}.",
    "Talked to {person} about {thing}.",
    "{Thing} took longer than I thought.",
    "Still not sure how to handle {thing}.",
    "Saw {person} at {place}, it went fine.",
    "Note to self: {verb} {thing} first thing tomorrow.",
)
WHEN = ("friday", "the weekend", "the meeting", "end of month")
EVENTS = ("Call with {person}", "{Thing} review", "Lunch with {person}", "{Thing} at {place}")
NOTE_TITLES = ("{Thing} notes", "Ideas: {thing}", "{Thing}, open questions", "Plan for {thing}")
TRAILS = ("...", " and then", " but", ", also")
ARTICLES = re.compile(r"\b(the|a|an|my)\s+", re.IGNORECASE)

#: Which kind of content a field holds: first by (module, field), then by field alone.
MODULE_FIELDS = {
    ("contacts", "name"): "person",
    ("contacts", "query"): "person",
    ("habits", "name"): "habit",
    ("calendar", "title"): "event",
    ("notes", "title"): "headline",
    ("notes", "tag"): "tag",
    ("mood", "note"): "remark",
    ("habits", "note"): "remark",
}
FIELDS = {
    "title": "task",
    "name": "task",
    "subject": "task",
    "body": "prose",
    "text": "prose",
    "notes": "prose",
    "note": "prose",
    "description": "prose",
    "content": "prose",
    "query": "query",
    "location": "place",
    "tags": "tags",
    "email": "email",
    "phone": "phone",
    "score": "mood",
    "mood": "mood",
    "priority": "priority",
    "due": "due",
    "date": "today",
    "day": "today",
    "since": "week_ago",
    "until": "today",
    "start": "start",
    "end": "end",
}


TEXT_KINDS = frozenset({"task", "headline", "event", "person", "habit", "place", "prose", "remark", "query"})


def _kind(module: str, field: str) -> str | None:
    return MODULE_FIELDS.get((module, field)) or FIELDS.get(field)


class Writer:
    """One persona's pen for one day: fills fields by name with content in its voice."""

    def __init__(self, archetype: str, style: str | None, rng: Random, today: dt.date) -> None:
        self.words = LEXICONS.get(archetype, DEFAULT_LEXICON)
        self.hand = styled(HANDS.get(archetype, Hand()), style)
        self.rng = rng
        self.today = today

    def filler(self, module: str) -> Filler:
        """The `Filler` for one module's tools (a habit's name is not a contact's name)."""
        return lambda field, built: self.fill(module, field, built)

    def hostile_filler(self, module: str) -> Filler:
        """Hostile text in every free-text field; dates, numbers and choices stay sensible,
        so a rejection can only be about the text."""

        def fill(field: str, built: Mapping[str, Any]) -> Any:
            kind = _kind(module, field)
            return hostile_text(self.rng) if kind is None or kind in TEXT_KINDS else self.fill(module, field, built)

        return fill

    def fill(self, module: str, field: str, built: Mapping[str, Any]) -> Any:
        kind = _kind(module, field)
        return getattr(self, f"_{kind}")(built) if kind else None

    # ---- one method per kind of content (named in MODULE_FIELDS / FIELDS) ----

    def _task(self, _built: Mapping[str, Any]) -> str:
        title = f"{self._pick('verbs')} {self._pick('things')}"
        if self.rng.random() < self.hand.detail:
            title += self.rng.choice((f" with {self._pick('people')}", f" before {self.rng.choice(WHEN)}"))
        return self._polish(_capital(title))

    def _headline(self, _built: Mapping[str, Any]) -> str:
        return self._polish(self._template(self.rng.choice(NOTE_TITLES)))

    def _event(self, _built: Mapping[str, Any]) -> str:
        return self._polish(self._template(self.rng.choice(EVENTS)))

    def _person(self, _built: Mapping[str, Any]) -> str:
        return self._pick("people")

    def _habit(self, _built: Mapping[str, Any]) -> str:
        return self._pick("habits")

    def _place(self, _built: Mapping[str, Any]) -> str:
        return _capital(self._pick("places"))

    def _prose(self, _built: Mapping[str, Any]) -> str:
        count = self.rng.randint(*self.hand.sentences)
        return " ".join(self._sentence() for _ in range(count))

    def _remark(self, _built: Mapping[str, Any]) -> str:
        return self._sentence()

    def _query(self, _built: Mapping[str, Any]) -> str:
        return key_word(self._pick("things"))

    def _tags(self, _built: Mapping[str, Any]) -> list[str]:
        return self.rng.sample(self.words.tags, self.rng.randint(1, min(3, len(self.words.tags))))

    def _tag(self, _built: Mapping[str, Any]) -> str:
        return self._pick("tags")

    def _email(self, built: Mapping[str, Any]) -> str:
        name = built.get("name") if isinstance(built.get("name"), str) else self._pick("people")
        local = ".".join(re.findall(r"[a-z]+", str(name).lower())) or "someone"
        return f"{local}@example.test"

    def _phone(self, _built: Mapping[str, Any]) -> str:
        return f"+1 555 01{self.rng.randint(10, 99)}"

    def _mood(self, _built: Mapping[str, Any]) -> int:
        return self.rng.randint(*self.hand.mood)

    def _priority(self, _built: Mapping[str, Any]) -> str | None:
        return self.hand.priority

    def _due(self, _built: Mapping[str, Any]) -> dt.date:
        return self.today + dt.timedelta(days=self.rng.randint(0, 10))

    def _today(self, _built: Mapping[str, Any]) -> dt.date:
        return self.today

    def _week_ago(self, _built: Mapping[str, Any]) -> dt.date:
        return self.today - dt.timedelta(days=7)

    def _start(self, _built: Mapping[str, Any]) -> dt.datetime:
        return dt.datetime.combine(self.today, dt.time(self.rng.randint(8, 17), self.rng.choice((0, 30))))

    def _end(self, built: Mapping[str, Any]) -> dt.datetime | None:
        start = built.get("start")
        if not isinstance(start, str):
            return None
        return dt.datetime.fromisoformat(start) + dt.timedelta(minutes=self.rng.choice((30, 60, 90)))

    # ---- the hand ----

    def _pick(self, bank: str) -> str:
        return self.rng.choice(getattr(self.words, bank))

    def _template(self, template: str) -> str:
        thing = self._pick("things")
        return template.format(
            verb=self._pick("verbs"),
            thing=thing,
            Thing=_capital(thing),
            person=self._pick("people"),
            place=self._pick("places"),
            when=self.rng.choice(WHEN),
        )

    def _sentence(self) -> str:
        sentence = self._template(self.rng.choice(SENTENCES))
        if self.hand.trails_off and self.rng.random() < 0.5:
            words = sentence.rstrip(".").split()
            sentence = " ".join(words[: max(2, len(words) * 2 // 3)]).rstrip(",.") + self.rng.choice(TRAILS)
        return self._polish(sentence)

    def _polish(self, text: str) -> str:
        if self.hand.terse:
            text = _capital(ARTICLES.sub("", text))
        return " ".join(self._slip(word) for word in text.split(" "))

    def _slip(self, word: str) -> str:
        """A deterministic typo: swapped, dropped or doubled letter, in longer words only."""
        if len(word) < 4 or self.rng.random() >= self.hand.typo_rate:
            return word
        at = self.rng.randint(1, len(word) - 2)
        return self.rng.choice(
            (
                word[:at] + word[at + 1] + word[at] + word[at + 2 :],
                word[:at] + word[at + 1 :],
                word[:at] + word[at] + word[at:],
            )
        )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def key_word(text: str) -> str:
    """The word a person would search for to find this again: its longest word."""
    words = re.findall(r"\w+", text)
    return max(words, key=len) if words else text


# ---- hostile text, for the chaos persona ----------------------------------------------------

HOSTILE = (
    "مرحبا بالعالم",  # Arabic, right to left
    "שלום עולם",  # Hebrew, right to left
    "\u202eevil override\u202c",  # right-to-left override
    "👩\u200d👩\u200d👧\u200d👦🧪🔥",  # emoji with zero-width joiners
    "Z\u0337\u0322a\u0335l\u0336g\u0338o\u0334",  # stacked combining marks
    "in\u200bvis\u200bible",  # zero-width spaces
    "漢字テスト",
    "ｆｕｌｌｗｉｄｔｈ",
    "e\u0301 vs \u00e9",  # the same letter composed and decomposed
)


def hostile_text(rng: Random) -> str:
    """Several hostile fragments run together: valid text that breaks careless handling."""
    return " ".join(rng.sample(HOSTILE, rng.randint(2, 4)))
