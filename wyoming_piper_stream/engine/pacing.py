"""When the first audio goes out and how large each chunk is: the one home of that decision.

A chunked decoder asks its ``Pacing`` for the spans of an utterance, one at a
time, and how far a separate flow runs ahead; it measures what each step cost
(``CostModel``) and records the audio it hands over (``PlaybackClock``). Two
implementations of ``Pacing``:

- ``ChunkSchedule``: fixed sizes, doubling from a small first chunk (``--fixed-chunks``);
- ``PlannedPacing``, the default of the server and the stream CLI: plans the
  whole job. From the costs measured on this machine for this voice (encoder
  per id, flow and decoder per frame, each call's overhead) and from what is
  left of the job (the rest of this utterance, the ids of later clauses and
  sentences, text still to phonemize), it starts playback as soon as the rest
  can follow without the player running dry. On a device slower than real time
  for this reply that means holding back the first audio until about
  "work left - audio left + a margin" is buffered; once playing, each chunk is
  the largest that still arrives in time (fewer decoder calls, less padding),
  and the flow runs ahead only as far as that chunk's time allows. It also says
  whether a long sentence is cut after a short first piece at all
  (``cut_pays``): only where that brings the first audio forward.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

Clock = Callable[[], float]
"""Seconds on a monotonic clock: ``time.perf_counter`` in the server, a simulated
clock in tests, so pacing and scheduling are tested without sleeping."""

SAFETY = 1.1
"""Measured costs are multiplied by at least this in the whole-job plan: the
margin of a held start is 10% of the work left (single steps scatter more, but
on a steady device a job's sum of steps stays within a few percent of the fit).
Where the work after a start took longer than planned (a load that comes and
goes), the factor rises to the second worst recent ratio (``CostModel.plan_errors``),
at most ``MAX_SAFETY``."""

MAX_SAFETY = 2.0
"""A plan error past this is a fluke (a stopped process, a swapped page), not the device."""

PLAN_ERRORS_KEPT = 8
"""Recent jobs whose planned and actual work after the start are compared."""

RESERVE_SECONDS = 0.03
"""Audio the plan keeps buffered at its tightest point (a few scheduler slices);
each chunk already leaves 1 - ``MARGIN`` of the buffer unspent."""

MARGIN = 0.6
"""Share of the buffered audio that the next chunk may take to decode, on a steady
device; divided by ``StepCosts.spread`` where steps scatter more."""

SPREAD_STEPS = 32
"""Recent decoder steps whose time over the fit's prediction gives ``StepCosts.spread``."""

ENCODER_SQUARE_IDS = 266.0
"""The encoder's time grows with the square of its ids (self-attention, and the
alignment of ids to frames): on 2 cores, joe, 101 ids took 28 ms, 301 77 ms,
601 213 ms, 901 389 ms, 1301 757 ms, i.e. ``a + b*n + c*n*n`` with ``b / c``
about 266 ids. A straight line through small utterances would promise a large
context window too early; the encoder's fit is linear in ``encoder_units``."""


def encoder_units(ids: int) -> float:
    """The encoder's work for ``ids`` phoneme ids, in which its time is linear."""
    return ids + ids * ids / ENCODER_SQUARE_IDS


CUT_GAIN = 2 / 3
"""A cut must bring the first audio forward to at most this share of the joined
window's: a cut changes the sentence's sound a little (on a fast machine, a
40-word sentence cut at 200 phonemes came out 1.3% longer, for a first encoder
run of 96 ms against 135 ms; the 80 words: 74 ms against 320 ms)."""

FLOW_CALLS = 2
"""Flow calls charged per utterance in the plan (the flow runs ahead in few calls)."""


@dataclass(frozen=True)
class PlaybackCheck:
    """What a real-time player would have heard, given chunk arrival times."""

    underruns: int
    stall_seconds: float
    worst_stall: float = 0.0


def simulate_playback(arrivals: list[tuple[float, float]]) -> PlaybackCheck:
    """``arrivals``: (wall time, seconds of audio) per chunk; playing starts at the first."""
    underruns, stalls, worst = 0, 0.0, 0.0
    play_until = None
    for arrived, seconds in arrivals:
        if play_until is None:
            play_until = arrived
        elif arrived > play_until + 1e-3:
            underruns += 1
            stalls += arrived - play_until
            worst = max(worst, arrived - play_until)
            play_until = arrived
        play_until += seconds
    return PlaybackCheck(underruns, stalls, worst)


# --- costs ---------------------------------------------------------------------------------


@dataclass
class LinearFit:
    """``seconds ~ per_call + per_unit * units``, fitted online; older calls fade by ``decay``.

    Chunk sizes vary within a job, so the fit separates a call's overhead from
    its cost per frame (or per id).
    """

    decay: float = 0.8
    weight: float = 0.0
    units: float = 0.0
    seconds: float = 0.0
    units2: float = 0.0
    cross: float = 0.0

    def learn(self, units: float, seconds: float) -> None:
        keep = self.decay
        self.weight = keep * self.weight + 1.0
        self.units = keep * self.units + units
        self.seconds = keep * self.seconds + seconds
        self.units2 = keep * self.units2 + units * units
        self.cross = keep * self.cross + units * seconds

    def coefficients(self) -> tuple[float, float] | None:
        """(seconds per call, seconds per unit); None before the first call."""
        if self.weight <= 0 or self.units <= 0:
            return None
        mean_units = self.units / self.weight
        mean_seconds = self.seconds / self.weight
        variance = self.units2 / self.weight - mean_units**2
        if variance > (0.1 * mean_units) ** 2:
            slope = (self.cross / self.weight - mean_units * mean_seconds) / variance
            intercept = mean_seconds - slope * mean_units
            if slope > 0 and intercept >= 0:
                return intercept, slope
        return 0.0, mean_seconds / mean_units  # one size seen (or noise): all per unit


@dataclass(frozen=True)
class StepCosts:
    """Seconds each step is expected to take (a snapshot of ``CostModel``)."""

    encoder: tuple[float, float]
    """Per call, per ``encoder_units`` of its ids."""
    flow: tuple[float, float]
    """Per call, per frame it runs (its new frames and their context)."""
    decoder: tuple[float, float]
    """Per call, per frame it decodes (the chunk and its padding)."""
    frames_per_id: float
    ids_per_char: float
    safety: float = SAFETY
    """Factor on the work in the plan (see ``SAFETY``)."""
    padding: int = 0
    """Frames of context each side of a decoder call."""
    flow_padding: int = 0
    """Frames of context each side of a flow call."""
    spread: float = 1.0
    """How much slower than predicted a decoder step may come (the 90th percentile of
    recent steps, at least 1): on a core shared with busy loops steps take up to 2-3x
    their fit, and a chunk planned to use ``MARGIN`` of the buffer must still arrive."""

    def margin(self) -> float:
        """Share of the buffered audio the next chunk may take (see ``MARGIN``)."""
        return MARGIN / self.spread

    def encode(self, ids: int) -> float:
        return self.encoder[0] + self.encoder[1] * encoder_units(ids)

    def chunk(self, frames: int) -> float:
        """A chunk of ``frames``: decoder with its padding, plus the flow's share per frame.

        The padding is what makes small chunks dear: on 2 cores, 16 frames decode
        as 36 (0.6 ms each), 128 as 148. Priced as if every decoder stage ran all of
        it, though only the first does (``ChunkedDecoder``)."""
        return self.call_overhead() + self.per_frame() * frames

    def per_frame(self) -> float:
        """A chunk's cost per frame it hands out."""
        return self.decoder[1] + self.flow[1]

    def call_overhead(self) -> float:
        """A decoder call's cost beyond its frames: its padding, and the call itself."""
        return self.decoder[0] + self.decoder[1] * 2 * self.padding

    def flow_call(self) -> float:
        """A flow call's cost beyond its new frames: its context, and the call itself."""
        return self.flow[0] + self.flow[1] * 2 * self.flow_padding

    def utterance(self, ids: int) -> float:
        """Work before an utterance's first chunk: the encoder and the flow's calls."""
        return self.encode(ids) + FLOW_CALLS * self.flow_call()

    def scaled(self, factor: float) -> StepCosts:
        """Costs when this job gets only ``1 / factor`` of the compute."""

        def times(pair: tuple[float, float]) -> tuple[float, float]:
            return pair[0] * factor, pair[1] * factor

        return replace(
            self, encoder=times(self.encoder), flow=times(self.flow), decoder=times(self.decoder)
        )


FRAMES_PER_ID = 2.3
"""Before any measurement: latent frames per phoneme id (joe at length scale 1: 2.3)."""
IDS_PER_CHAR = 2.0
"""Before any measurement: phoneme ids per character of English text (joe: ~2.0)."""


class CostModel:
    """Step costs of one voice on this machine, learned as it speaks (thread-safe).

    Kept across restarts beside the voice cache (``as_dict``/``from_dict``), so a
    restarted server plans its first reply with what it learned before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.encoder = LinearFit()
        self.flow = LinearFit()
        self.decoder = LinearFit()
        self.frames_per_id = FRAMES_PER_ID
        self.ids_per_char = IDS_PER_CHAR
        self.updates = 0
        """Steps learned so far (the cache rewrites the file when it changed)."""
        self.plan_errors: list[float] = []
        """Actual over planned work after the start, of recent jobs (newest last)."""
        self.padding = 0
        self.flow_padding = 0
        self.step_ratios: list[float] = []
        """Recent decoder steps: seconds over what the fit predicted before them."""

    def use_padding(self, padding: int, flow_padding: int) -> None:
        """The voice's context frames per decoder and flow call (``ChunkedDecoder``): the
        fits are per frame run, context included; the plan adds the context to each call."""
        with self._lock:
            self.padding, self.flow_padding = padding, flow_padding

    def learn_encoder(self, seconds: float, ids: int, frames: int) -> None:
        with self._lock:
            self.encoder.learn(encoder_units(ids), seconds)
            if ids:
                self.frames_per_id += 0.3 * (frames / ids - self.frames_per_id)
            self.updates += 1

    def learn_flow(self, seconds: float, frames: int) -> None:
        """``frames``: all the call ran, its context included."""
        with self._lock:
            self.flow.learn(frames, seconds)
            self.updates += 1

    def learn_decoder(self, seconds: float, frames: int) -> None:
        """``frames``: all the call decoded, its padding included."""
        with self._lock:
            predicted = self.decoder.coefficients()
            expected = 0.0 if predicted is None else predicted[0] + predicted[1] * frames
            if expected > 0:  # a clock that stands still (tests) predicts nothing
                self.step_ratios = [*self.step_ratios, seconds / expected][-SPREAD_STEPS:]
            self.decoder.learn(frames, seconds)
            self.updates += 1

    def learn_plan(self, clock: PlaybackClock) -> None:
        """At the end of a job: how the work after its start compared with the plan."""
        if clock.plan is None:
            return
        worked, planned = clock.plan
        clock.plan = None
        if planned > 0.5:  # shorter ones are all noise
            # The job's own step time: waits for other clients' turns are the share's part.
            with self._lock:
                self.plan_errors = [*self.plan_errors, (clock.work_seconds - worked) / planned]
                self.plan_errors = self.plan_errors[-PLAN_ERRORS_KEPT:]
                self.updates += 1

    def learn_text(self, chars: int, ids: int) -> None:
        if chars:
            with self._lock:
                self.ids_per_char += 0.3 * (ids / chars - self.ids_per_char)

    def snapshot(self) -> StepCosts | None:
        """None until the encoder and the decoder have been timed."""
        with self._lock:
            encoder, decoder = self.encoder.coefficients(), self.decoder.coefficients()
            if encoder is None or decoder is None:
                return None
            return StepCosts(
                encoder=encoder,
                flow=self.flow.coefficients() or (0.0, 0.0),
                decoder=decoder,
                frames_per_id=self.frames_per_id,
                ids_per_char=self.ids_per_char,
                safety=min(MAX_SAFETY, sorted([SAFETY, SAFETY, *self.plan_errors])[-2]),
                padding=self.padding,
                flow_padding=self.flow_padding,
                spread=_spread(self.step_ratios),
            )

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "encoder": vars(self.encoder).copy(),
                "flow": vars(self.flow).copy(),
                "decoder": vars(self.decoder).copy(),
                "frames_per_id": self.frames_per_id,
                "ids_per_char": self.ids_per_char,
                "plan_errors": list(self.plan_errors),
                "padding": [self.padding, self.flow_padding],
                "step_ratios": list(self.step_ratios),
            }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostModel:
        """Raises ``KeyError``/``TypeError``/``ValueError`` on a malformed record."""
        model = cls()
        for name in ("encoder", "flow", "decoder"):
            fit = LinearFit(**{key: float(value) for key, value in data[name].items()})
            setattr(model, name, fit)
        model.frames_per_id = float(data["frames_per_id"])
        model.ids_per_char = float(data["ids_per_char"])
        model.plan_errors = [float(x) for x in data.get("plan_errors", [])][-PLAN_ERRORS_KEPT:]
        model.padding, model.flow_padding = (int(x) for x in data.get("padding", (0, 0)))
        model.step_ratios = [float(x) for x in data.get("step_ratios", [])][-SPREAD_STEPS:]
        return model


def _spread(ratios: Sequence[float]) -> float:
    """The 90th percentile of ``ratios``, at least 1 (1 while fewer than 8 are known)."""
    if len(ratios) < 8:
        return 1.0
    ranked = sorted(ratios)
    return max(1.0, ranked[int(0.9 * (len(ranked) - 1))])


# --- one job's playback ----------------------------------------------------------------------


class UtteranceWork(NamedTuple):
    """A later utterance of a job: the ids its encoder run sees (with the context around
    a clause piece, see ``clauses.piece_window``) and the ids it speaks."""

    encoder_ids: int
    ids: int


@dataclass
class PlaybackClock:
    """One listener's playback and what is left of the job (shared by its utterances).

    Playback starts with the first audio handed over; audio produced while the
    pacing holds back the start waits in ``held_seconds``. When audio arrives
    late the player stalls and resumes, so the clock shifts its start by the stall.
    """

    started: float | None = None
    sent_seconds: float = 0.0
    share: float = 1.0
    """Share of the compute the job got lately: its steps' time over that time plus
    the time it waited for its turn while other clients' steps ran."""
    now: Clock = field(default=time.perf_counter, repr=False, compare=False)
    held_seconds: float = 0.0
    upcoming: list[UtteranceWork] = field(default_factory=list)
    """This job's utterances that are phonemized but not yet started."""
    pending_sentences: list[int] = field(default_factory=list)
    """Characters of each sentence queued for this listener but not yet phonemized."""
    work_seconds: float = 0.0
    """Compute time of the job's steps so far (without waits for the turn)."""
    plan: tuple[float, float] | None = None
    """(``work_seconds`` then, seconds of work planned to the end of the job) at the start."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def hold(self, seconds: float) -> None:
        """Audio produced but held back: playback has not started."""
        self.held_seconds += seconds

    def sent(self, seconds: float) -> None:
        """Audio handed to the player, with everything held before it."""
        seconds += self.held_seconds
        self.held_seconds = 0.0
        now = self.now()
        if self.started is None:
            self.started = now
        elif now - self.started > self.sent_seconds:
            self.started = now - self.sent_seconds  # the player ran dry and waited
        self.sent_seconds += seconds

    def restart_if_dry(self) -> None:
        """Before a new utterance: if the player has played everything, it starts afresh
        (a small first chunk, as a new stream) instead of as a stalled stream's next
        chunk (the largest, to catch up), so the silence ends sooner."""
        ahead = self.ahead()
        if ahead is not None and ahead <= 0.0:
            self.started = None
            self.sent_seconds = 0.0

    def worked(self, waited: float, seconds: float) -> None:
        """Record one step: ``seconds`` of compute after ``waited`` for the turn."""
        self.work_seconds += seconds
        sample = seconds / max(seconds + waited, 1e-9)
        self.share = max(0.05, 0.5 * (self.share + sample))

    def runs_dry(self) -> float | None:
        """When the buffered audio will have played (on ``now``); None before any audio."""
        return None if self.started is None else self.started + self.sent_seconds

    def ahead(self) -> float | None:
        """Seconds of audio still buffered at the player; None before the first audio."""
        if self.started is None:
            return None
        return max(0.0, self.sent_seconds - (self.now() - self.started))

    def expect_text(self, sentence_chars: Sequence[int]) -> None:
        """Sentences queued for this listener (as requests or streamed sentences arrive)."""
        with self._lock:
            self.pending_sentences.extend(sentence_chars)

    def phonemized(
        self, utterance_ids: Sequence[int], encoder_ids: Sequence[int] | None = None
    ) -> None:
        """The next queued sentence became utterances of these id counts (``encoder_ids``:
        what their encoder runs see, with context; by default the same)."""
        seen = utterance_ids if encoder_ids is None else encoder_ids
        with self._lock:
            if self.pending_sentences:
                self.pending_sentences.pop(0)
            self.upcoming.extend(map(UtteranceWork, seen, utterance_ids))

    def utterance_started(self) -> None:
        with self._lock:
            if self.upcoming:
                self.upcoming.pop(0)

    def work_left(self) -> tuple[list[UtteranceWork], list[int]]:
        """(later utterances, characters of sentences not yet phonemized)."""
        with self._lock:
            return list(self.upcoming), list(self.pending_sentences)


# --- spans and the pacing interface ----------------------------------------------------------


@dataclass(frozen=True)
class ChunkSpan:
    """Frames ``[start, end)`` are emitted; ``pad_left``/``pad_right`` frames are context."""

    start: int
    end: int
    pad_left: int
    pad_right: int

    @property
    def decode_start(self) -> int:
        return self.start - self.pad_left

    @property
    def decode_end(self) -> int:
        return self.end + self.pad_right


@dataclass(frozen=True)
class PacedSpan:
    """The next chunk, and whether its audio waits (the first audio is held back)."""

    span: ChunkSpan
    hold: bool = False


def next_span(start: int, size: int, num_frames: int, padding: int, min_tail: int) -> ChunkSpan:
    """The chunk of ``size`` frames at ``start``, with padding clipped at the edges."""
    end = min(num_frames, start + max(1, size))
    # A tiny tail costs a whole decoder call for little audio: merge it.
    if 0 < num_frames - end < min_tail:
        end = num_frames
    return ChunkSpan(start, end, min(padding, start), min(padding, num_frames - end))


class Pacing(Protocol):
    """Decides the chunks of each utterance (fixed or planned)."""

    @property
    def first_chunk(self) -> int: ...

    @property
    def max_chunk(self) -> int: ...

    def spans(
        self, num_frames: int, padding: int, clock: PlaybackClock, costs: CostModel
    ) -> Iterator[PacedSpan]:
        """The utterance's chunks in order; each is handed to the player (and
        recorded on ``clock``) before the next is asked for."""
        ...

    def flow_end(
        self, done: int, needed: int, num_frames: int, clock: PlaybackClock, costs: CostModel
    ) -> int:
        """How far a separate flow runs when the decoder needs frames up to ``needed``."""
        ...

    def cut_pays(
        self,
        first: UtteranceWork,
        second: UtteranceWork,
        joined: UtteranceWork,
        clock: PlaybackClock,
        costs: CostModel,
    ) -> bool:
        """Is a sentence cut after ``first`` (``second`` follows) heard sooner than
        ``joined``, the two as one utterance?"""
        ...


@dataclass(frozen=True)
class ChunkSchedule:
    """Fixed pacing: chunk sizes in latent frames, small first, then growing."""

    first_chunk: int = 16
    max_chunk: int = 128
    growth: float = 2.0

    def sizes(self) -> Iterator[int]:
        size = max(1, self.first_chunk)
        while True:
            yield size
            size = max(1, min(self.max_chunk, int(size * self.growth)))

    def spans(
        self, num_frames: int, padding: int, clock: PlaybackClock, costs: CostModel
    ) -> Iterator[PacedSpan]:
        for span in plan_chunks(num_frames, self, padding):
            yield PacedSpan(span)

    def flow_end(
        self, done: int, needed: int, num_frames: int, clock: PlaybackClock, costs: CostModel
    ) -> int:
        # At least quadruple: few flow calls, yet the first covers only the first chunk.
        return min(num_frames, max(needed, 4 * done))

    def cut_pays(
        self,
        first: UtteranceWork,
        second: UtteranceWork,
        joined: UtteranceWork,
        clock: PlaybackClock,
        costs: CostModel,
    ) -> bool:
        return True  # no costs in the plan: always the short first window


def plan_chunks(num_frames: int, schedule: ChunkSchedule, padding: int) -> list[ChunkSpan]:
    """Split ``num_frames`` into chunks with context padding clipped at the edges."""
    spans: list[ChunkSpan] = []
    sizes = schedule.sizes()
    min_tail = max(1, schedule.first_chunk // 2)
    start = 0
    while start < num_frames:
        spans.append(next_span(start, next(sizes), num_frames, padding, min_tail))
        start = spans[-1].end
    return spans


# --- the whole-job plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPacing:
    """Plans the whole job against a real-time player (see the module docstring)."""

    first_chunk: int = 16
    max_chunk: int = 128
    frame_seconds: float = 256 / 22050
    """Seconds of audio in one latent frame (hop length / sample rate)."""

    def spans(
        self, num_frames: int, padding: int, clock: PlaybackClock, costs: CostModel
    ) -> Iterator[PacedSpan]:
        min_tail = max(1, self.first_chunk // 2)
        start = 0
        while start < num_frames:
            size, hold = self.next_size(num_frames - start, clock, costs.snapshot())
            span = next_span(start, size, num_frames, padding, min_tail)
            yield PacedSpan(span, hold)
            start = span.end

    def next_size(
        self, left: int, clock: PlaybackClock, measured: StepCosts | None
    ) -> tuple[int, bool]:
        """(frames of the next chunk, hold its audio back) with ``left`` frames to go."""
        if measured is None:  # nothing measured yet: double what was handed out so far
            sent = int((clock.sent_seconds + clock.held_seconds) / self.frame_seconds)
            return min(self.max_chunk, max(self.first_chunk, sent)), False
        costs = measured.scaled(1.0 / clock.share)  # other clients' steps run between ours
        ahead = clock.ahead()
        if ahead is not None:
            return self.largest_in_time(costs, ahead, left), False
        return self.opening(costs, clock, left)

    def largest_in_time(self, costs: StepCosts, ahead: float, left: int) -> int:
        """The largest chunk that is ready while ``margin()`` of the buffer still plays."""
        per_frame = costs.per_frame()
        budget = costs.margin() * ahead - costs.call_overhead()
        fits = int(budget / per_frame) if per_frame > 0 else left
        if left <= fits and left <= self.max_chunk + 2 * self.first_chunk:
            return left  # the rest in one call: less padding, one call fewer
        if fits < self.first_chunk:
            # Too little buffered for any chunk to arrive in time: the largest
            # chunk wastes least on padding, so the stream catches up soonest.
            return self.max_chunk if fits < 1 else self.first_chunk
        return min(self.max_chunk, fits)

    def opening(self, costs: StepCosts, clock: PlaybackClock, left: int) -> tuple[int, bool]:
        """Before playback: the smallest chunk after which the whole rest of the job
        keeps up; if none does, the largest, held back (it is the cheapest per frame)."""
        later = self.later_utterances(costs, clock)
        for size in self.candidates(left):
            buffered = clock.held_seconds + size * self.frame_seconds
            if self.keeps_up(costs, buffered, left - size, later):
                if not clock.pending_sentences:
                    # Planned compute time of the job alone (costs here include the share).
                    work = costs.chunk(size) + self.work(costs, left - size, later)
                    clock.plan = (clock.work_seconds, work * clock.share)
                return size, False
        return min(self.max_chunk, left), True

    def work(self, costs: StepCosts, left: int, later: Sequence[UtteranceWork]) -> float:
        """Seconds of work for the rest of the job, in chunks of the largest size."""
        pieces = [(0.0, left), *_utterance_steps(costs, later)]
        total = 0.0
        for before, frames in pieces:
            calls = math.ceil(frames / self.max_chunk)
            total += before + calls * costs.call_overhead() + costs.per_frame() * frames
        return total

    def candidates(self, left: int) -> Iterator[int]:
        size = self.first_chunk
        while size < min(left, self.max_chunk):
            yield size
            size = int(size * 1.5) + 1
        yield min(left, self.max_chunk)

    def later_utterances(self, costs: StepCosts, clock: PlaybackClock) -> list[UtteranceWork]:
        """The utterances after this one, estimated for sentences not yet phonemized
        (one utterance each: sentences go through the encoder one by one)."""
        upcoming, sentences = clock.work_left()
        estimated = [round(chars * costs.ids_per_char) for chars in sentences]
        return upcoming + [UtteranceWork(ids, ids) for ids in estimated]

    def keeps_up(
        self, costs: StepCosts, buffered: float, left: int, later: Sequence[UtteranceWork]
    ) -> bool:
        """Would the rest of the job, chunked as ``largest_in_time`` chunks it, play
        without the buffer falling under ``RESERVE_SECONDS``?"""
        pieces = [(0.0, left), *_utterance_steps(costs, later)]
        for before, frames in pieces:
            buffered -= costs.safety * before
            while frames > 0:
                size = min(frames, self.largest_in_time(costs, buffered, frames))
                buffered -= costs.safety * costs.chunk(size)
                if buffered < RESERVE_SECONDS:
                    return False
                buffered += size * self.frame_seconds
                frames -= size
        return True

    def flow_end(
        self, done: int, needed: int, num_frames: int, clock: PlaybackClock, costs: CostModel
    ) -> int:
        """The whole rest in one call when the buffer allows (each call recomputes
        the flow's context on both sides); else up to quadruple, as fixed pacing, as far
        as the buffer allows beyond the frames this chunk needs."""
        quadruple = min(num_frames, max(needed, 4 * done))
        if num_frames - needed <= 4 * costs.flow_padding:
            # A short rest in this call: a next call would recompute 2 x flow padding
            # of this one's context to add at most 3 x that (5 words: flow 56 + 124
            # frames -> 118), which this call's first audio pays once (90 frames of
            # flow: 12 ms on 2 cores).
            return num_frames
        measured = costs.snapshot()
        ahead = clock.ahead()
        if measured is None or ahead is None:
            # The first audio waits for this call, also when the start is held back
            # (at N = 5, a whole-rest call of 1,600 frames delayed it by 2.3 s).
            return quadruple
        measured = measured.scaled(1.0 / clock.share)
        # The chunk's own flow frames are in ``chunk``; what runs ahead of it must fit
        # in the rest of its time budget, or the call is a spike the player hears
        # (at N = 5, quadrupling calls of ~750 frames made 83-frame chunks take 1.35 s).
        spare = measured.margin() * ahead - measured.chunk(needed - done) - measured.flow_call()
        ahead_frames = spare / measured.flow[1] if measured.flow[1] > 0 else float("inf")
        if needed + ahead_frames >= num_frames:
            return num_frames
        return max(needed, min(quadruple, needed + int(ahead_frames)))

    def cut_pays(
        self,
        first: UtteranceWork,
        second: UtteranceWork,
        joined: UtteranceWork,
        clock: PlaybackClock,
        costs: CostModel,
    ) -> bool:
        """The cut's first audio waits for the first window's encoder run, or, where the
        first piece's audio cannot cover the work up to the second piece's first chunk
        (its encoder run above all), for a held start; the joined one waits for one
        encoder run over both. On a fast machine the cut wins (80 words: 80 ms against
        400); on a slow one the second window's run outlasts the first piece's audio,
        and the cut would only add its first window's work before the first audio.
        A cut that gains little is not taken either (``CUT_GAIN``)."""
        measured = costs.snapshot()
        if measured is None:
            return True
        c = measured.scaled(1.0 / clock.share)
        first_frames = round(first.ids * c.frames_per_id)
        opening = c.encode(first.encoder_ids) + c.chunk(self.first_chunk)
        until_second = opening + c.chunk(first_frames) + c.utterance(second.encoder_ids)
        held = c.safety * until_second - first_frames * self.frame_seconds
        joined_opening = c.encode(joined.encoder_ids) + c.chunk(self.first_chunk)
        return max(opening, held) < CUT_GAIN * joined_opening


def _utterance_steps(costs: StepCosts, later: Sequence[UtteranceWork]) -> list[tuple[float, int]]:
    """(seconds before its first chunk, frames) of each later utterance: the encoder pays
    for the context it sees, the audio is only the utterance's own frames."""
    return [(costs.utterance(u.encoder_ids), round(u.ids * costs.frames_per_id)) for u in later]
