"""Chunked decoding: spans from the pacing, decoded into exact audio chunks.

Each chunk is decoded with ``padding`` latent frames of context on both sides
(where the utterance has them) and the padding's audio is cut off again. With
padding at least the decoder's receptive field, every chunk equals the same
stretch of whole-utterance decoding, and the chunks add up to exactly
``frames * hop`` samples. Where the decoder ``decodes_spans``, its later stages
run over only ``stage_padding`` of those frames each side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from wyoming_piper_stream.engine.clauses import (
    PieceWindow,
    SentencePiece,
    piece_ids,
    piece_window,
)
from wyoming_piper_stream.engine.gate import Gate, ungated
from wyoming_piper_stream.engine.graphs import Latent, SynthesisScales, Voice
from wyoming_piper_stream.engine.pacing import (
    ChunkSchedule,
    ChunkSpan,
    Clock,
    CostModel,
    Pacing,
    PlaybackClock,
    UtteranceWork,
    plan_chunks,
)
from wyoming_piper_stream.engine.phonemize import phonemes_to_ids
from wyoming_piper_stream.engine.settings import CONTEXT_PHONEMES

__all__ = [
    "ChunkSchedule",
    "ChunkSpan",
    "ChunkedDecoder",
    "CutPause",
    "DecodedChunk",
    "plan_chunks",
]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedChunk:
    """Float audio of one decoded chunk, in ``[-1, 1]`` before the stream's gain."""

    audio: np.ndarray
    sample_rate: int
    start_frame: int
    end_frame: int
    is_last: bool
    held: bool = False
    """The pacing holds the first audio back: keep this chunk until one that is not held."""


@dataclass(frozen=True)
class UtteranceStats:
    """Timings of one utterance, for logs and benchmarks."""

    encoder_ms: float
    first_audio_ms: float
    total_ms: float
    audio_seconds: float

    @property
    def real_time_factor(self) -> float:
        return (self.total_ms / 1000.0) / self.audio_seconds if self.audio_seconds else 0.0


Postprocess = Callable[[np.ndarray], np.ndarray]


@dataclass
class CutPause:
    """One sentence's pieces, in turn: the frames the last piece gave the clause
    break it ended with, so the next piece can give the comma's pause what it
    predicts itself.

    The next piece's encoder sees the break with the real text after it (a
    piece of streamed text saw a placeholder there, or context cut short); it
    lengthens or shortens the silence it starts with by the difference.
    """

    played: int | None = None


class ChunkedDecoder:
    """Streams one voice's utterances as exact audio chunks."""

    def __init__(
        self,
        voice: Voice,
        padding: int,
        pacing: Pacing | None = None,
        postprocess: Postprocess | None = None,
        flow_padding: int = 0,
        clock: Clock = time.perf_counter,
        context: int = CONTEXT_PHONEMES,
        costs: CostModel | None = None,
        stage_padding: int | None = None,
        flow_trim: int = 0,
    ) -> None:
        self.voice = voice
        self.context = context
        self.padding = padding
        # The decoder's later stages need less context than its first
        # (``measure_stage_padding``); None: all of ``padding``.
        self.stage_padding = padding if stage_padding is None else min(stage_padding, padding)
        self.flow_padding = flow_padding
        # Frames each flow layer drops from a call's context (``measure_flow_trim``).
        self.flow_trim = flow_trim if voice.flow_trimmed_layers else 0
        self.pacing: Pacing = pacing or ChunkSchedule()
        # Applied to the padded chunk before trimming (e.g. the denoiser), so
        # whatever it does near the chunk's edges is cut off with the padding.
        self.postprocess = postprocess
        self.costs = costs or CostModel()
        """What each step cost on this machine: measured here, planned with by the pacing."""
        # The plan prices each call as if every layer ran all of its context: what
        # the stage padding and the flow trim save is slack. Priced at what they
        # really run, the plan started sooner and stalled where it had not
        # (``script/bench --slow 5``, from fresh costs: 3 of 12 requests stalled up
        # to 0.82 s, against none), on a core whose steps scatter by half.
        self.costs.use_padding(padding, flow_padding)
        self.clock = clock  # times steps; a job's PlaybackClock must use the same clock
        self.hop = voice.config.hop_length

    def stream(
        self,
        phoneme_ids: Sequence[int],
        scales: SynthesisScales,
        speaker_id: int | None = None,
        clock: PlaybackClock | None = None,
        gate: Gate = ungated,
    ) -> Iterator[DecodedChunk]:
        """One whole utterance (Piper's ids), every frame decoded.

        ``clock``: the job's playback so far, shared by its utterances (adaptive
        pacing). ``gate`` wraps each step (the encoder, each chunk): it waits for
        this job's turn among concurrent jobs (see ``scheduler``).
        """
        return self._stream(phoneme_ids, None, scales, speaker_id, clock, gate)

    def stream_piece(
        self,
        piece: SentencePiece,
        scales: SynthesisScales,
        speaker_id: int | None = None,
        clock: PlaybackClock | None = None,
        gate: Gate = ungated,
        cut: CutPause | None = None,
    ) -> Iterator[DecodedChunk]:
        """Speak one piece of a sentence: the one entry point for every cut.

        The encoder sees the piece with up to ``context`` phonemes of the sentence
        each side (``piece.before``/``after``, or a placeholder for text still to
        come); only the frames of the piece's own ids are decoded, with the
        context's frames as decoder padding. Pieces of one sentence so add up to
        about its length, with its comma pauses. A piece without context is
        exactly ``stream`` of Piper's ids. Voices whose encoder lacks the
        duration output speak each piece alone instead. ``cut``: shared by the
        pieces of one sentence, in order (see ``CutPause``).
        """
        window = self._window(piece)
        if isinstance(window, list):
            return self.stream(window, scales, speaker_id, clock, gate)
        return self._stream(window.ids, window, scales, speaker_id, clock, gate, cut)

    def encoder_ids(self, piece: SentencePiece) -> int:
        """How many ids the encoder run of ``stream_piece`` sees (the piece and its context)."""
        window = self._window(piece)
        return len(window) if isinstance(window, list) else len(window.ids)

    def cut_pays(
        self,
        first: SentencePiece,
        second: SentencePiece,
        joined: SentencePiece,
        clock: PlaybackClock,
    ) -> bool:
        """The pacing's choice between a cut after ``first`` and ``joined`` (``CutPays``)."""

        def work(piece: SentencePiece) -> UtteranceWork:
            return UtteranceWork(self.encoder_ids(piece), piece_ids(piece))

        return self.pacing.cut_pays(work(first), work(second), work(joined), clock, self.costs)

    def _window(self, piece: SentencePiece) -> PieceWindow | list[int]:
        """The piece's window, or its ids alone where the encoder gives no durations."""
        config = self.voice.config
        if not self.voice.has_durations:
            return phonemes_to_ids(piece.phonemes, config.phoneme_id_map, config.phoneme_type)
        return piece_window(piece, config.phoneme_id_map, self.context, config.phoneme_type)

    def _stream(
        self,
        phoneme_ids: Sequence[int],
        window: PieceWindow | None,
        scales: SynthesisScales,
        speaker_id: int | None,
        clock: PlaybackClock | None,
        gate: Gate,
        cut: CutPause | None = None,
    ) -> Iterator[DecodedChunk]:
        started = self.clock()
        clock = clock or PlaybackClock(now=self.clock)
        with gate(0.0):
            turn = self.clock()
            latent = self.voice.encode(phoneme_ids, scales, speaker_id)
        encoder_seconds = self.clock() - turn  # without the wait for the turn
        self.costs.learn_encoder(encoder_seconds, len(phoneme_ids), latent.num_frames)
        clock.worked(waited=turn - started, seconds=encoder_seconds)
        keep = (0, latent.num_frames)
        if window is not None and window.has_context and latent.durations is not None:
            keep = window.frames(latent.durations)
            if cut is not None:
                latent, keep = _pause_as_predicted(latent, window, keep, cut)
        first_audio_ms = 0.0
        for chunk in self.decode_chunks(latent, clock, gate, keep):
            if not first_audio_ms:
                first_audio_ms = (self.clock() - started) * 1000
            yield chunk
        stats = UtteranceStats(
            encoder_ms=encoder_seconds * 1000,
            first_audio_ms=first_audio_ms,
            total_ms=(self.clock() - started) * 1000,
            audio_seconds=(keep[1] - keep[0]) * self.hop / self.voice.config.sample_rate,
        )
        _LOGGER.debug(
            "Utterance: %d ids, frames %d-%d of %d, encoder %.0f ms, first audio %.0f ms, RTF %.3f",
            len(phoneme_ids),
            keep[0],
            keep[1],
            latent.num_frames,
            stats.encoder_ms,
            stats.first_audio_ms,
            stats.real_time_factor,
        )

    def decode_chunks(
        self,
        latent: Latent,
        clock: PlaybackClock | None = None,
        gate: Gate = ungated,
        keep: tuple[int, int] | None = None,
    ) -> Iterator[DecodedChunk]:
        """``latent`` is the encoder's output (``z_p`` when the flow is separate).

        Only frames ``keep`` (all by default) are decoded; the latent's other
        frames serve as context padding. Chunk frames count from ``keep[0]``.
        """
        first, stop = keep or (0, latent.num_frames)
        if stop <= first:
            return
        clock = clock or PlaybackClock(now=self.clock)
        num_frames = latent.num_frames
        # The last frame a decoder call asks for: the flow need not run over the
        # rest of a piece's right context (on 80 words, ~600 frames of it).
        reach = min(num_frames, stop + self.padding)

        def flow_end(done: int, needed: int) -> int:
            return self.pacing.flow_end(done, needed, reach, clock, self.costs)

        begin = max(0, first - self.padding)
        flow = _FlowCursor(self, latent, flow_end, begin)
        spans = self.pacing.spans(stop - first, self.padding, clock, self.costs)
        for index, paced in enumerate(spans):
            local = paced.span
            span = _placed(local, first, num_frames, self.padding)
            requested = self.clock()
            with gate(self._expected_seconds(span)):
                started = self.clock()
                frames = flow.frames(span.decode_start, span.decode_end)
                flowed = self.clock()
                left = min(self.stage_padding, span.pad_left)
                right = min(self.stage_padding, span.pad_right)
                inner = (span.pad_left - left, span.pad_left + span.end - span.start + right)
                audio = self.voice.decode(frames, inner)
                if self.postprocess is not None:
                    audio = self.postprocess(audio)
                audio = _trim(audio, left, span.end - span.start, self.hop)
                self.costs.learn_decoder(self.clock() - flowed, span.decode_end - span.decode_start)
                elapsed = self.clock() - started
            clock.worked(waited=started - requested, seconds=elapsed)
            _LOGGER.debug(
                "Chunk %d: frames %d-%d (+%d/%d pad)%s in %.1f ms",
                index,
                span.start,
                span.end,
                span.pad_left,
                span.pad_right,
                " held" if paced.hold else "",
                elapsed * 1000,
            )
            yield DecodedChunk(
                audio=audio,
                sample_rate=self.voice.config.sample_rate,
                start_frame=local.start,
                end_frame=local.end,
                is_last=span.end == stop,
                held=paced.hold,
            )
            # The consumer has handed the chunk over (or kept it, when held).
            seconds = (span.end - span.start) * self.hop / self.voice.config.sample_rate
            if paced.hold:
                clock.hold(seconds)
            else:
                clock.sent(seconds)

    def _expected_seconds(self, span: ChunkSpan) -> float:
        costs = self.costs.snapshot()
        return 0.0 if costs is None else costs.chunk(span.end - span.start)


class _FlowCursor:
    """Runs a separate flow just ahead of the decoder, each frame once.

    Frames up to ``done`` are final; extending them runs the flow over the new
    frames plus ``padding`` frames of context each side, kept off again. How far
    each call reaches is the pacing's choice (``Pacing.flow_end``): each call
    recomputes 2 x ``padding`` frames of context (less ``flow_trim`` after each
    layer), so few calls, yet the first call covers only the first chunk.
    """

    def __init__(
        self,
        streamer: ChunkedDecoder,
        prior: Latent,
        reach: Callable[[int, int], int],
        begin: int = 0,
    ) -> None:
        self.streamer = streamer
        self.voice = streamer.voice
        self.prior = prior
        self.reach = reach
        self.z = prior.z if self.voice.flow is None else np.empty_like(prior.z)
        # Frames before ``begin`` are never asked for (context left of a piece).
        self.done = prior.num_frames if self.voice.flow is None else begin

    def frames(self, start: int, stop: int) -> Latent:
        if stop > self.done:
            self._run(min(self.prior.num_frames, max(stop, self.reach(self.done, stop))))
        return Latent(self.z[:, :, start:stop], self.prior.y_mask[:, :, start:stop], self.prior.g)

    def _run(self, end: int) -> None:
        streamer, total = self.streamer, self.prior.num_frames
        first = max(0, self.done - streamer.flow_padding)
        last = min(total, end + streamer.flow_padding)
        # Only a side with all of its context can drop frames: at the utterance's
        # edges the whole utterance's flow sees the same edge.
        left, right = int(first > 0), int(last < total)
        trim = (streamer.flow_trim * left, streamer.flow_trim * right)
        layers = self.voice.flow_trimmed_layers
        started = streamer.clock()
        flowed = self.voice.run_flow(self.prior.frames(first, last), trim)
        streamer.costs.learn_flow(streamer.clock() - started, last - first)
        offset = first + layers * trim[0]
        self.z[:, :, self.done : end] = flowed.z[:, :, self.done - offset : end - offset]
        self.done = end


def _pause_as_predicted(
    latent: Latent, window: PieceWindow, keep: tuple[int, int], cut: CutPause
) -> tuple[Latent, tuple[int, int]]:
    """The latent with the piece's leading silence moved by what this encoding
    gives the break before it minus what the previous piece played of it.

    Each id's frames are copies of one vector (noise off), so a frame more or
    less of the break is a longer or shorter pause. Records this piece's own
    break for the next one.
    """
    assert latent.durations is not None
    durations = latent.durations
    played, cut.played = cut.played, window.break_frames_after(durations)
    if played is None or not window.break_before:
        return latent, keep
    start, stop = keep
    change = window.break_frames_before(durations) - played
    change = max(change, -window.joint_frames(durations))
    if change > 0:  # more of the break's last frame, just before the piece
        extra = np.repeat(latent.z[:, :, start - 1 : start], change, axis=2)
        z = np.concatenate([latent.z[:, :, :start], extra, latent.z[:, :, start:]], axis=2)
    elif change < 0:  # less of the joining space
        z = np.concatenate([latent.z[:, :, :start], latent.z[:, :, start - change :]], axis=2)
    else:
        return latent, keep
    y_mask = np.ones((1, 1, z.shape[2]), dtype=latent.y_mask.dtype)
    return Latent(z, y_mask, latent.g), (start, stop + change)


def _placed(local: ChunkSpan, offset: int, num_frames: int, padding: int) -> ChunkSpan:
    """A span planned over kept frames, moved to latent frames; the padding may
    reach past the kept frames into the latent's context."""
    start, end = local.start + offset, local.end + offset
    return ChunkSpan(start, end, min(padding, start), min(padding, num_frames - end))


def _trim(audio: np.ndarray, left: int, frames: int, hop: int) -> np.ndarray:
    """Cut ``left`` frames of padding's audio, keep ``frames``; pad or cut the end so
    the length is exact."""
    wanted = frames * hop
    chunk = audio[left * hop :][:wanted]
    if len(chunk) < wanted:  # some exports drop trailing samples
        chunk = np.pad(chunk, (0, wanted - len(chunk)))
    return chunk


def _probe_latent(voice: Voice, probe_frames: int) -> Latent:
    """A realistic encoder output, repeated until long enough to see both sides."""
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(14, 60, size=probe_frames // 2)]
    scales = SynthesisScales(0.0, voice.config.length_scale, 0.0)  # noise off: repeatable
    latent = voice.encode(ids, scales, 0 if voice.is_multi_speaker else None)
    while latent.num_frames < probe_frames:
        latent = Latent(
            np.concatenate([latent.z, latent.z], axis=2),
            np.concatenate([latent.y_mask, latent.y_mask], axis=2),
            latent.g,
        )
    return latent


def _reach(
    run: Callable[[Latent], np.ndarray], latent: Latent, samples_per_frame: int, tolerance: float
) -> int:
    """Frames (rounded up) over which a change to one input frame moves the output.

    ``run`` maps a latent to an output whose last axis is time.
    """
    middle = latent.num_frames // 2
    z = latent.z.copy()
    z[:, :, middle] += 1.0
    moved_by = np.abs(run(Latent(z, latent.y_mask, latent.g)) - run(latent))
    moved = np.nonzero(moved_by.reshape(-1, moved_by.shape[-1]).max(axis=0) > tolerance)[0]
    if len(moved) == 0:
        return 1
    reach = max(
        middle * samples_per_frame - int(moved[0]),
        int(moved[-1]) - (middle + 1) * samples_per_frame + 1,
    )
    frames = int(np.ceil(max(reach, 0) / samples_per_frame))
    if frames >= middle:
        _LOGGER.warning("Receptive field spans the whole probe; padding may be inexact")
    return max(1, frames)


def measure_padding(voice: Voice, tolerance: float = 1e-6, probe_frames: int = 64) -> int:
    """Frames of context the decoder needs so chunk seams equal whole decoding.

    Perturbs one latent frame in the middle of a probe and sees how far the
    output moves (its receptive field).
    """
    latent = voice.run_flow(_probe_latent(voice, probe_frames))
    return _reach(voice.decode, latent, voice.config.hop_length, tolerance)


def measure_stage_padding(voice: Voice, padding: int, tolerance: float = 1e-6) -> int:
    """Frames of context the decoder's stages after the first need (``Voice.decode``'s
    span): the fewest frames each side of a span at which its audio equals whole
    decoding. ``padding`` where the decoder does not decode spans.
    """
    if not voice.decodes_spans:
        return padding
    latent = voice.run_flow(_probe_latent(voice, 64))
    hop = voice.config.hop_length
    whole = voice.decode(latent)
    start, end = latent.num_frames // 2 - 8, latent.num_frames // 2 + 8
    for frames in range(padding):
        audio = voice.decode(latent, (start - frames, end + frames))
        kept = audio[frames * hop : (frames + end - start) * hop]
        if np.max(np.abs(kept - whole[start * hop : end * hop])) <= tolerance:
            return frames
    return padding


def measure_flow_trim(voice: Voice, flow_padding: int, tolerance: float = 1e-6) -> int:
    """Frames each trimmed flow layer may drop from a call's ``flow_padding`` of
    context while the kept frames stay as they were (0 where the flow drops none)."""
    layers = voice.flow_trimmed_layers
    if not layers:
        return 0
    prior = _probe_latent(voice, 96 + 2 * flow_padding)
    start, end = flow_padding, prior.num_frames - flow_padding
    kept = voice.run_flow(prior).z[:, :, start:end]

    def exact(trim: int) -> bool:
        z = voice.run_flow(prior, (trim, trim)).z
        offset = flow_padding - layers * trim
        return bool(np.max(np.abs(z[:, :, offset : offset + end - start] - kept)) <= tolerance)

    exact_up_to, inexact_from = 0, flow_padding // layers + 1  # the first is exact by definition
    while inexact_from - exact_up_to > 1:  # more trim only ever reaches further in
        middle = (exact_up_to + inexact_from) // 2
        if exact(middle):
            exact_up_to = middle
        else:
            inexact_from = middle
    return exact_up_to


def measure_flow_padding(voice: Voice, tolerance: float = 1e-6, probe_frames: int = 96) -> int:
    """Frames of context the separate flow needs (0 when there is none)."""
    if voice.flow is None:
        return 0
    latent = _probe_latent(voice, probe_frames)
    # Two frames of margin: the flow's error at the seam passes through the
    # decoder's gain too, and different chunk sizes must give the same audio.
    return _reach(lambda prior: voice.run_flow(prior).z, latent, 1, tolerance) + 2
