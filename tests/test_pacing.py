"""The pacing: whole-job plans on simulated devices, never a stall, first audio held just enough.

A stand-in voice advances a simulated clock by what each step would cost on a
device of a given speed (encoder per id, flow and decoder per frame, each
call's overhead); a simulated real-time player on the same clock counts the
stalls. Nothing sleeps, and the machine's speed does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wyoming_piper_stream.engine.chunked_decoder import ChunkedDecoder
from wyoming_piper_stream.engine.graphs import Latent, SynthesisScales
from wyoming_piper_stream.engine.pacing import (
    ENCODER_SQUARE_IDS,
    ChunkSchedule,
    CostModel,
    LinearFit,
    Pacing,
    PlannedPacing,
    PlaybackClock,
    StepCosts,
    UtteranceWork,
    simulate_playback,
)
from wyoming_piper_stream.engine.voice_config import DEFAULT_HOP_LENGTH as HOP_LENGTH
from wyoming_piper_stream.voices.cache import VoiceCache

SCALES = SynthesisScales(0.0, 1.0, 0.0)
RATE = 22050
FRAME_SECONDS = HOP_LENGTH / RATE
FRAMES_PER_ID = 2
PADDING = 10


@dataclass(frozen=True)
class _Config:
    sample_rate: int = RATE
    hop_length: int = HOP_LENGTH


class SimulatedClock:
    """Time that passes only when the simulated device works."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DeviceVoice:
    """Runs each step in simulated time, like a device ``speed`` times slower than real time.

    At ``speed`` 1.0 the encoder, flow and decoder of a whole utterance, without
    chunk padding or call overheads, take as long as its audio plays; the overheads
    come on top, as on a real device.
    """

    config = _Config()

    def __init__(
        self,
        speed: float,
        separate_flow: bool = True,
        encoder_share: float = 0.2,
        encoder_square_ids: float | None = None,
        first_stage_share: float | None = None,
    ):
        self.clock = SimulatedClock()
        # The real encoder's time grows with the square of its ids: ``n + n * n / this``.
        self.encoder_square_ids = encoder_square_ids
        per_frame = speed * FRAME_SECONDS
        self.encoder_per_id = encoder_share * per_frame * FRAMES_PER_ID
        self.flow_per_frame = 0.2 * per_frame if separate_flow else 0.0
        self.decoder_per_frame = per_frame - self.flow_per_frame - encoder_share * per_frame
        self.call = 0.004 * speed / 0.2  # ~4 ms per call on a device 5x faster than real time
        self.flow = object() if separate_flow else None
        self.load: tuple[float, float] | None = None  # (from when, steps take this much longer)
        # A decoder that decodes spans: this share of its work runs over every frame
        # given, the rest only over the span's (None: a decoder without spans).
        self.first_stage_share = first_stage_share

    def _work(self, seconds: float) -> None:
        if self.load is not None and self.clock.now >= self.load[0]:
            seconds *= self.load[1]
        self.clock.advance(seconds)

    def encode(self, ids, scales, speaker_id=None) -> Latent:
        units = len(ids)
        if self.encoder_square_ids:
            units += len(ids) ** 2 / self.encoder_square_ids
        self._work(self.call + self.encoder_per_id * units)
        frames = FRAMES_PER_ID * len(ids)
        return Latent(np.zeros((1, 4, frames), np.float32), np.ones((1, 1, frames), np.float32))

    flow_trimmed_layers = 0  # a flow that drops no frames

    def run_flow(self, prior: Latent, trim: tuple[int, int] = (0, 0)) -> Latent:
        self._work(self.call + self.flow_per_frame * prior.num_frames)
        return prior

    def decode(self, latent: Latent, span: tuple[int, int] | None = None) -> np.ndarray:
        start, end = span or (0, latent.num_frames)
        frames: float = latent.num_frames
        if self.first_stage_share is not None:
            share = self.first_stage_share
            frames = share * latent.num_frames + (1 - share) * (end - start)
        self._work(self.call + self.decoder_per_frame * frames)
        return np.zeros((end - start) * HOP_LENGTH, np.float32)


def _decoder(
    device: DeviceVoice, pacing: Pacing | None = None, stage_padding: int | None = None
) -> ChunkedDecoder:
    pacing = pacing or PlannedPacing(16, 128, FRAME_SECONDS)
    return ChunkedDecoder(
        device,  # type: ignore[arg-type]
        PADDING,
        pacing,
        clock=device.clock,
        flow_padding=4,
        stage_padding=stage_padding,
    )


@dataclass(frozen=True)
class Played:
    first_audio: float
    total: float
    audio: float
    stall: float
    worst_stall: float
    sizes: list[list[int]]
    earliest_start: float
    """The earliest first audio that plays these chunks without a stall (each ready when made)."""


def _speak(decoder: ChunkedDecoder, utterances: list[int], later: Sequence[int] = ()) -> Played:
    """A job as the server runs it (``job_pcm``): its utterances of these id counts, then
    sentences of ``later`` characters still to come; held chunks reach the player with the
    first released."""
    device_clock = decoder.clock
    clock = PlaybackClock(now=device_clock)
    clock.phonemized(utterances)
    clock.expect_text(later)
    started = device_clock()
    arrivals: list[tuple[float, float]] = []
    held: list[float] = []
    sizes: list[list[int]] = []
    made = 0.0  # audio made before the current chunk
    earliest = 0.0
    for ids in utterances:
        clock.utterance_started()
        sizes.append([])
        for chunk in decoder.stream(list(range(ids)), SCALES, None, clock):
            sizes[-1].append(chunk.end_frame - chunk.start_frame)
            held.append(len(chunk.audio) / RATE)
            earliest = max(earliest, device_clock() - started - made)
            made += len(chunk.audio) / RATE
            if not chunk.held:
                arrivals.append((device_clock(), sum(held)))
                held.clear()
    if held:
        arrivals.append((device_clock(), sum(held)))
    decoder.costs.learn_plan(clock)  # as the server does at the end of a job
    check = simulate_playback(arrivals)
    return Played(
        first_audio=arrivals[0][0] - started,
        total=device_clock() - started,
        audio=sum(seconds for _, seconds in arrivals),
        stall=check.stall_seconds,
        worst_stall=check.worst_stall,
        sizes=sizes,
        earliest_start=earliest,
    )


def _taught(speed: float, stage_padding: int | None = None, **device: object) -> ChunkedDecoder:
    """A decoder that has spoken once on this device (the costs are learned as it runs)."""
    decoder = _decoder(DeviceVoice(speed, **device), stage_padding=stage_padding)  # type: ignore[arg-type]
    _speak(decoder, [40, 120, 200])
    _speak(decoder, [150])
    return decoder


def test_simulated_player_counts_stalls() -> None:
    assert simulate_playback([(0.0, 1.0), (0.5, 1.0), (1.9, 1.0)]).underruns == 0
    check = simulate_playback([(0.0, 1.0), (1.5, 1.0), (2.0, 1.0)])
    assert check.underruns == 1
    assert abs(check.stall_seconds - 0.5) < 1e-9
    assert abs(check.worst_stall - 0.5) < 1e-9


@pytest.mark.parametrize("speed", [0.8, 1.0, 1.3])
def test_no_stall_on_devices_near_real_time(speed: float) -> None:
    """A 3-clause reply (~9 s) on devices at 0.8x, 1.0x and 1.3x of real time."""
    played = _speak(_taught(speed), [120, 140, 130])
    assert played.stall == 0.0
    assert played.audio == pytest.approx(390 * FRAMES_PER_ID * FRAME_SECONDS)


@pytest.mark.parametrize("speed", [0.8, 1.0, 1.3])
def test_later_decoder_stages_on_the_span_alone_start_sooner_without_stall(
    speed: float,
) -> None:
    """A decoder whose first stage (a fifth of its work) alone runs over all the
    padding: the plan, which prices every call as if all stages ran all of it,
    learns cheaper steps, starts sooner and finishes sooner, without a stall."""
    utterances = [120, 140, 130]
    full = _speak(_taught(speed, first_stage_share=0.2), utterances)
    staged = _speak(_taught(speed, stage_padding=1, first_stage_share=0.2), utterances)
    assert full.stall == 0.0 and staged.stall == 0.0
    assert staged.first_audio < full.first_audio
    assert staged.total < full.total
    assert staged.audio == pytest.approx(full.audio)


def test_slow_device_holds_the_first_audio_just_as_long_as_needed() -> None:
    decoder = _taught(1.3)
    played = _speak(decoder, [120, 140, 130])
    assert played.stall == 0.0
    # Playback may start once the rest takes no longer than the audio left:
    # total work - audio + a margin, far earlier than the end of the work.
    assert played.first_audio > played.total - played.audio  # slower than real time
    # No later than needed for these chunks, plus the plan's margin (10% of the work).
    assert played.first_audio <= played.earliest_start + 0.1 * played.total
    assert played.first_audio < 0.6 * played.total  # far from waiting for all of it


def test_faster_devices_start_sooner() -> None:
    played = [_speak(_taught(speed), [120, 140, 130]) for speed in (0.3, 0.8, 1.3)]
    firsts = [p.first_audio for p in played]
    assert firsts == sorted(firsts)
    assert played[0].sizes[0][0] == 16  # a small first chunk right after the encoder


def test_fast_device_keeps_a_small_first_chunk_and_then_the_largest() -> None:
    played = _speak(_taught(0.2), [300])
    assert played.stall == 0.0
    [sizes] = played.sizes
    assert sizes[0] == 16
    assert max(sizes) == 128 + 2 * 16 or 128 in sizes


def test_fixed_doubling_stalls_where_the_plan_does_not() -> None:
    """The old way on a device at 1.0x: small chunks (padding and call overheads) fall behind."""
    device = DeviceVoice(1.0)
    fixed = _speak(_decoder(device, ChunkSchedule(16, 128)), [120, 140, 130])
    assert fixed.worst_stall > 0.05
    assert _speak(_taught(1.0), [120, 140, 130]).stall == 0.0


def test_later_clauses_encoder_is_in_the_plan() -> None:
    """A short first clause, then a long one whose encoder runs while the first plays."""
    decoder = _taught(0.8, encoder_share=0.5)
    played = _speak(decoder, [30, 400])
    assert played.stall == 0.0


def test_a_long_later_encoder_run_is_charged_its_square_cost() -> None:
    """The encoder's time grows with the square of its ids: costs learned on short
    utterances must not promise a long later one (a sentence's rest after its first
    clause) too early."""
    # With a fit linear in ids these stalled 1.7 s and 3.2 s.
    for speed, utterances in ((0.3, [100, 900]), (0.8, [150, 700])):
        decoder = _taught(speed, encoder_share=0.1, encoder_square_ids=ENCODER_SQUARE_IDS)
        played = _speak(decoder, utterances)
        assert played.stall == 0.0
        assert played.first_audio < played.total - 5.0  # held back, not until the end


def test_text_still_to_come_is_in_the_plan() -> None:
    """A one-shot job of two sentences: the second is not phonemized when the first starts."""
    decoder = _taught(1.2)
    with_text = _speak(decoder, [120], later=[130])
    without = _speak(decoder, [120])
    assert with_text.first_audio > without.first_audio  # holds back for the work to come


def test_later_utterances_start_from_what_is_already_buffered() -> None:
    played = _speak(_taught(0.2), [150, 150])
    assert played.stall == 0.0
    first, second = played.sizes
    assert first[0] == 16
    assert second[0] > 16  # seconds of audio are buffered: no small chunk again


def test_sharing_the_cores_makes_the_first_chunk_larger_or_held() -> None:
    """Another client's steps run between ours: the stream must start further ahead."""
    costs = StepCosts(
        encoder=(0.004, 0.0005),
        flow=(0.004, 0.0005),
        decoder=(0.004, 0.002),  # ~5x faster than real time alone
        frames_per_id=2,
        ids_per_char=2,
    )
    pacing = PlannedPacing(16, 128, FRAME_SECONDS)

    def opening(share: float) -> tuple[int, bool]:
        clock = PlaybackClock(share=share, upcoming=[UtteranceWork(150, 150)])
        return pacing.next_size(300, clock, costs)

    assert opening(1.0) == (16, False)
    size, held = opening(0.2)
    assert held or size > 16


def _flow_calls(pacing: Pacing | None) -> int:
    device = DeviceVoice(0.2)
    decoder = _decoder(device, pacing)
    decoder.costs = _taught(0.2).costs
    calls = []
    run_flow = device.run_flow
    device.run_flow = lambda prior, trim=(0, 0): calls.append(prior.num_frames) or run_flow(prior)  # type: ignore[method-assign]
    _speak(decoder, [300, 300])
    return len(calls)


def test_flow_runs_the_whole_rest_once_the_buffer_allows() -> None:
    # Each flow call recomputes its context: the second utterance, with seconds
    # buffered, takes one call instead of four.
    assert _flow_calls(ChunkSchedule(16, 128)) == 8
    assert _flow_calls(None) <= 5


def test_linear_fit_separates_call_overhead_from_per_frame_cost() -> None:
    fit = LinearFit()
    for frames in (16, 64, 128, 32, 128, 96):
        fit.learn(frames, 0.005 + 0.001 * frames)
    per_call, per_frame = fit.coefficients()  # type: ignore[misc]
    assert per_call == pytest.approx(0.005, rel=1e-3)
    assert per_frame == pytest.approx(0.001, rel=1e-3)


def test_costs_are_kept_per_voice_and_machine(tmp_path: Path) -> None:
    learned = _taught(1.0).costs
    cache = VoiceCache(tmp_path)
    cache.store_costs("voice", "machine-a", learned)
    assert cache.costs("voice", "machine-a").snapshot() == learned.snapshot()
    assert cache.costs("voice", "machine-b").snapshot() is None  # another machine: unknown
    assert cache.costs("other", "machine-a").snapshot() is None
    # A restarted server plans its first reply with what it learned before.
    restarted = _decoder(DeviceVoice(1.0))
    restarted.costs = cache.costs("voice", "machine-a")
    assert _speak(restarted, [120, 140, 130]).stall == 0.0


def test_unreadable_costs_are_ignored(tmp_path: Path) -> None:
    cache = VoiceCache(tmp_path)
    (tmp_path / "voice").mkdir()
    cache.store_costs("voice", "m", CostModel())
    (stored,) = (tmp_path / "voice").iterdir()
    stored.write_text(json.dumps({"encoder": 3}))
    assert cache.costs("voice", "m").snapshot() is None


def test_fresh_decoder_starts_with_the_first_chunk_then_plans() -> None:
    played = _speak(_decoder(DeviceVoice(0.2)), [300])
    [sizes] = played.sizes
    assert sizes[0] == 16
    assert played.stall == 0.0


def test_costs_round_trip() -> None:
    model = CostModel()
    model.learn_encoder(0.1, 100, 230)
    model.learn_decoder(0.05, 64)
    assert CostModel.from_dict(json.loads(json.dumps(model.as_dict()))).snapshot() == (
        model.snapshot()
    )


def test_a_load_that_comes_after_the_start_makes_later_starts_safer() -> None:
    """Another program takes the cores a few seconds into each reply (a shared machine):
    the first reply, planned on the quiet costs, stalls; the plan learns how much
    longer the work after its start took, and the next replies hold back longer."""
    decoder = _taught(1.1)
    device = decoder.voice

    def loaded_reply() -> Played:
        device.load = (device.clock.now + 3.0, 1.4)  # type: ignore[attr-defined]
        played = _speak(decoder, [120, 140, 130])
        device.load = None  # type: ignore[attr-defined]
        _speak(decoder, [40])  # a quiet moment: the step costs fall back
        return played

    first = loaded_reply()
    assert first.worst_stall > 0.05
    loaded_reply()  # one late plan may be a fluke: the second worst counts
    later = [loaded_reply() for _ in range(2)]
    assert all(p.stall == 0.0 for p in later)
    assert later[-1].first_audio > first.first_audio


def test_many_short_sentences_to_come_do_not_hold_back_a_fast_device() -> None:
    """Twenty short sentences: each goes through the encoder alone, so what is still to
    come is twenty small encoder runs, not one long one."""
    decoder = _taught(0.3)
    played = _speak(decoder, [30], later=[20] * 19)
    assert played.first_audio < 0.2
    assert played.stall == 0.0


def test_an_utterance_after_the_player_fell_silent_starts_small_again() -> None:
    """Text kept the player waiting (clause streaming, a slow LLM): the next utterance is
    a new start (small first chunk), not a stalled stream's catch-up (largest chunk)."""
    decoder = _taught(0.2)
    clock = PlaybackClock(now=decoder.clock)

    def first_chunk() -> int:
        clock.restart_if_dry()
        chunk = next(iter(decoder.stream(list(range(150)), SCALES, None, clock)))
        return chunk.end_frame - chunk.start_frame

    assert first_chunk() == 16
    for _ in decoder.stream(list(range(150)), SCALES, None, clock):
        pass
    buffered = clock.ahead()
    assert buffered is not None and buffered > 1.0
    assert first_chunk() == 128  # still playing: restart_if_dry keeps the clock
    decoder.voice.clock.advance(60.0)  # type: ignore[attr-defined]  # all played, then silence
    assert first_chunk() == 16


def test_the_plan_charges_a_later_piece_for_the_context_its_encoder_sees() -> None:
    """A clause piece is encoded with the sentence around it: more encoder work than its own
    ids, for the same audio. The plan must start further ahead for it."""
    costs = StepCosts(
        encoder=(0.01, 0.002),  # a slow encoder: 400 ids take 0.8 s
        flow=(0.004, 0.0005),
        decoder=(0.004, 0.004),
        frames_per_id=2,
        ids_per_char=2,
    )
    pacing = PlannedPacing(16, 128, FRAME_SECONDS)

    def opening(later: UtteranceWork) -> tuple[int, bool]:
        return pacing.next_size(40, PlaybackClock(upcoming=[later]), costs)

    alone = opening(UtteranceWork(encoder_ids=60, ids=60))
    with_context = opening(UtteranceWork(encoder_ids=400, ids=60))
    assert alone == (16, False)
    assert with_context[1] or with_context[0] > 16


def test_the_plan_charges_each_decoder_call_its_padding() -> None:
    """Costs learned on large chunks: a small chunk still decodes its padding, so it costs
    far more per frame (16 frames decode as 36, 128 as 148)."""
    decoder = _taught(1.0)
    costs = decoder.costs.snapshot()
    assert costs is not None
    per_frame_run = costs.decoder[1]
    small, large = costs.chunk(16) - 16 * costs.flow[1], costs.chunk(128) - 128 * costs.flow[1]
    assert small == pytest.approx(costs.decoder[0] + per_frame_run * (16 + 2 * PADDING))
    assert large / small < 128 / 16 / 2  # at least twice as dear per frame when small


def _flow_reach(ahead: float) -> int:
    """How far the flow runs for a chunk needing frames up to 138, of 2,000, with ``ahead``
    seconds buffered, on a device near real time."""
    decoder = _taught(1.0)
    clock = PlaybackClock(now=lambda: 0.0, started=0.0, sent_seconds=ahead)
    return decoder.pacing.flow_end(100, 138, 2000, clock, decoder.costs)


def test_the_flow_runs_ahead_only_as_far_as_the_buffer_allows() -> None:
    """A flow call that runs far ahead is a spike on top of its chunk: on a thin buffer it
    runs only what the chunk needs; on a deep one, the whole rest in one call."""
    assert _flow_reach(0.2) == 138
    assert 138 < _flow_reach(3.0) < 2000
    assert _flow_reach(60.0) == 2000


def test_a_short_rest_runs_in_the_first_flow_call() -> None:
    """5 words: the first chunk needs 26 frames of 118. A second flow call would
    recompute 60 frames of this one's context to add 62; one call does less work.
    A long utterance's first call still covers only the first chunk."""
    costs = CostModel()
    costs.use_padding(10, 30)
    pacing = PlannedPacing(16, 128, FRAME_SECONDS)
    assert pacing.flow_end(0, 26, 118, PlaybackClock(), costs) == 118
    assert pacing.flow_end(0, 26, 400, PlaybackClock(), costs) == 26


def test_a_slow_device_speaks_a_long_sentence_whole() -> None:
    """The 80 words: a first piece of 150 ids in a window of 287, then the rest in a
    window of 905. Fast, the cut brings the first audio forward; on a device near real
    time, the second window's encoder run outlasts the first piece's audio, the start
    is held for it anyway, and one window over the sentence is heard sooner."""
    first, second = UtteranceWork(287, 150), UtteranceWork(905, 760)
    joined = UtteranceWork(905, 905)

    def cut_pays(speed: float) -> bool:
        decoder = _taught(speed, encoder_square_ids=ENCODER_SQUARE_IDS)
        clock = PlaybackClock(now=decoder.clock)
        return decoder.pacing.cut_pays(first, second, joined, clock, decoder.costs)

    assert cut_pays(0.1)
    assert not cut_pays(1.0)
    assert ChunkSchedule().cut_pays(first, second, joined, PlaybackClock(), CostModel())


def test_steps_that_scatter_make_the_next_chunk_smaller() -> None:
    """On a core shared with busy loops a decoder step takes up to 2-3x its fit: the plan
    then lets a chunk use less of the buffer, so such a step still arrives in time."""

    def taught(slow_every: int) -> StepCosts:
        model = CostModel()
        model.learn_encoder(0.1, 100, 230)
        for step in range(40):
            factor = 2.5 if slow_every and step % slow_every == 0 else 1.0
            model.learn_decoder(factor * 0.1, 148)
        costs = model.snapshot()
        assert costs is not None
        return costs

    steady, scattered = taught(0), taught(5)
    assert steady.spread == pytest.approx(1.0, abs=0.05)
    assert scattered.spread > 1.5
    pacing = PlannedPacing(16, 128, FRAME_SECONDS)
    assert pacing.largest_in_time(scattered, 0.1, 1000) < pacing.largest_in_time(steady, 0.1, 1000)


def test_a_cut_that_gains_little_first_audio_is_not_taken() -> None:
    """The tests' 40-word sentence: a first window of 365 ids against 469 for the whole.
    The cut would gain a quarter of the encoder run and change the sound a little."""
    decoder = _taught(0.1, encoder_square_ids=ENCODER_SQUARE_IDS)
    clock = PlaybackClock(now=decoder.clock)
    pacing, costs = decoder.pacing, decoder.costs
    first, second = UtteranceWork(365, 140), UtteranceWork(469, 330)
    assert not pacing.cut_pays(first, second, UtteranceWork(469, 469), clock, costs)
    # The 80 words: 287 ids against 905.
    first, second = UtteranceWork(287, 150), UtteranceWork(905, 760)
    assert pacing.cut_pays(first, second, UtteranceWork(905, 905), clock, costs)


def test_steps_timed_on_a_clock_that_stands_still_teach_no_spread() -> None:
    model = CostModel()
    model.learn_encoder(0.0, 100, 230)
    for _ in range(10):
        model.learn_decoder(0.0, 148)
    costs = model.snapshot()
    assert costs is not None and costs.spread == 1.0
