"""Benchmark texts: assistant-like English, by name."""

from __future__ import annotations

import itertools

WORDS_5 = "Turn on the kitchen lights."

WORDS_25 = (
    "The living room lights are now off, the front door is locked, and the thermostat "
    "has been set to twenty degrees for the whole night."
)

WORDS_80 = (
    "When you get a chance, could you please check whether the garage door is closed, "
    "the porch lights are off, the thermostat downstairs is set to sixty eight degrees, "
    "the dishwasher has finished its cycle and the back gate is latched, because I am "
    "heading to bed soon and I want to be sure that everything in the house is quiet, "
    "safe and secure before the heavy storm that the forecast says will arrive around "
    "midnight tonight reaches our neighborhood."
)

THREE_SENTENCES = (
    "It is currently fifty eight degrees and cloudy in Portland. Later this afternoon, "
    "expect light rain with a high of sixty two degrees. You may want to bring an "
    "umbrella if you are heading out."
)

STREAM_REPLY = (
    "I have added milk, eggs and a loaf of bread to your shopping list. Your next "
    "meeting starts at three thirty with the design team and should last about forty "
    "five minutes. Would you like me to set a reminder ten minutes before it begins?"
)
"""The reply an LLM streams in pieces (three sentences)."""

TWENTY_SHORT = (
    "Done. The lights are off. The door is locked. It is nine degrees. Rain starts at noon. "
    "Your timer is set. The oven is on. The fan is off. Music is playing. The alarm is set "
    "for seven. The garage is closed. The heating is on. The blinds are down. The kettle is "
    "boiling. The window is open. Your parcel arrived. The battery is full. The washer is "
    "done. Dinner is at six. Good night."
)
"""Twenty short sentences in one request: many encoder calls, each a little audio."""

TEXTS: dict[str, str] = {
    "5w": WORDS_5,
    "25w": WORDS_25,
    "80w": WORDS_80,
    "3sent": THREE_SENTENCES,
    "20short": TWENTY_SHORT,
}
"""One-shot texts by name, in table order."""

QUICK_TEXTS = ("5w", "80w")


def stream_pieces(text: str, count: int = 30) -> list[str]:
    """``text`` cut at word boundaries into about ``count`` pieces, like LLM deltas.

    Each piece but the first starts with the space before its first word, so the
    pieces concatenate back to ``text``.
    """
    words = text.split(" ")
    count = max(1, min(count, len(words)))
    bounds = [round(i * len(words) / count) for i in range(count + 1)]
    pieces = [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces)]
