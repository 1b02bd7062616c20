"""Clause streaming policy: which parts of a streamed sentence are spoken early, and when.

Text arrives word by word on an injected clock; a simulated player turns each
piece into audio (0.35 s per word, ready 0.15 s after it is handed out) and
says how much is buffered. No sleeps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from sentence_stream import SentenceBoundaryDetector

from wyoming_piper_stream.server.clause_policy import ClausePolicy, TextPiece, TextRate, word_count
from wyoming_piper_stream.server.settings import ClauseMode, ClauseSettings

LONG_FIRST = (
    "The living room lights are now off, the front door is locked and the thermostat has "
    "been set to twenty degrees for the whole night because you asked me to do that earlier. "
    "Anything else?"
)
SHORT_THEN_LONG = "Sure! " + LONG_FIRST
NO_PUNCTUATION = (
    "I checked the weather for tomorrow and it looks like there will be light rain in the "
    "morning followed by some sunshine in the afternoon with a high of about twenty degrees."
)
SECONDS_PER_WORD = 0.35
LATENCY = 0.15


@dataclass
class Player:
    """A real-time player fed by the pieces: when audio is buffered, and the silences."""

    end: float | None = None
    first: float | None = None
    silence: float = 0.0

    def ahead(self, now: float) -> float | None:
        return None if self.end is None else max(0.0, self.end - now)

    def play(self, now: float, piece: TextPiece) -> None:
        ready = now + LATENCY
        if self.end is None:
            self.first = self.end = ready
        elif ready > self.end:
            self.silence += ready - self.end
            self.end = ready
        self.end += word_count(piece.text) * SECONDS_PER_WORD


@dataclass
class Run:
    """Pieces with the time they were handed out, and what the player did."""

    pieces: list[tuple[float, TextPiece]] = field(default_factory=list)
    player: Player = field(default_factory=Player)
    word_times: list[float] = field(default_factory=list)

    @property
    def early(self) -> list[tuple[float, TextPiece]]:
        return [(t, p) for t, p in self.pieces if not p.ends_sentence]


def stream(text: str, rate: float, settings: ClauseSettings | None = None) -> Run:
    """Send ``text`` word by word (CJK: character by character) at ``rate`` deltas/s,
    polling when the policy asks to."""
    policy = ClausePolicy(settings or ClauseSettings())
    run = Run()

    def take(now: float, pieces: list[TextPiece]) -> None:
        for piece in pieces:
            run.player.play(now, piece)
            run.pieces.append((now, piece))

    now = 0.0
    deltas = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
    if " " not in text:
        deltas = list(text)
    for delta in deltas:
        run.word_times.append(now)
        take(now, policy.add(delta, now, run.player.ahead(now)))
        later = now + 1 / rate
        while (when := policy.recheck_at(now, run.player.ahead(now))) is not None and when < later:
            assert when > now, "the policy must ask for a later time"
            now = when
            take(now, policy.poll(now, run.player.ahead(now)))
        now = later
    take(now, policy.finish(now))
    return run


def sentences(text: str) -> list[str]:
    detector = SentenceBoundaryDetector()
    found = [*detector.add_chunk(text), detector.finish()]
    return [s for s in found if s.strip()]


def rejoined(run: Run) -> list[str]:
    """The pieces put back into sentences."""
    joined: list[str] = []
    current: list[str] = []
    for _, piece in run.pieces:
        current.append(piece.text)
        if piece.ends_sentence:
            joined.append(" ".join(p for p in current if p))
            current = []
    return joined


@pytest.mark.parametrize("rate", [40.0, 100.0, 1000.0])
@pytest.mark.parametrize("text", [LONG_FIRST, SHORT_THEN_LONG, NO_PUNCTUATION])
def test_fast_text_is_spoken_in_whole_sentences_as_before(text: str, rate: float) -> None:
    run = stream(text, rate)
    assert run.early == []
    assert [p.text for _, p in run.pieces] == sentences(text)


@pytest.mark.parametrize("rate", [4.0, 8.0, 15.0, 40.0])
@pytest.mark.parametrize("text", [LONG_FIRST, SHORT_THEN_LONG, NO_PUNCTUATION])
def test_pieces_rejoin_to_the_sentences(text: str, rate: float) -> None:
    assert rejoined(stream(text, rate)) == sentences(text)


def test_first_clause_is_spoken_when_complete_at_8_words_per_second() -> None:
    run = stream(LONG_FIRST, 8.0)
    first_time, first = run.pieces[0]
    assert first == TextPiece("The living room lights are now off,", ends_sentence=False)
    # Spoken as the word with the comma arrives, long before the sentence's last word.
    assert first_time == run.word_times[6]
    assert first_time < run.word_times[len(sentences(LONG_FIRST)[0].split()) - 1]


def test_short_then_long_keeps_the_player_busy_at_8_words_per_second() -> None:
    run = stream(SHORT_THEN_LONG, 8.0)
    assert run.pieces[0][1] == TextPiece("Sure!", ends_sentence=True)
    assert run.early, "the long sentence must start before it ends"
    assert run.player.silence < 0.8


def test_a_clause_waits_while_the_buffer_covers_the_sentence_end() -> None:
    """With seconds of audio buffered the clause waits; it is spoken once the buffer
    would run out before the likely rest of the sentence arrives."""
    policy = ClausePolicy(ClauseSettings())
    words = ["and", "then", "the", "front", "door", "is", "locked,", "the"]
    for index, word in enumerate(words):
        assert policy.add(" " + word, index / 8, ahead=10.0) == []
    now = (len(words) - 1) / 8
    when = policy.recheck_at(now, ahead=10.0)
    assert when is not None and when > now + 9.0
    # The buffer has played down to what the rest would need: the clause is due.
    later = now + 9.9
    assert policy.poll(later, ahead=0.1) == [
        TextPiece("and then the front door is locked,", ends_sentence=False)
    ]


def test_a_clause_not_due_is_held_back_until_poll() -> None:
    policy = ClausePolicy(ClauseSettings())
    for index, word in enumerate(["Well", "then", "my", "friend,", "the", "front", "door"]):
        policy.add(word if index == 0 else " " + word, index / 8, ahead=5.0)
    assert policy.poll(0.6, ahead=5.0) == []
    assert policy.poll(5.0, ahead=0.0) == [TextPiece("Well then my friend,", ends_sentence=False)]


def test_short_clauses_are_not_spoken_alone() -> None:
    run = stream("Yes, sure, I can do that, and it will be done in a minute or two.", 4.0)
    assert all(word_count(p.text) >= 4 for _, p in run.early)
    assert run.early[0][1].text == "Yes, sure, I can do that,"


@pytest.mark.parametrize(
    ("text", "clause"),
    [
        ("We went to the U.S., and then we flew home to see our family.", None),
        ("I want to go there - but only if it is warm and sunny outside today.", None),
        ("I want to go there — but only if it is warm and sunny outside.", "I want to go there —"),
        ("Tell me one thing: why is the sky blue and the grass so green?", "Tell me one thing:"),
        (
            'He said "yes, of course," and then he left the room quietly.',
            'He said "yes, of course,"',
        ),
        (
            "It costs 1,000 dollars, which is more than I expected to pay.",
            "It costs 1,000 dollars,",
        ),
        ("我们明天去公园散步，然后回家吃饭。", "我们明天去公园散步，"),
    ],
)
def test_clause_ends(text: str, clause: str | None) -> None:
    settings = ClauseSettings(clause_streaming=ClauseMode.ALWAYS, clause_max_words=100)
    run = stream(text, 4.0, settings)
    firsts = [p.text for _, p in run.early[:1]]
    assert firsts == ([clause] if clause else [])


def test_a_long_stretch_without_punctuation_is_cut_between_whole_words() -> None:
    settings = ClauseSettings(clause_streaming=ClauseMode.ALWAYS)
    run = stream(NO_PUNCTUATION, 8.0, settings)
    (_, first), *_ = run.early
    # Among the last gaps, after "like" (not a weak word) and before "there" (a consonant).
    assert first.text == "I checked the weather for tomorrow and it looks like"
    assert NO_PUNCTUATION.startswith(first.text + " there ")
    # Without such a place, the last gap; a word split across deltas is never cut inside.
    policy = ClausePolicy(settings)
    text = "we will go to the shop and to the bank and then to a an"
    assert policy.add(text + " appl", 0.0, None) == [TextPiece(text, ends_sentence=False)]


def test_a_sentence_end_waiting_for_confirmation_is_not_cut() -> None:
    policy = ClausePolicy(ClauseSettings(clause_streaming=ClauseMode.ALWAYS))
    assert policy.add("Well, the front door is locked now.", 0.0, None) == []
    assert policy.finish(1.0) == [
        TextPiece("Well, the front door is locked now.", ends_sentence=True)
    ]


def test_off_never_cuts_and_always_cuts_every_clause() -> None:
    off = stream(SHORT_THEN_LONG, 4.0, ClauseSettings(clause_streaming=ClauseMode.OFF))
    assert off.early == []
    assert [p.text for _, p in off.pieces] == sentences(SHORT_THEN_LONG)
    always = stream(SHORT_THEN_LONG, 1000.0, ClauseSettings(clause_streaming=ClauseMode.ALWAYS))
    assert [p.text for _, p in always.early] == [
        "The living room lights are now off,",
        "the front door is locked and the thermostat has been set",
        "to twenty degrees for the whole night because you asked",
    ]


def test_finish_closes_a_sentence_spoken_in_parts() -> None:
    policy = ClausePolicy(ClauseSettings(clause_streaming=ClauseMode.ALWAYS))
    assert policy.add("First of all things, the door ", 0.0, None) == [
        TextPiece("First of all things,", ends_sentence=False)
    ]
    assert policy.finish(1.0) == [TextPiece("the door", ends_sentence=True)]
    # A stream that ends right after a clause still closes its sentence.
    policy = ClausePolicy(ClauseSettings(clause_streaming=ClauseMode.ALWAYS))
    policy.add("First of all things, we ", 0.0, None)
    assert policy.finish(1.0) == [TextPiece("we", ends_sentence=True)]


def test_text_rate_counts_words_not_deltas() -> None:
    rate = TextRate()
    for index, delta in enumerate(["Hel", "lo", " wor", "ld", " and", " more"]):
        rate.add(index * 0.1, delta)
    # 4 words, the last 3 begun in 0.5 s after the first.
    assert rate.rate(0.5) == pytest.approx(3 / 0.5)
    # While the next word is late the rate drops.
    assert rate.rate(1.5) == pytest.approx(4 / 1.5)
    assert rate.slower_than(2.0) == pytest.approx(2.0)
    assert word_count("我们明天 go") == pytest.approx(3.0)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClauseSettings().clause_min_words = 1  # type: ignore[misc]
